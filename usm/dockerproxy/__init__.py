"""The Docker Engine API for hosts that must expose it over TCP: nginx with TLS and basic auth in front of the
Docker socket.

usm itself reaches hosts' Docker over SSH or mutual TLS (``usm.actuators.dockerhosts``). Some hosts can offer
neither (no SSH for usm, no dockerd TLS set up); the original put an nginx with basic auth on port 2375 in front
of a Docker API it had opened on 0.0.0.0:2376 without TLS, with the default password ``password`` (§0.3, §13
items 22-23). Here the proxy listens with TLS only, talks to the Docker socket (dockerd opens no TCP port at
all), and its password comes from a file or the environment at setup and is stored only as a bcrypt hash.
``config`` renders the configuration and the htpasswd line (pure); ``usm.actuators.dockerproxy`` writes them.
"""

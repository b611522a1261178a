"""The local lab: pseudo-hosts on this machine that ``usm run --live`` manages (``usm lab up / down / status``).

Also the single implementation of the daemons the integration tests start (``tests/services`` builds on it):

* ``process``: a background process on loopback ports, stopped by PID (and its start time);
* ``dockerd``, ``sshd``, ``dockerhost``: a private Docker engine, an OpenSSH server, and the pair as a pseudo-host
  reached over SSH;
* ``prometheus``, ``moto``, ``monitor``: node_exporter and Prometheus, the EC2 API (moto_server), the
  request-location monitor;
* ``demo``: the lab's places, demo app and site file; ``up``: bringing a lab up in a directory; ``state``: what
  the directory records (every process), status and down.
"""

"""The per-region load balancer: nginx in front of a service's instances, configured through ``usm lb-api``.

``servers`` holds the servers of each service (pure, validated), ``config`` renders nginx's configuration from
them, ``api`` is the HTTP API that changes them and has nginx check and reload the result
(``usm.actuators.nginx``).
"""

"""node_exporter on an edge host: copied from the manager, started in the background, checked through SSH.

The binary is the manager's own (Debian's ``prometheus-node-exporter`` by default), so a new host needs no
package manager or Internet access. It listens on the host's loopback only; its ``/metrics`` is read through a
direct-tcpip channel of usm's SSH connection, so nothing on the host needs wget or curl and no port is opened to
the network. (Prometheus scrapes it the same way, through a tunnel, or on an address the operator opens.)
"""

from __future__ import annotations

import http.client
import time
from contextlib import closing
from pathlib import Path

from usm.actuators.edge import EdgeError, EdgeHost, EdgeHosts, JobState

MANAGER_BINARY = Path("/usr/bin/prometheus-node-exporter")
REMOTE_BINARY = ".usm/bin/node_exporter"  # in the user's home on the host


def job_name(port: int) -> str:
    return f"node_exporter-{port}"


def install_node_exporter(edge: EdgeHosts, host: EdgeHost, port: int, binary: Path = MANAGER_BINARY,
                          address: str = "127.0.0.1", ready_timeout: float = 15.0) -> JobState:
    """Upload ``binary``, (re)start it on ``address:port`` of the host and wait until ``/metrics`` answers.

    Installing again replaces the binary (atomically, so a running one is unaffected) and restarts the job. If the
    exporter exits instead of answering (e.g. the port is taken), the error carries the end of its log.
    """
    if not Path(binary).is_file():
        raise FileNotFoundError(f"node_exporter binary {binary} is not on the manager: install the Debian package "
                                "prometheus-node-exporter, or pass the path of a node_exporter binary")
    edge.upload(host, Path(binary), REMOTE_BINARY, mode=0o755)
    name = job_name(port)
    edge.stop_background(host, name, missing_ok=True)
    job = edge.start_background(host, name, f"exec {REMOTE_BINARY} --web.listen-address={address}:{port} "
                                            "--no-collector.systemd")
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            metrics(edge, host, port, address)
            return job
        except EdgeError as error:
            if not edge.job_state(host, name).running:
                raise EdgeError(host.name, f"node_exporter exited instead of serving {address}:{port}; its log "
                                f"ends with:\n{edge.job_log(host, name, 20)}", transient=False) from error
            if time.monotonic() > deadline:
                raise EdgeError(host.name, f"node_exporter runs but {address}:{port}/metrics did not answer within "
                                f"{ready_timeout:g} s ({error})", transient=True) from error
        time.sleep(0.1)  # waiting for a real process to listen


def metrics(edge: EdgeHosts, host: EdgeHost, port: int, address: str = "127.0.0.1", timeout: float = 10.0) -> str:
    """The exporter's ``/metrics`` page, fetched by the host itself from ``address:port`` over usm's SSH link."""
    with closing(edge.tunnel(host, address, port)) as channel:
        channel.settimeout(timeout)
        try:
            channel.sendall(f"GET /metrics HTTP/1.1\r\nHost: {address}:{port}\r\nConnection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(channel)  # the stdlib parses the answer, read from the channel
            response.begin()
            body = response.read().decode(errors="replace")
        except (OSError, EOFError, http.client.HTTPException) as error:
            raise EdgeError(host.name, f"GET http://{address}:{port}/metrics on the host failed ({error!r})",
                            transient=True) from error
    if response.status != 200:
        raise EdgeError(host.name, f"GET http://{address}:{port}/metrics on the host answered {response.status} "
                        f"{response.reason}", transient=False)
    return body

"""nginx and what it fronts, as real processes and servers on loopback ports.

`NginxServer(nginx)` runs the nginx of a `usm.actuators.nginx.Nginx` prefix in the foreground (its configuration
installed first), stopped by PID. `LbApi(workdir, ...)` runs `usm lb-api`, which starts its own nginx.
`NamedServer(name)` is a small threaded HTTP server on a free loopback port that answers every GET with its
name: an upstream whose answers show which server nginx chose.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import httpx

from usm.actuators.nginx import Nginx

from . import Service, free_port, need, port_open
from .locationmonitor import usm_command


class NginxServer(Service):
    def __init__(self, nginx: Nginx, port: int):
        need("nginx")
        self.nginx = nginx
        self.port = port
        super().__init__("nginx", nginx.argv(nginx.config, "-g", "daemon off;"), nginx.prefix)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready=None, timeout: float = 20.0) -> NginxServer:
        super().start(ready or (lambda: port_open(self.port) and self.nginx.running()), timeout)
        return self


class LbApi(Service):
    """`usm lb-api` with nginx on `nginx_port` and the API on `port`; `options` are passed as they are."""

    def __init__(self, workdir: Path, *options: str):
        need("nginx")
        self.port = free_port()
        self.nginx_port = free_port()
        self.prefix = Path(workdir) / "nginx"
        argv = [usm_command(), "lb-api", "--prefix", str(self.prefix), "--listen", f"127.0.0.1:{self.nginx_port}",
                "--host", "127.0.0.1", "--port", str(self.port), *options]
        super().__init__("lb-api", argv, Path(workdir))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def nginx_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def start(self, ready=None, timeout: float = 30.0) -> LbApi:
        def answers() -> bool:
            return httpx.get(f"{self.url}/health", timeout=1).json()["status"] == "ok" and port_open(self.nginx_port)

        super().start(ready or answers, timeout)
        return self


class NamedServer:
    """An HTTP server answering `<name>` to every GET, on 127.0.0.1:<free port>, in threads of this process."""

    def __init__(self, name: str):
        self.name = name
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream keepalive expects
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"upstream-{name}", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

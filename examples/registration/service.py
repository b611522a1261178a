"""An example microservice that finds the services it calls through its registration sidecar.

    python examples/registration/service.py --name frontend --port 8001 --calls backend --sidecar http://127.0.0.1:1906

``GET /`` answers ``{"service": NAME}``. ``GET /call`` asks the sidecar for the closest instance of the service
named by ``--calls`` (``?number=X`` and ``?range=KM`` are passed on to choose among several), calls its ``/`` and
answers what it said and where it was. Each look-up is counted by the sidecar as a request from this instance's
place, for the request-location monitor. The sidecar registers this instance (README.md beside this file).
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx

from usm.registration.client import NoInstance, RegistrationClient, RegistrationError


def handler(name: str, calls: str | None, sidecar: RegistrationClient) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/":
                self.reply(200, {"service": name})
            elif url.path == "/call" and calls:
                self.reply(*self.call(parse_qs(url.query)))
            else:
                self.reply(404, {"error": f"no such path: {url.path}"})

        def call(self, query: dict[str, list[str]]) -> tuple[int, dict]:
            number = int(query["number"][0]) if "number" in query else None
            range_km = float(query["range"][0]) if "range" in query else None
            try:
                target = sidecar.endpoint(calls, number=number, range_km=range_km)
            except NoInstance as none:
                return 503, {"error": str(none)}
            except RegistrationError as failed:
                return 502, {"error": str(failed)}
            answer = httpx.get(target.url("/"), timeout=5).json()
            return 200, {"called": target.endpoint, "distanceKm": target.distance_km, "answer": answer}

        def reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="An example microservice using usm's registration sidecar.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", help="the service this one calls")
    parser.add_argument("--sidecar", default="http://127.0.0.1:1906")
    args = parser.parse_args()
    with RegistrationClient(args.sidecar) as sidecar:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args.name, args.calls, sidecar))
        print(f"{args.name} on http://127.0.0.1:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()

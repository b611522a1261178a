"""The library a microservice imports to find the services it calls, through its sidecar.

    from usm.registration.client import RegistrationClient

    sidecar = RegistrationClient()                    # http://127.0.0.1:1906, the sidecar beside this instance
    orders = sidecar.endpoint("orders")               # the closest instance: orders.endpoint == "10.0.0.7:8080"
    nearby = sidecar.endpoint("orders", number=3)     # a random one of the 3 closest
    within = sidecar.endpoint("orders", range_km=500) # a random one within 500 km (the range doubles until one is)
    httpx.get(orders.url("/api/orders"))

Every look-up counts as a request to that service from this instance's place, which the sidecar forwards to the
request-location monitor; :meth:`RegistrationClient.report` adds requests the service counted itself (for
example, those of its own end users, by their place).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

DEFAULT_URL = "http://127.0.0.1:1906"


class RegistrationError(RuntimeError):
    """The sidecar refused the request or could not be reached; the message says which and why."""


class NoInstance(RegistrationError):
    """No instance of the service is registered (yet)."""


@dataclass(frozen=True)
class Endpoint:
    instance_id: str
    endpoint: str  # host:port
    distance_km: float
    region: str

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://{self.endpoint}/{path.lstrip('/')}"


class RegistrationClient:
    """A client of one sidecar (``usm registration-client``). Safe to share between threads."""

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=timeout)

    def endpoint(self, service: str, *, number: int | None = None, range_km: float | None = None,
                 near: tuple[float, float] | None = None) -> Endpoint:
        """The instance of ``service`` to call (see the module's docstring); ``near`` = (latitude, longitude)
        of the caller when it is not this instance's place."""
        params: dict[str, Any] = {}
        if number is not None:
            params["number"] = number
        if range_km is not None:
            params["range"] = range_km
        if near is not None:
            params["latitude"], params["longitude"] = near
        body = self._json("GET", f"/services/{service}/endpoint", params=params)
        return Endpoint(body["instanceId"], body["endpoint"], float(body["distanceKm"]), body.get("region", ""))

    def endpoints(self, service: str) -> list[dict[str, Any]]:
        """Every registered instance of ``service`` (``instanceId``, ``endpoint``, ``latitude``, ...)."""
        return self._json("GET", f"/services/{service}/endpoints")

    def register(self) -> dict[str, Any]:
        """Register this instance again now (the sidecar registers it at start and keeps it registered)."""
        return self._json("POST", "/register")

    def report(self, service: str, latitude: float, longitude: float, count: int = 1) -> None:
        """Count ``count`` requests to ``service`` from around (latitude, longitude)."""
        self._json("POST", "/metrics", json={"service": service, "latitude": latitude, "longitude": longitude,
                                             "count": count})

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise RegistrationError(f"the sidecar at {self.url} cannot be reached ({type(error).__name__}: "
                                    f"{error}); is `usm registration-client` running?") from None
        if response.status_code == 200:
            return response.json()
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text or response.reason_phrase
        if response.status_code == 404:
            raise NoInstance(message)
        raise RegistrationError(f"the sidecar at {self.url} answered HTTP {response.status_code}: {message}")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

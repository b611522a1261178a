"""A thin client of etcd's v3 JSON gateway (``/v3/kv/...``, ``/v3/lease/...``, ``/v3/watch``) over httpx.

Why not a Python etcd library: etcd3 is unmaintained and breaks on current protobuf; the gRPC ones (aetcd,
etcd-sdk-python) pull grpcio and protobuf stubs in for the eight calls usm makes; etcd3gw (maintained, the same
gateway) talks to one member only, parses a watch stream by raw chunks rather than lines, and loses a watch's
errors in its thread pool. The gateway is etcd's documented, stable HTTP mapping of its gRPC API, and httpx is
already usm's HTTP client, so this module is the adapter: base64 keys and values, failover across the members of
the cluster, and errors that say which members were tried and why (docs/decisions.md has the numbers).

Every member of a cluster answers every request (reads and writes are forwarded to the leader by etcd itself), so
a client is given its region's member first and the others after it: when its own member is down it goes on with
the next one, and comes back to the first one on the next call.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

DEFAULT_TIMEOUT = 5.0


class EtcdError(RuntimeError):
    """etcd could not be reached, or refused a request; the message says where and why."""


class EtcdUnavailable(EtcdError):
    """No member of the cluster answered."""


class LeaseNotFound(EtcdError):
    """The lease has expired or was revoked (its keys are gone)."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    lease: int
    mod_revision: int


@dataclass(frozen=True)
class WatchEvent:
    """A key that was put (``value`` set) or deleted (``value`` None), at ``revision``."""

    key: str
    value: bytes | None
    revision: int


def encode(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The end of the key range holding every key that starts with ``prefix`` (etcd's ``range_end``)."""
    raw = prefix.encode()
    stripped = raw.rstrip(b"\xff")
    if not stripped:
        return encode(b"\0")  # every key
    return encode(stripped[:-1] + bytes([stripped[-1] + 1]))


class Etcd:
    """One etcd cluster through its members' JSON gateways (``http://127.0.0.1:2379``, ...), in order of
    preference. Safe to share between threads (one httpx client)."""

    def __init__(self, endpoints: str | Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoints = tuple(e.rstrip("/") for e in ((endpoints,) if isinstance(endpoints, str) else endpoints))
        if not self.endpoints:
            raise ValueError("give at least one etcd endpoint, such as http://127.0.0.1:2379")
        for endpoint in self.endpoints:
            if not endpoint.startswith(("http://", "https://")):
                raise ValueError(f"etcd endpoint {endpoint!r} must be a URL such as http://127.0.0.1:2379")
        self.timeout = timeout
        self.client = httpx.Client(timeout=timeout)
        self._lock = threading.Lock()
        self._streams: set[socket.socket] = set()

    # -- the calls usm makes -------------------------------------------------------------------------------

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds (etcd raises very short TTLs to its minimum); its id."""
        if ttl < 1:
            raise ValueError(f"a lease lasts at least 1 second, not {ttl!r}")
        return int(self._call("/v3/lease/grant", {"TTL": ttl})["ID"])

    def keepalive(self, lease: int) -> int:
        """Renew ``lease`` for its whole TTL; the TTL. :class:`LeaseNotFound` when it has already expired."""
        answer = self._call("/v3/lease/keepalive", {"ID": lease})
        ttl = int(answer.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            raise LeaseNotFound(f"lease {lease:x} has expired (or was revoked)")
        return ttl

    def time_to_live(self, lease: int) -> int:
        """Seconds left on ``lease``; -1 when it does not exist (any more)."""
        return int(self._call("/v3/lease/timetolive", {"ID": lease}).get("TTL", -1))

    def revoke(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys. A lease that is already gone is not an error."""
        try:
            self._call("/v3/lease/revoke", {"ID": lease})
        except LeaseNotFound:
            pass

    def put(self, key: str, value: bytes | str, lease: int | None = None) -> int:
        """Set ``key`` (bound to ``lease`` when given: it vanishes with the lease); the new revision."""
        body: dict[str, Any] = {"key": encode(key), "value": encode(value)}
        if lease is not None:
            body["lease"] = lease
        return int(self._call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: str) -> bool:
        """Delete ``key``; whether it existed."""
        return int(self._call("/v3/kv/deleterange", {"key": encode(key)}).get("deleted", 0)) > 0

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key starting with ``prefix``, in key order, and the revision they were read at."""
        answer = self._call("/v3/kv/range", {"key": encode(prefix), "range_end": prefix_end(prefix)})
        values = [KeyValue(decode(kv["key"]).decode(), decode(kv.get("value", "")), int(kv.get("lease", 0)),
                           int(kv.get("mod_revision", 0))) for kv in answer.get("kvs", [])]
        return values, int(answer["header"]["revision"])

    def watch_prefix(self, prefix: str, start_revision: int) -> Iterator[list[WatchEvent]]:
        """Changes to the keys under ``prefix`` from ``start_revision`` on, one batch per message, until the
        stream ends (:class:`EtcdError`: the caller reads the prefix again and watches from there) or
        :meth:`close`. A revision etcd has compacted away raises :class:`EtcdError` too."""
        request = {"create_request": {"key": encode(prefix), "range_end": prefix_end(prefix),
                                      "start_revision": start_revision}}
        errors = []
        for endpoint in self.endpoints:
            try:
                with self.client.stream("POST", f"{endpoint}/v3/watch", json=request,
                                        timeout=httpx.Timeout(self.timeout, read=None)) as response:
                    if response.status_code != 200:
                        response.read()
                        raise EtcdError(f"etcd {endpoint} refused the watch: {_message(response)}")
                    connection = response.extensions["network_stream"].get_extra_info("socket")
                    with self._lock:
                        self._streams.add(connection)
                    try:
                        yield from _watch_events(response, endpoint)
                    finally:
                        with self._lock:
                            self._streams.discard(connection)
                raise EtcdError(f"etcd {endpoint} ended the watch of {prefix!r}")
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                errors.append(f"{endpoint}: {type(error).__name__}: {error}")
            except (httpx.HTTPError, httpx.StreamError) as error:
                raise EtcdUnavailable(f"etcd {endpoint}: the watch of {prefix!r} broke ({error!r})") from None
        raise EtcdUnavailable(f"no etcd member answered the watch ({'; '.join(errors)})")

    def close_watches(self) -> None:
        """End every watch stream still open: their readers, blocked on the socket in other threads, get
        :class:`EtcdError` (closing the httpx response would not wake them; shutting the socket down does)."""
        with self._lock:
            streams = list(self._streams)
        for connection in streams:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def close(self) -> None:
        self.close_watches()
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    # -- transport -----------------------------------------------------------------------------------------

    def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to the first member that answers. Connection failures and 503s move on to the next
        member; any other refusal is final (another member would refuse it too)."""
        problems = []
        for endpoint in self.endpoints:
            try:
                response = self.client.post(f"{endpoint}{path}", json=body)
            except httpx.TransportError as error:
                problems.append(f"{endpoint}: {type(error).__name__}: {error or 'no answer'}")
                continue
            if response.status_code == 200:
                return response.json()
            message = _message(response)
            if response.status_code == 503:
                problems.append(f"{endpoint}: {message}")
                continue
            if "lease not found" in message:
                raise LeaseNotFound(f"etcd {endpoint}: {message}")
            raise EtcdError(f"etcd {endpoint} refused {path}: HTTP {response.status_code}: {message}")
        raise EtcdUnavailable(f"no etcd member answered {path}: {'; '.join(problems)}")


def _watch_events(response: httpx.Response, endpoint: str) -> Iterator[list[WatchEvent]]:
    for line in response.iter_lines():
        if not line.strip():
            continue
        message = json.loads(line)
        if "error" in message:
            raise EtcdError(f"etcd {endpoint}: the watch failed: {message['error'].get('message', message)}")
        result = message.get("result", {})
        if result.get("canceled") or int(result.get("compact_revision", 0) or 0):
            reason = result.get("cancel_reason") or f"revision compacted to {result.get('compact_revision')}"
            raise EtcdError(f"etcd {endpoint} cancelled the watch: {reason}")
        events = [_event(e) for e in result.get("events", [])]
        if events:
            yield events


def _event(event: dict[str, Any]) -> WatchEvent:
    kv = event["kv"]
    deleted = event.get("type") == "DELETE"
    return WatchEvent(decode(kv["key"]).decode(), None if deleted else decode(kv.get("value", "")),
                      int(kv.get("mod_revision", 0)))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    return str(body.get("message") or body.get("error") or body)[:300]

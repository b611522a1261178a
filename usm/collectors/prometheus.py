"""Host metrics from node_exporter, read through the Prometheus HTTP API.

One instant query per metric covers every host at once (``... by (instance)``), so a cycle costs
the same handful of requests with 3 hosts or 300; the queries of a cycle run side by side, so a
slow Prometheus costs one timeout, not one per metric. Each result is keyed by the target's
``instance`` label and mapped to a usm host name through the mapping the caller gives.

A host is only reported when Prometheus says its target is up (``up == 1``) at that moment: a
rate over a window keeps returning values for a while after a target dies, and a stale value is
worse than none. A host whose target is down, or that Prometheus does not scrape, gets no
samples at all (missing, never 0) and a :class:`~usm.collectors.batch.Problem` saying why.

Fields (the policy's built-in names; units as in ``usm.placement.model``):

* ``cpu``: cores busy (non-idle), ``cpu_percent``: the same as a share of all the host's cores;
* ``ram``: bytes in use (MemTotal - MemAvailable), ``ram_percent``: the same as a share of MemTotal.
  MemAvailable is the kernel's own estimate of what can be allocated without swapping, which the
  original's MemFree + Cached + Buffers only approximated;
* ``filesystem_available``: bytes available to unprivileged users on one mount point (``/``);
* ``rx_bytes_per_sec``, ``tx_bytes_per_sec``: traffic of the host's real interfaces (loopback and
  the virtual devices of container runtimes are left out: they would count traffic twice).

Rates are taken over ``rate_window`` seconds, which must span at least two scrapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Self

import httpx

from usm.collectors.batch import Batch, Problem, Row, samples_frame

VIRTUAL_DEVICES = "lo|veth.*|docker.*|br-.*|virbr.*|ifb.*|cali.*|flannel.*|cni.*|vxlan.*|tun.*|tap.*"
"""Network devices whose traffic is not the host's own (regular expression on the ``device`` label)."""

UP = "up"  # the name of the target-state query among the metric queries


class QueryError(Exception):
    """One query that gave no usable answer; the message says why, for a Problem."""


def host_queries(rate_window: float, selector: str = "", mountpoint: str = "/",
                 excluded_devices: str = VIRTUAL_DEVICES) -> dict[str, str]:
    """Field name -> the PromQL instant query that gives it for every instance (plus ``up``).

    ``selector`` holds extra label matchers for every series, e.g. ``job="node"``.
    """
    if not rate_window > 0:
        raise ValueError(f"rate_window must be a positive number of seconds (got {rate_window!r}); "
                         "make it span at least two scrape intervals")
    window = f"[{round(rate_window * 1000)}ms]"

    def series(metric: str, *matchers: str) -> str:
        return metric + "{" + ",".join(m for m in (*matchers, selector) if m) + "}"

    idle = "rate(" + series("node_cpu_seconds_total", 'mode="idle"') + window + ")"
    available = "sum by (instance) (" + series("node_memory_MemAvailable_bytes") + ")"
    total = "sum by (instance) (" + series("node_memory_MemTotal_bytes") + ")"
    root = series("node_filesystem_avail_bytes", f'mountpoint="{mountpoint}"')
    devices = f'device!~"{excluded_devices}"'
    received = series("node_network_receive_bytes_total", devices)
    sent = series("node_network_transmit_bytes_total", devices)
    return {
        UP: f"max by (instance) ({series('up')})",
        "cpu": f"clamp_min(sum by (instance) (1 - {idle}), 0)",
        "cpu_percent": f"clamp(100 * (1 - avg by (instance) ({idle})), 0, 100)",
        "ram": f"{total} - {available}",
        "ram_percent": f"100 * (1 - {available} / {total})",
        "filesystem_available": f"max by (instance) ({root})",
        "rx_bytes_per_sec": f"sum by (instance) (rate({received}{window}))",
        "tx_bytes_per_sec": f"sum by (instance) (rate({sent}{window}))",
    }


def vector_values(body: object) -> dict[str, float]:
    """Instance -> value of an instant-vector answer of ``/api/v1/query``; non-finite values left out."""
    if not isinstance(body, dict):
        raise QueryError("the answer is not a JSON object (is the URL a Prometheus server?)")
    if body.get("status") != "success":
        raise QueryError(f"Prometheus refused the query: {body.get('errorType', '?')}: {body.get('error', '?')}")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise QueryError(f"expected an instant vector, got {data.get('resultType')!r}")
    values: dict[str, float] = {}
    for item in data.get("result", ()):
        instance = item.get("metric", {}).get("instance")
        value = float(item["value"][1])
        if instance is not None and math.isfinite(value):
            values[instance] = value
    return values


def validated_targets(targets: Mapping[str, str]) -> dict[str, str]:
    """The instance -> host mapping, checked: names are non-empty and no host has two instances."""
    seen: dict[str, str] = {}
    for instance, host in targets.items():
        if not instance or not host:
            raise ValueError(f"empty instance or host name in the target mapping ({instance!r} -> {host!r}); "
                             "map each node_exporter instance label (e.g. '10.0.0.5:9100') to a usm host name")
        if host in seen:
            raise ValueError(f"host {host!r} is mapped from two instances ({seen[host]!r} and {instance!r}); "
                             "a host has one node_exporter: keep one of them")
        seen[host] = instance
    return dict(targets)


class PrometheusCollector:
    """Reads every mapped host's metrics from one Prometheus server.

    ``targets`` maps the ``instance`` label of each node_exporter target to its usm host name;
    instances not in it are ignored. ``timeout`` bounds each request (and Prometheus' own
    evaluation of it). ``auth`` is for a Prometheus behind a basic-auth proxy; the caller reads
    the credentials from the environment or a file.
    """

    def __init__(self, url: str, targets: Mapping[str, str], *, timeout: float = 5.0, rate_window: float = 60.0,
                 selector: str = "", mountpoint: str = "/", excluded_devices: str = VIRTUAL_DEVICES,
                 auth: tuple[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus URL {url!r} must start with http:// or https:// "
                             "(e.g. http://127.0.0.1:9090)")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds (got {timeout!r})")
        self.url = url.rstrip("/")
        self.targets = validated_targets(targets)
        self.timeout = timeout
        self.queries = host_queries(rate_window, selector, mountpoint, excluded_devices)
        self.client = httpx.Client(base_url=self.url, timeout=timeout, auth=auth)
        self.pool = ThreadPoolExecutor(max_workers=len(self.queries), thread_name_prefix="usm-prometheus")

    def collect(self, at: float) -> Batch:
        """The mapped hosts' current values, as samples at time ``at``."""
        futures = {name: self.pool.submit(self._query, promql) for name, promql in self.queries.items()}
        results: dict[str, dict[str, float]] = {}
        problems: list[Problem] = []
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except QueryError as error:
                problems.append(Problem(self.url, f"{name}: {error}"))
        if UP not in results:
            return Batch(samples_frame(at, ()), tuple(problems))
        up = results.pop(UP)
        rows: list[Row] = []
        for instance, host in self.targets.items():
            state = up.get(instance)
            if state is None:
                problems.append(Problem(host, f"{instance} is not a target of the Prometheus at {self.url}; "
                                              "add it to a scrape config or fix the target mapping"))
            elif state != 1:
                problems.append(Problem(host, f"node_exporter at {instance} is down (up == 0 at {self.url})"))
            else:
                rows.extend((host, name, values.get(instance)) for name, values in results.items())
        return Batch(samples_frame(at, rows), tuple(problems))

    def _query(self, promql: str) -> dict[str, float]:
        try:
            response = self.client.get("/api/v1/query", params={"query": promql, "timeout": f"{self.timeout:g}s"})
        except httpx.TimeoutException:
            raise QueryError(f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as error:
            raise QueryError(f"{type(error).__name__}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            raise QueryError(f"HTTP {response.status_code}, not a JSON answer "
                             "(is the URL a Prometheus server?)") from None
        return vector_values(body)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


__all__ = [
    "VIRTUAL_DEVICES",
    "PrometheusCollector",
    "QueryError",
    "host_queries",
    "validated_targets",
    "vector_values",
]

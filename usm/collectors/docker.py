"""Stats of every usm-managed container, read from each host's Docker engine.

Hosts are read side by side, one thread and one Docker client each, and the collection waits for
them at most ``timeout`` seconds: a slow or dead host costs that much and no more, its containers
get no samples (missing, never 0) and it is reported as a :class:`~usm.collectors.batch.Problem`.
A host still busy with a previous collection is not asked again until it answers; its client is
opened on first use and kept, and reopened after a failure to connect.

Only containers labelled ``usm.managed=true`` are read (the label filter runs in the daemon);
each stands for the usm container named by its ``usm.container`` label, or by its Docker name.
A stats read waits for the daemon's next sampling tick (about a second), so the containers of a
host are read ``parallel_stats`` at a time, all answered at the same tick: a host with N managed
containers takes about ``ceil(N / parallel_stats)`` seconds (docs/benchmarks.md). The default, 8,
stays under sshd's default ``MaxSessions`` of 10: over ssh:// each parallel read is one SSH
session of the same connection. The fields and how they are derived from two reads are in
``usm.collectors.dockerstats``.

Each host is given as a Docker endpoint URL and reached as the Docker actuator reaches it
(``usm.actuators.dockerhosts``): ``ssh://`` checked against usm's own known_hosts, ``tcp://`` with
mutual TLS, or ``unix://`` for a local engine; plain TCP is refused when the collector is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import Any, Self

import docker
import docker.errors
import paramiko

from usm.actuators import dockerhosts
from usm.actuators.docker import LABEL_MANAGED, LABEL_NAME
from usm.actuators.dockerhosts import AccessError, DockerAccess
from usm.collectors.batch import Batch, Problem, Row, samples_frame
from usm.collectors.dockerstats import Snapshot, container_rows, snapshot

Connect = Callable[[str], docker.DockerClient]


@dataclass
class _Host:
    """One engine and what the collector keeps about it between cycles."""

    name: str
    url: str
    stats_pool: ThreadPoolExecutor
    client: docker.DockerClient | None = None
    previous: dict[str, Snapshot] = field(default_factory=dict)  # container id -> its last read
    running: Future[list[Row]] | None = None


class HostError(Exception):
    """A host that could not be read; the message says why, for a Problem."""


class DockerStatsCollector:
    """Reads the managed containers of every host; ``hosts`` maps usm host names to Docker URLs.

    ``timeout`` bounds both each request and the whole collection, so it must cover the busiest
    host's ``ceil(N / parallel_stats)`` sampling ticks. Clients are made with ``access`` (by
    default from the environment, ``DockerAccess.from_environment``), or by ``connect`` when given
    (the caller then checks the URLs).
    """

    def __init__(self, hosts: Mapping[str, str], *, timeout: float = 10.0, parallel_stats: int = 8,
                 access: DockerAccess | None = None, connect: Connect | None = None) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds (got {timeout!r})")
        if parallel_stats < 1:
            raise ValueError(f"parallel_stats must be at least 1 (got {parallel_stats!r})")
        if connect is None:
            access = replace(access or DockerAccess.from_environment(), timeout=timeout)
            for name, url in hosts.items():  # refuse plain TCP now rather than at every cycle
                try:
                    dockerhosts.parse_endpoint(url, access)
                except AccessError as error:
                    raise AccessError(f"host {name}: {error}") from None
            connect = partial(dockerhosts.connect, access=access)
        self.timeout = timeout
        self.connect = connect
        self.hosts = [_Host(name, url, ThreadPoolExecutor(parallel_stats, thread_name_prefix=f"usm-stats-{name}"))
                      for name, url in hosts.items()]
        self.pool = ThreadPoolExecutor(max(1, len(self.hosts)), thread_name_prefix="usm-docker")

    def collect(self, at: float) -> Batch:
        """Every reachable host's managed containers, as samples at time ``at``."""
        problems: list[Problem] = []
        asked: list[_Host] = []
        for host in self.hosts:
            if host.running is not None and not host.running.done():
                problems.append(Problem(host.name, f"still busy with an earlier collection from {host.url}"))
                continue
            host.running = self.pool.submit(self._read_host, host)
            asked.append(host)
        wait([host.running for host in asked], timeout=self.timeout)
        rows: list[Row] = []
        for host in asked:
            future = host.running
            if not future.done():
                problems.append(Problem(host.name, f"no answer from {host.url} within {self.timeout:g} s"))
            elif isinstance(future.exception(), HostError):
                problems.append(Problem(host.name, str(future.exception())))
            else:
                rows.extend(future.result())  # any other exception is a bug: let it raise
        return Batch(samples_frame(at, rows), tuple(problems))

    def _read_host(self, host: _Host) -> list[Row]:
        """Runs on the host's own thread: list its managed containers, read their stats, derive the fields."""
        try:
            if host.client is None:
                host.client = self.connect(host.url)
            api = host.client.api
            listed = api.containers(filters={"label": f"{LABEL_MANAGED}=true"})
            reads = list(host.stats_pool.map(partial(_stats_or_none, api), [c["Id"] for c in listed]))
        except (AccessError, docker.errors.DockerException, paramiko.SSHException, OSError) as error:
            # (requests' errors are OSErrors; an SSH channel that cannot open raises paramiko's)
            self._drop_client(host)
            raise HostError(f"cannot read Docker at {host.url}: {_one_line(error)}") from None
        rows: list[Row] = []
        current: dict[str, Snapshot] = {}
        for container, stats in zip(listed, reads):
            now = None if stats is None else snapshot(stats)
            if now is None:  # gone or stopped since the listing: nothing to report
                continue
            current[container["Id"]] = now
            rows.extend(container_rows(_entity(container), now, host.previous.get(container["Id"])))
        host.previous = current
        return rows

    @staticmethod
    def _drop_client(host: _Host) -> None:
        """Forget a client that failed: the next collection connects afresh (the engine may have restarted)."""
        if host.client is not None:
            host.client.close()
            host.client = None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        for host in self.hosts:
            host.stats_pool.shutdown(wait=False, cancel_futures=True)
            if host.client is not None:
                host.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _stats_or_none(api: Any, container_id: str) -> dict[str, Any] | None:
    """One stats read, or None when the container went away in the meantime."""
    try:
        return api.stats(container_id, stream=False, one_shot=True)
    except docker.errors.NotFound:
        return None


def _entity(container: Mapping[str, Any]) -> str:
    labels = container.get("Labels") or {}
    return labels.get(LABEL_NAME) or container["Names"][0].lstrip("/")


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


__all__ = ["DockerStatsCollector", "HostError"]

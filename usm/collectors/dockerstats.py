"""Container fields from Docker's stats: the arithmetic, apart from the I/O (``usm.collectors.docker``).

Docker's ``/containers/{id}/stats`` answer carries cumulative counters (cpu time, bytes in and
out, bytes read and written) and the time the daemon read them. A :class:`Snapshot` keeps the
counters of one read; the rates and the cpu share come from two snapshots of the same
container, the previous cycle's and this one's, so they describe the whole interval between two
cycles (what a rule over the policy's period should see), not the last second.

Fields, for the entity the container stands for (units as in ``usm.placement.model`` and the
simulator's, so that a policy means the same live and simulated):

* ``cpu``: cores used over the interval; ``cpu_percent``: the same as a share of all the host's
  cores (0-100). ``docker stats`` shows cores x 100 instead (200 % for two busy cores);
* ``ram``: bytes in use without the inactive page cache (as ``docker stats`` counts them);
  ``ram_percent``: of the container's memory limit (the host's memory when it has none);
* ``rx_bytes``, ``tx_bytes`` and ``rx_bytes_per_sec``, ``tx_bytes_per_sec``: over the container's
  own network interfaces. A container on the host's network (``--network host``) has none of
  its own: these are missing for it, as traffic cannot be told apart from the host's;
* ``block_read_bytes``, ``block_write_bytes`` and their ``_per_sec`` rates: block device I/O (not
  built-in policy fields: a policy that uses them names them in ``settings.fields``).

A value that cannot be known is None, never 0: the first read of a container has no rates yet, a
counter that went backwards (the container restarted) gives no rate for that interval, and a
container whose stats list no block device gives no block fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from usm.collectors.batch import Row

NEVER = datetime.fromisoformat("0001-01-01T00:00:00Z")  # Docker's zero time: "not read"
COUNTERS = ("rx_bytes", "tx_bytes", "block_read_bytes", "block_write_bytes")


@dataclass(frozen=True)
class Snapshot:
    """The counters of one stats read of one container; None where the stats lack them."""

    read: float  # when the daemon read them, seconds since the epoch
    cpu_time: float | None = None  # ns of cpu the container used
    system_time: float | None = None  # ns of cpu the whole host used (all cores)
    cores: int | None = None  # cores online on the host
    ram: float | None = None
    ram_limit: float | None = None
    rx_bytes: float | None = None
    tx_bytes: float | None = None
    block_read_bytes: float | None = None
    block_write_bytes: float | None = None


def snapshot(stats: Mapping[str, Any]) -> Snapshot | None:
    """The counters of one stats answer, or None when the daemon read nothing (the container is not running)."""
    read = _time(stats.get("read"))
    if read is None:
        return None
    cpu = stats.get("cpu_stats") or {}
    memory = stats.get("memory_stats") or {}
    received, sent = _network(stats.get("networks"))
    read_bytes, written_bytes = _block_io((stats.get("blkio_stats") or {}).get("io_service_bytes_recursive"))
    return Snapshot(
        read=read,
        cpu_time=_number((cpu.get("cpu_usage") or {}).get("total_usage")),
        system_time=_number(cpu.get("system_cpu_usage")),
        cores=cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ()) or None,
        ram=_ram_in_use(memory),
        ram_limit=_number(memory.get("limit")),
        rx_bytes=received,
        tx_bytes=sent,
        block_read_bytes=read_bytes,
        block_write_bytes=written_bytes,
    )


def container_rows(entity: str, now: Snapshot, before: Snapshot | None) -> list[Row]:
    """The entity's samples from this read and, for cpu and rates, the previous read of the same container."""
    rows: list[Row] = [(entity, "ram", now.ram), (entity, "ram_percent", _percent(now.ram, now.ram_limit))]
    rows += [(entity, name, getattr(now, name)) for name in COUNTERS]
    if before is None:
        return rows
    share = _ratio(_delta(now.cpu_time, before.cpu_time), _delta(now.system_time, before.system_time))
    rows.append((entity, "cpu_percent", None if share is None else share * 100))
    rows.append((entity, "cpu", None if share is None or now.cores is None else share * now.cores))
    elapsed = now.read - before.read
    for name in COUNTERS:
        rows.append((entity, f"{name}_per_sec", _ratio(_delta(getattr(now, name), getattr(before, name)), elapsed)))
    return rows


def _delta(now: float | None, before: float | None) -> float | None:
    """How much a counter grew; None when unknown or when it went backwards (it was reset)."""
    if now is None or before is None or now < before:
        return None
    return now - before


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return part / whole


def _percent(part: float | None, whole: float | None) -> float | None:
    ratio = _ratio(part, whole)
    return None if ratio is None else ratio * 100


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    moment = datetime.fromisoformat(text)  # Python 3.11 reads "Z" and drops digits past microseconds
    return None if moment <= NEVER else moment.timestamp()


def _ram_in_use(memory: Mapping[str, Any]) -> float | None:
    """Usage without the inactive file cache (cgroup v1 names it total_inactive_file, v2 inactive_file)."""
    usage = _number(memory.get("usage"))
    if usage is None:
        return None
    details = memory.get("stats") or {}
    cache = _number(details.get("total_inactive_file", details.get("inactive_file")))
    return usage - cache if cache is not None and cache < usage else usage


def _network(networks: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    if not networks:  # no interface of its own (host or none network)
        return None, None
    return (float(sum(n.get("rx_bytes", 0) for n in networks.values())),
            float(sum(n.get("tx_bytes", 0) for n in networks.values())))


def _block_io(entries: list[Mapping[str, Any]] | None) -> tuple[float | None, float | None]:
    """Bytes read and written over all devices, or None for both when Docker lists no device.

    An empty list is what an engine without block I/O accounting reports for a container writing
    with fsync (seen on this project's machines), so it cannot be told from "no I/O" and is unknown.
    """
    if not entries:
        return None, None
    totals = {"read": 0.0, "write": 0.0}
    for entry in entries:
        op = str(entry.get("op", "")).lower()  # "Read" under cgroup v1, "read" under v2
        if op in totals:
            totals[op] += float(entry.get("value", 0))
    return totals["read"], totals["write"]


__all__ = ["COUNTERS", "Snapshot", "container_rows", "snapshot"]

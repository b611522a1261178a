"""The site file's optional ``support:`` section: which per-region support components a single-node install runs.

With it, ``usm run`` starts a region's components when the region has application containers and stops them
``stop_delay`` after it has none (``usm.manager.support``); a dry run records those decisions without starting
anything. The components run as local processes of the manager's machine on loopback ports, allocated from
``base_port`` upward and recorded, with their PIDs, under ``state_dir`` (relative to the run's ``--data``
directory): ``usm.manager.regional``. ``worker_store`` is the federation's store a regional ``usm worker`` joins;
without it the worker component is decided and recorded only. Its password is not part of the URL: PostgreSQL
reads it from ``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from usm.engine.expressions import parse_duration
from usm.manager.sitesources import Report

COMPONENTS = ("etcd", "load-balancer", "worker")
"""Every support component, in the order a region's are started (the registry first: the others register in it)."""

STOP_DELAY = 300.0  # seconds: the original's 5 minutes (§3.9)
BASE_PORT = 23790
STATE_DIR = "support"


@dataclass(frozen=True)
class SiteSupport:
    """The per-region support components to run, and where their ports and records come from."""

    components: tuple[str, ...] = COMPONENTS
    stop_delay: float = STOP_DELAY
    base_port: int = BASE_PORT
    state_dir: str = STATE_DIR
    worker_store: str = ""  # the federation's store URL for `usm worker`; "": the worker is recorded only


def read_support(data: Any, problem: Report) -> SiteSupport | None:
    """The ``support:`` section of a schema-valid site document (``None`` when absent); components in start
    order whatever order the file lists them in."""
    section = data.get("support")
    if section is None:
        return None
    listed = [str(c) for c in section.get("components", COMPONENTS)]
    for j, name in enumerate(listed):
        if listed.index(name) != j:
            problem(["support", "components", j], f"the component '{name}' is listed twice", "list it once")
    return SiteSupport(
        components=tuple(c for c in COMPONENTS if c in listed),
        stop_delay=_delay(section, problem),
        base_port=int(section.get("base_port", BASE_PORT)),
        state_dir=str(section.get("state_dir", STATE_DIR)),
        worker_store=str(section.get("worker_store", "")),
    )


def _delay(section: Any, problem: Report) -> float:
    """``stop_delay`` as seconds (0 allowed: stop as soon as a region is empty)."""
    if "stop_delay" not in section:
        return STOP_DELAY
    raw = section["stop_delay"]
    try:
        seconds = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            else parse_duration(str(raw))
    except ValueError as error:
        problem(["support", "stop_delay"], str(error), "write a number and one unit: 30s, 5m")
        return STOP_DELAY
    if seconds < 0:
        problem(["support", "stop_delay"], f"the stop delay cannot be negative ({raw})", "write 0s or more")
        return STOP_DELAY
    return seconds


__all__ = ["BASE_PORT", "COMPONENTS", "STATE_DIR", "STOP_DELAY", "SiteSupport", "read_support"]

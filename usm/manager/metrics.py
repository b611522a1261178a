"""The manager's own metrics, for Prometheus to scrape (prometheus-client).

Each manager gets its own registry (tests run several in one process); ``serve()`` exposes it on
a loopback address by default. The names follow Prometheus conventions: a ``usm_`` prefix, base
units, ``_total`` for counters.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)


class ManagerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cycle_seconds = Histogram(
            "usm_cycle_duration_seconds", "Wall time of one control-loop cycle (collect to act).", registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60))
        self.cycles = Counter("usm_cycles_total", "Control-loop cycles run, by result.", ["result"], registry=r)
        self.overruns = Counter("usm_cycle_overruns_total", "Cycles that ran past the next due time.", registry=r)
        self.skipped = Counter("usm_cycles_skipped_total", "Due cycles skipped because one ran late.", registry=r)
        self.evaluations = Counter("usm_evaluations_total", "Entity evaluations, by decision.", ["decision"],
                                   registry=r)
        self.actions = Counter("usm_actions_total", "Actions the engine chose, by kind.", ["action"], registry=r)
        self.steps = Counter("usm_plan_steps_total", "Plan steps, by step kind and outcome.", ["step", "outcome"],
                             registry=r)
        self.collector_errors = Counter("usm_collector_errors_total",
                                        "Sources (hosts, Prometheus, location monitors) a cycle could not read.",
                                        ["source"], registry=r)
        self.reloads = Counter("usm_policy_reloads_total", "Policy edits seen, by result.", ["result"], registry=r)
        self.policy_valid = Gauge("usm_policy_edit_valid",
                                  "1 when the policy directory as last read is valid and in force, else 0.",
                                  registry=r)
        self.policy = Gauge("usm_policy_info", "The policy in force (its digest).", ["digest"], registry=r)
        self.policy_valid.set(1)

    def policy_in_force(self, digest: str) -> None:
        self.policy.clear()
        self.policy.labels(digest=digest).set(1)

    def count_evaluations(self, decisions: Iterable[str]) -> None:
        counts: dict[str, int] = {}
        for decision in decisions:
            counts[decision] = counts.get(decision, 0) + 1
        for decision, count in counts.items():
            self.evaluations.labels(decision=decision).inc(count)


def serve(metrics: ManagerMetrics, port: int, address: str = "127.0.0.1") -> None:
    """Expose the metrics at ``http://address:port/metrics`` from a daemon thread."""
    start_http_server(port, addr=address, registry=metrics.registry)

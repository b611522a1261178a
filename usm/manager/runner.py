"""Live mode: the control loop on the wall clock, with hot reload, metrics and a log of what went wrong.

``LiveRunner.cycle(at)`` is what the scheduler calls at every due time:

1. between cycles, the policy directory is polled; a valid edit replaces the policy in force
   (``Engine.replace``, atomic, streaks and cooldowns carried over) and may change the period; an
   invalid one is logged with its ``FILE:LINE:COLUMN`` problems, counted, and the old policy stays;
2. one control-loop cycle runs (collectors -> history -> engine -> placement -> actuators); an
   exception in it is logged and counted, and the next cycle runs as usual;
3. the metrics are updated: duration, evaluations by decision, actions by kind, plan steps by
   outcome, collector errors by source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from usm.manager.loop import ControlLoop, CycleReport
from usm.manager.metrics import ManagerMetrics
from usm.manager.reload import PolicyWatcher, Rejected, Reloaded
from usm.manager.scheduler import Overrun, Scheduler

log = logging.getLogger("usm.run")


@dataclass
class LiveRunner:
    loop: ControlLoop
    watcher: PolicyWatcher
    scheduler: Scheduler
    metrics: ManagerMetrics = field(default_factory=ManagerMetrics)
    timer: Callable[[], float] = time.perf_counter
    last: CycleReport | None = None

    def __post_init__(self) -> None:
        self.metrics.policy_in_force(self.loop.engine.policy.digest)

    def run(self, cycles: int | None = None) -> int:
        return self.scheduler.run(self.cycle, self.overrun, cycles)

    def overrun(self, overrun: Overrun) -> None:
        self.metrics.overruns.inc()
        self.metrics.skipped.inc(overrun.skipped)
        log.warning("the cycle due at %.3f ended at %.3f, past the next due time: %d cycle(s) skipped",
                    overrun.started, overrun.finished, overrun.skipped)

    def cycle(self, at: float) -> CycleReport | None:
        self.reload()
        started = self.timer()
        try:
            report = self.loop.run_cycle(at)
        except Exception:
            log.exception("the cycle at %.3f failed; the next one runs as usual", at)
            self.metrics.cycles.labels(result="error").inc()
            return None
        finally:
            self.metrics.cycle_seconds.observe(self.timer() - started)
        self._count(report)
        self.last = report
        return report

    def reload(self) -> None:
        change = self.watcher.poll()
        if change is None:
            return
        if isinstance(change, Reloaded):
            try:
                self.loop.engine.replace(change.policy)
            except Exception as error:  # noqa: BLE001 - a policy that loads but does not compile is rejected too
                change = Rejected((f"{self.watcher.directory}: the policy does not compile: {error}",))
        if isinstance(change, Rejected):
            self.metrics.reloads.labels(result="invalid").inc()
            self.metrics.policy_valid.set(0)
            log.error("the edited policy in %s is invalid; the policy in force stays (%s):\n%s",
                      self.watcher.directory, self.loop.engine.policy.digest[:12], "\n".join(change.problems))
            return
        policy = change.policy
        self.scheduler.period = policy.settings.period
        self.metrics.reloads.labels(result="ok").inc()
        self.metrics.policy_valid.set(1)
        self.metrics.policy_in_force(policy.digest)
        log.info("policy reloaded from %s: %d rules, period %gs, digest %s", self.watcher.directory,
                 len(policy.rules), policy.settings.period, policy.digest[:12])

    def _count(self, report: CycleReport) -> None:
        m = self.metrics
        m.cycles.labels(result="ok").inc()
        m.count_evaluations(report.cycle.evaluations["decision"].to_list())
        for action in report.cycle.actions:
            m.actions.labels(action=action.action.value).inc()
        for item, outcome in zip(report.planned, report.outcomes):
            result = "skipped" if outcome is None else ("ok" if outcome.ok else "failed")
            m.steps.labels(step=type(item.step).__name__, outcome=result).inc()
        for problem in report.observation.problems:
            m.collector_errors.labels(source=problem.subject).inc()
            log.warning("could not read %s: %s", problem.subject, problem.reason)

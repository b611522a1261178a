"""Per-region support components started and stopped on a virtual clock (usm.manager.support)."""

from __future__ import annotations

from dataclasses import dataclass, field

from usm.manager.support import RecordingComponent, RegionSupportLifecycle
from usm.placement.support import ArmSupportStop, CancelSupportStop, StartSupport, StopSupport, SupportState


@dataclass
class Flaky(RecordingComponent):
    """Records like a dry run, and fails the next `failures` calls of `failing` ("start" or "stop")."""

    failing: str = "start"
    failures: int = 0
    attempts: list[tuple[str, str]] = field(default_factory=list)

    def start(self, region: str) -> None:
        self._maybe_fail("start", region)
        super().start(region)

    def stop(self, region: str) -> None:
        self._maybe_fail("stop", region)
        super().stop(region)

    def _maybe_fail(self, what: str, region: str) -> None:
        self.attempts.append((what, region))
        if what == self.failing and self.failures > 0:
            self.failures -= 1
            raise RuntimeError(f"{self.name} {what} refused")


def lifecycle(*components) -> RegionSupportLifecycle:
    return RegionSupportLifecycle(list(components), SupportState(stop_delay_s=300.0))


def test_components_start_in_order_and_stop_five_minutes_after_the_last_container() -> None:
    registry, balancer, worker = RecordingComponent("etcd"), RecordingComponent("lb"), RecordingComponent("worker")
    support = lifecycle(registry, balancer, worker)
    assert [o.event for o in support.step({"europe": 2}, 0.0)] == [StartSupport("europe")]
    assert support.step({"europe": 1}, 60.0) == []
    assert [o.event for o in support.step({}, 100.0)] == [ArmSupportStop("europe", 400.0)]
    assert support.step({}, 399.0) == []
    assert worker.calls == [("start", "europe")]
    assert [o.event for o in support.step({}, 400.0)] == [StopSupport("europe")]
    for component in (registry, balancer, worker):
        assert component.calls == [("start", "europe"), ("stop", "europe")]
    assert support.step({}, 10_000.0) == []


def test_containers_coming_back_cancel_the_stop() -> None:
    balancer = RecordingComponent("lb")
    support = lifecycle(balancer)
    support.step({"asia": 1}, 0.0)
    support.step({}, 10.0)
    assert [o.event for o in support.step({"asia": 3}, 200.0)] == [CancelSupportStop("asia")]
    assert support.step({"asia": 3}, 310.0) == []
    assert [o.event for o in support.step({}, 320.0)] == [ArmSupportStop("asia", 620.0)]
    support.step({}, 620.0)
    assert balancer.calls == [("start", "asia"), ("stop", "asia")]


def test_regions_are_independent() -> None:
    balancer = RecordingComponent("lb")
    support = lifecycle(balancer)
    support.step({"europe": 1, "asia": 1}, 0.0)
    support.step({"asia": 1}, 50.0)
    support.step({"asia": 1}, 350.0)
    assert balancer.calls == [("start", "asia"), ("start", "europe"), ("stop", "europe")]


def test_a_failed_start_stops_what_started_and_is_retried_at_the_next_step() -> None:
    registry, balancer = RecordingComponent("etcd"), Flaky("lb", failing="start", failures=1)
    support = lifecycle(registry, balancer)
    [outcome] = support.step({"africa": 1}, 0.0)
    assert not outcome.ok and "lb did not start in africa: lb start refused" in outcome.detail
    assert registry.calls == [("start", "africa"), ("stop", "africa")]
    [retry] = support.step({"africa": 1}, 30.0)
    assert retry.ok and retry.event == StartSupport("africa")
    assert balancer.calls == [("start", "africa")]


def test_a_failed_stop_is_retried_until_it_succeeds_unless_containers_return() -> None:
    balancer = Flaky("lb", failing="stop", failures=2)
    support = lifecycle(balancer)
    support.step({"europe": 1}, 0.0)
    support.step({}, 0.0)
    [first] = support.step({}, 300.0)
    assert not first.ok and "could not stop in europe (lb: lb stop refused)" in first.detail
    [second] = support.step({}, 330.0)
    assert not second.ok
    [third] = support.step({}, 360.0)
    assert third.ok and third.event == StopSupport("europe")
    assert balancer.attempts == [("start", "europe"), ("stop", "europe"), ("stop", "europe"), ("stop", "europe")]

    again = Flaky("lb", failing="stop", failures=1)
    support = lifecycle(again)
    support.step({"europe": 1}, 0.0)
    support.step({}, 0.0)
    support.step({}, 300.0)  # fails
    assert [o.event for o in support.step({"europe": 1}, 310.0)] == [CancelSupportStop("europe")]
    assert again.calls == [("start", "europe")]

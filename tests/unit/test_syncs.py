"""The background syncs' periodic runner, on virtual time: when it fetches, what it keeps, what it reports."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from tests.virtualtime import VirtualTime
from usm.actuators.ec2 import CloudInstance, CloudSync, Ec2Error
from usm.manager.syncs import CloudView, Fetched, PeriodicSync, merge_cloud


class SteppedClock:
    """Time that passes when the runner waits, or when a fetch says it took a while."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


class Source:
    """What a fetch sees: a value the test sets, or an error it raises; every call is recorded with its time."""

    def __init__(self, clock, value: object = "v0") -> None:
        self.clock = clock
        self.value = value
        self.error: Exception | None = None
        self.problems: tuple[str, ...] = ()
        self.took = 0.0
        self.calls: list[tuple[float, object]] = []

    def __call__(self, previous: object) -> Fetched[object]:
        self.calls.append((self.clock(), previous))
        if self.took:
            self.clock.now += self.took
        if self.error is not None:
            raise self.error
        return Fetched(self.value, self.problems)


def test_it_fetches_at_every_due_time_and_keeps_the_latest_value():
    clock = SteppedClock()
    source = Source(clock)
    sync = PeriodicSync("ec2", source, 45.0, clock, clock.wait)
    assert sync.latest() is None and sync.taken_at is None
    assert sync.run(rounds=3) == 3
    assert [at for at, _ in source.calls] == [0.0, 45.0, 90.0]
    assert [previous for _, previous in source.calls] == [None, "v0", "v0"]  # each fetch sees the last value
    assert (sync.latest(), sync.taken_at) == ("v0", 90.0)
    assert sync.take_problems() == []


def test_a_failed_fetch_keeps_the_last_value_and_is_reported_once():
    clock = SteppedClock()
    source = Source(clock, "nodes-1")
    sync = PeriodicSync("swarm", source, 10.0, clock, clock.wait)
    sync.run(rounds=1)
    source.error = ConnectionError("manager  host\nunreachable")
    clock.wait(10.0)
    sync.run(rounds=2)  # at 10 and 20
    assert (sync.latest(), sync.taken_at) == ("nodes-1", 0.0)
    problems = sync.take_problems()
    assert [(p.source, p.reason, p.at) for p in problems] == [
        ("swarm", "ConnectionError: manager host unreachable", 10.0),
        ("swarm", "ConnectionError: manager host unreachable", 20.0)]
    assert sync.take_problems() == []  # given out once
    source.error, source.value = None, "nodes-2"
    sync.run(rounds=1)
    assert sync.latest() == "nodes-2" and sync.take_problems() == []


def test_the_parts_a_fetch_could_not_read_are_reported():
    clock = SteppedClock()
    source = Source(clock)
    source.problems = ("region eu-west-1 not read",)
    sync = PeriodicSync("ec2", source, 45.0, clock, clock.wait)
    sync.run(rounds=1)
    assert sync.latest() == "v0"
    assert [(p.source, p.reason) for p in sync.take_problems()] == [("ec2", "region eu-west-1 not read")]


def test_a_fetch_slower_than_the_interval_skips_the_periods_it_overran():
    clock = SteppedClock()
    source = Source(clock)
    sync = PeriodicSync("ec2", source, 45.0, clock, clock.wait)
    source.took = 100.0  # each fetch takes 100 s: due at 0, then 45 and 90 are overrun; next due 135
    sync.run(rounds=2)
    assert [at for at, _ in source.calls] == [0.0, 135.0]


def test_an_amendment_applies_now_and_survives_a_fetch_already_under_way():
    clock = SteppedClock()
    sync: PeriodicSync[tuple[str, ...]] = PeriodicSync("ec2", lambda _: Fetched(("a",)), 45.0, clock, clock.wait)
    sync.amend(lambda v: (*v, "lost"))  # nothing to amend yet
    sync.sync_once()
    sync.amend(lambda v: (*v, "b"))
    assert sync.latest() == ("a", "b")

    def slow(previous):
        sync.amend(lambda v: (*v, "c"))  # an actuator changes the source while this fetch reads it
        return Fetched(("a", "stale"))

    sync.fetch = slow
    sync.sync_once()
    assert sync.latest() == ("a", "stale", "c")
    sync.fetch = lambda _: Fetched(("fresh",))
    sync.sync_once()  # a later fetch is not amended again
    assert sync.latest() == ("fresh",)


def test_on_its_own_thread_it_fetches_when_due_and_stops_when_asked():
    time = VirtualTime()
    source = Source(time.clock)
    sync = PeriodicSync("swarm", source, 10.0, time.clock, time.wait)
    sync.start()
    try:
        assert sync.wait_first(30.0)
        time.settle(sleepers=1)
        assert [at for at, _ in source.calls] == [0.0]
        time.advance(9.0, sleepers=1)
        assert len(source.calls) == 1  # not due yet
        source.value = "v1"
        time.advance(1.0, sleepers=1)
        assert [at for at, _ in source.calls] == [0.0, 10.0] and sync.latest() == "v1"
        time.advance(25.0, sleepers=1)  # due at 20 and 30, woken at 35: it fetches once, then waits for 40
        assert [at for at, _ in source.calls] == [0.0, 10.0, 35.0] and sync.taken_at == 35.0
        time.advance(5.0, sleepers=1)
        assert [at for at, _ in source.calls][-1] == 40.0
    finally:
        time.close()
        sync.stop()
    assert not any(t.name == "usm-sync-swarm" for t in threading.enumerate())


def test_stop_interrupts_the_default_wait():
    sync = PeriodicSync("ec2", lambda _: Fetched(1), 3600.0)  # the wall clock; an hour between fetches
    sync.start()
    assert sync.wait_first(30.0)
    sync.stop(timeout=30.0)
    assert sync._thread is not None and not sync._thread.is_alive()


def instance(host: str, region: str, state: str = "running", instance_id: str | None = None) -> CloudInstance:
    return CloudInstance(host, instance_id or f"i-{host}", region, state, "t2.micro", "ami-1",
                         datetime(2026, 1, 1, tzinfo=UTC))


def test_a_region_that_did_not_answer_keeps_its_hosts_as_last_seen():
    first = merge_cloud(None, CloudSync((instance("a", "eu-west-1"), instance("b", "us-east-1"))),
                        ("eu-west-1", "us-east-1", "ap-south-1"))
    assert first.problems == ()
    assert first.value.regions == {"eu-west-1", "us-east-1", "ap-south-1"}
    failure = Ec2Error("describe_instances", "eu-west-1", "RequestLimitExceeded", "slow down", True)
    second = merge_cloud(first.value, CloudSync((instance("b", "us-east-1", "stopped"),), {"eu-west-1": failure}),
                         ("eu-west-1", "us-east-1", "ap-south-1"))
    assert [(i.host, i.state) for i in second.value.instances] == [("a", "running"), ("b", "stopped")]
    assert second.problems == (f"region eu-west-1 not read, its hosts kept as last seen: {failure}",)
    assert second.value.regions == first.value.regions  # read once: a host missing there later is gone


def test_a_region_never_read_is_not_counted_as_read():
    failure = Ec2Error("describe_instances", "eu-west-1", "AuthFailure", "no", False)
    fetched = merge_cloud(None, CloudSync((), {"eu-west-1": failure}), ("eu-west-1", "us-east-1"))
    assert fetched.value.regions == {"us-east-1"}


def test_an_instance_a_host_step_changed_replaces_the_one_seen_and_a_terminated_one_leaves():
    view = CloudView((instance("a", "eu-west-1"), instance("b", "eu-west-1")), frozenset({"eu-west-1"}))
    stopped = view.with_instance(instance("a", "eu-west-1", "stopped"))
    assert [(i.host, i.state) for i in stopped.instances] == [("a", "stopped"), ("b", "running")]
    launched = stopped.with_instance(instance("c", "eu-west-1", "pending"))
    assert [i.host for i in launched.instances] == ["a", "b", "c"]
    assert [i.host for i in launched.with_instance(instance("b", "eu-west-1", "terminated")).instances] == ["a", "c"]
    assert launched.instance("c").state == "pending" and launched.instance("z") is None


@pytest.mark.parametrize("interval", [0.0, -1.0, float("inf")])
def test_a_sync_needs_a_positive_interval(interval):
    with pytest.raises(ValueError, match="positive number of seconds"):
        PeriodicSync("ec2", lambda _: Fetched(1), interval)

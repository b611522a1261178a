"""The live loop's scheduler on a virtual clock: cycles never overlap, a late one is reported and skips."""

import itertools

import pytest

from usm.manager.scheduler import Overrun, Scheduler


class VirtualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def run(durations: list[float], period: float = 15.0):
    clock = VirtualClock()
    scheduler = Scheduler(period, clock=clock, wait=clock.wait)
    spans: list[tuple[float, float, float]] = []  # (due, started, finished)
    overruns: list[Overrun] = []
    pending = list(durations)

    def cycle(at: float) -> None:
        started = clock.now
        clock.now += pending.pop(0)
        spans.append((at, started, clock.now))

    ran = scheduler.run(cycle, overruns.append, cycles=len(durations))
    return ran, spans, overruns


def test_cycles_run_on_the_period_grid():
    ran, spans, overruns = run([1.0, 2.0, 0.5])
    assert ran == 3
    assert [due for due, _, _ in spans] == [1000.0, 1015.0, 1030.0]
    assert [started for _, started, _ in spans] == [1000.0, 1015.0, 1030.0]
    assert overruns == []


def test_a_late_cycle_is_reported_and_the_missed_ones_skipped_not_stacked():
    _, spans, overruns = run([40.0, 1.0, 1.0])
    # The first cycle ends at 1040: the cycles due at 1015 and 1030 are skipped; the next runs at 1045.
    assert [due for due, _, _ in spans] == [1000.0, 1045.0, 1060.0]
    assert overruns == [Overrun(1000.0, 1040.0, 2)]
    for (_, _, finished), (_, started, _) in itertools.pairwise(spans):
        assert started >= finished  # never two at once


def test_a_cycle_ending_exactly_on_the_next_due_time_is_not_late():
    _, spans, overruns = run([15.0, 1.0])
    assert [due for due, _, _ in spans] == [1000.0, 1015.0]
    assert overruns == []


def test_stop_while_waiting_ends_the_run():
    clock = VirtualClock()
    scheduler = Scheduler(15.0, clock=clock, wait=lambda seconds: True)  # asked to stop during the wait
    calls: list[float] = []
    clock.now = 1000.0

    def cycle(at: float) -> None:
        calls.append(at)
        clock.now += 1.0

    assert scheduler.run(cycle) == 1
    assert calls == [1000.0]


def test_stop_from_the_cycle_ends_the_run_after_it():
    clock = VirtualClock()
    scheduler = Scheduler(15.0, clock=clock, wait=clock.wait)
    calls: list[float] = []

    def cycle(at: float) -> None:
        calls.append(at)
        if len(calls) == 2:
            scheduler.stop()

    assert scheduler.run(cycle) == 2


def test_the_period_can_change_between_cycles():
    clock = VirtualClock()
    scheduler = Scheduler(15.0, clock=clock, wait=clock.wait)
    dues: list[float] = []

    def cycle(at: float) -> None:
        dues.append(at)
        scheduler.period = 30.0

    scheduler.run(cycle, cycles=3)
    assert dues == [1000.0, 1030.0, 1060.0]


@pytest.mark.parametrize("period", [0, -1, float("nan"), float("inf")])
def test_a_bad_period_is_refused(period):
    with pytest.raises(ValueError, match="positive number of seconds"):
        Scheduler(period)

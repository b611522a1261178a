"""Heartbeats, the countdown and hand-overs on a virtual clock: the defaults are the original's 15 s and 60 s."""

from __future__ import annotations

import pytest

from usm.manager.federation.supervision import (
    HandBack,
    MarkDown,
    TakeOver,
    Timing,
    WorkerStatus,
    due,
    silent,
    supervise,
)

DEFAULT = Timing()


def test_the_defaults_are_a_beat_every_15_seconds_and_down_after_60_of_silence():
    assert (DEFAULT.heartbeat, DEFAULT.countdown) == (15.0, 60.0)
    worker = WorkerStatus("w", "europe", True, heard_at=100.0)
    assert not silent(worker, 160.0, DEFAULT)  # exactly 60 s: not yet
    assert silent(worker, 160.5, DEFAULT)
    assert silent(WorkerStatus("w", "europe", True, None), 0.0, DEFAULT)


@pytest.mark.parametrize("heartbeat, countdown, message", [
    (0, 60, "heartbeat must be a positive number"),
    (15, float("inf"), "countdown must be a positive number"),
    (15, 15, r"countdown \(15s\) must be longer than the heartbeat interval \(15s\)"),
])
def test_timings_that_cannot_work_are_refused(heartbeat, countdown, message):
    with pytest.raises(ValueError, match=message):
        Timing(heartbeat, countdown)


def test_beats_and_checks_are_due_at_their_interval():
    assert due(None, 0.0, 15.0)
    assert not due(100.0, 114.9, 15.0)
    assert due(100.0, 115.0, 15.0)


def run(beats_until: float, back_at: float, end: float, timing: Timing = DEFAULT):
    """A worker that beats on schedule until ``beats_until``, is silent, and beats again from ``back_at``; the
    master supervises at every heartbeat interval. Returns (time, change) for every change, and the holder of
    each check."""
    heard: float | None = None
    last_beat: float | None = None
    holder: str | None = None
    ready = True
    changes, holders = [], []
    now = 0.0
    while now <= end:
        beating = now <= beats_until or now >= back_at
        if beating and due(last_beat, now, timing.heartbeat):
            heard = last_beat = now
            ready = True
        for change in supervise([WorkerStatus("w-eu", "europe", ready, heard)], {"europe": holder}, now, timing):
            changes.append((now, change))
            if isinstance(change, MarkDown):
                ready = False
            elif isinstance(change, TakeOver):
                holder = None
            else:
                holder = change.worker
        holders.append((now, holder))
        now += 1.0
    return changes, holders


def test_a_silent_worker_region_goes_to_the_master_within_the_countdown_and_comes_back():
    changes, holders = run(beats_until=120.0, back_at=300.0, end=330.0)
    assert changes == [
        (0.0, HandBack("europe", "w-eu")),
        (181.0, MarkDown("w-eu")), (181.0, TakeOver("europe", "w-eu")),  # last beat at 120: 61 s of silence
        (300.0, HandBack("europe", "w-eu")),
    ]
    assert dict(holders)[180.0] == "w-eu" and dict(holders)[250.0] is None and dict(holders)[330.0] == "w-eu"


def test_short_test_timings_behave_the_same():
    changes, _ = run(beats_until=10.0, back_at=20.0, end=25.0, timing=Timing(heartbeat=1.0, countdown=4.0))
    assert changes == [(0.0, HandBack("europe", "w-eu")), (15.0, MarkDown("w-eu")),
                       (15.0, TakeOver("europe", "w-eu")), (20.0, HandBack("europe", "w-eu"))]


def test_regions_go_to_their_own_live_workers_only_and_a_vanished_holder_loses_its_region():
    workers = [WorkerStatus("w-na", "north_america", True, 95.0), WorkerStatus("w-eu-b", "europe", True, 99.0),
               WorkerStatus("w-eu-a", "europe", False, 10.0)]
    leases = {"europe": None, "north_america": "w-gone", "asia": None}
    assert supervise(workers, leases, 100.0, DEFAULT) == (
        HandBack("europe", "w-eu-b"), TakeOver("north_america", "w-gone"), HandBack("north_america", "w-na"))
    assert supervise(workers, {"europe": "w-eu-b", "north_america": "w-na"}, 100.0, DEFAULT) == ()

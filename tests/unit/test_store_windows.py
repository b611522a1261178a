"""Event prediction windows and the minimum replicas they give, and dependency cycles: pure functions of the
store's rows (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from usm.manager.store import EventPrediction, Service
from usm.manager.store.catalog import dependency_cycle, min_replicas_at, window_active

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)  # a Friday, 08:00 UTC
END = START + timedelta(hours=2)


@pytest.mark.parametrize(("at", "once", "weekly"), [
    (START - timedelta(seconds=1), False, False),
    (START, True, True),
    (END - timedelta(microseconds=1), True, True),
    (END, False, False),
    (START + timedelta(days=7), False, True),
    (START + timedelta(days=7, hours=1), False, True),
    (START + timedelta(days=7, hours=2), False, False),
    (START + timedelta(days=3), False, False),
    (START + timedelta(weeks=52, minutes=30), False, True),
    (START.astimezone(timezone(timedelta(hours=-5))) + timedelta(days=14), False, True),  # another zone, same instant
])
def test_a_window_is_half_open_and_a_weekly_one_repeats_from_its_start(at, once, weekly):
    assert window_active(START, END, False, at) is once
    assert window_active(START, END, True, at) is weekly


def test_active_predictions_replace_the_minimum_and_the_largest_wins():
    predictions = [
        EventPrediction(name="fridays", starts_at=START, ends_at=END, weekly=True, min_replicas=5),
        EventPrediction(name="quiet-night", starts_at=START + timedelta(days=6), ends_at=START + timedelta(days=8),
                        weekly=False, min_replicas=1),
    ]
    windows = [p.window for p in predictions]
    assert min_replicas_at(2, windows, START + timedelta(hours=3)) == 2  # none active
    assert min_replicas_at(2, windows, START + timedelta(days=6, hours=1)) == 1  # may lower it
    assert min_replicas_at(2, windows, START + timedelta(days=7, minutes=1)) == 5  # both: the largest
    assert min_replicas_at(2, [], START) == 2


def test_a_dependency_cycle_is_found_through_other_services():
    a, b, c, d = (Service(name=n, image=n) for n in "abcd")
    a.dependencies, b.dependencies, c.dependencies = [b, d], [c], [d]
    assert dependency_cycle(a) is None
    d.dependencies = [b]
    assert dependency_cycle(a) is None  # b -> c -> d -> b does not pass through a
    assert dependency_cycle(b) == ["b", "c", "d", "b"]
    d.dependencies = [a]
    assert dependency_cycle(a) == ["a", "b", "c", "d", "a"]

"""Event predictions, pure: when a window counts as open (lead time, weekly repeats) and which minimum wins."""

from __future__ import annotations

import pytest

from usm.placement.predictions import WEEK, PredictionWindow, effective_min_replicas, window_open

HOUR, DAY = 3600.0, 86400.0
SALE = PredictionWindow(start=10 * HOUR, end=12 * HOUR, min_replicas=4, name="sale")


@pytest.mark.parametrize(("at", "lead", "is_open"), [
    (10 * HOUR - 1, 0.0, False),
    (10 * HOUR, 0.0, True),  # the start is included
    (12 * HOUR - 1, 0.0, True),
    (12 * HOUR, 0.0, False),  # the end is not
    (10 * HOUR - 45, 45.0, True),  # a 45 s start-up time opens it 45 s early
    (10 * HOUR - 46, 45.0, False),
    (12 * HOUR, 45.0, False),  # but it closes on time
    (10 * HOUR + WEEK, 0.0, False),  # once only
])
def test_a_window_is_open_from_its_start_less_the_lead_until_its_end(at, lead, is_open):
    assert window_open(SALE, at, lead) is is_open


def test_a_weekly_window_opens_every_week_from_its_start_on():
    match = PredictionWindow(start=2 * DAY + 20 * HOUR, end=2 * DAY + 23 * HOUR, min_replicas=6, weekly=True)
    assert not window_open(match, 2 * DAY + 20 * HOUR - WEEK)  # not before the first one
    for week in range(4):
        base = week * WEEK
        assert window_open(match, base + 2 * DAY + 21 * HOUR)
        assert not window_open(match, base + 2 * DAY + 23 * HOUR)
        assert not window_open(match, base + 3 * DAY + 21 * HOUR)
        assert window_open(match, base + 2 * DAY + 20 * HOUR - 30, lead=30)
    assert window_open(match, 3 * WEEK + 2 * DAY + 20 * HOUR - 1, lead=1) and not window_open(match, 3 * WEEK)


def test_the_largest_open_minimum_wins_and_replaces_the_own_one():
    late = PredictionWindow(start=11 * HOUR, end=13 * HOUR, min_replicas=2)
    quiet = PredictionWindow(start=20 * HOUR, end=22 * HOUR, min_replicas=0)
    windows = (SALE, late, quiet)
    assert effective_min_replicas(3, windows, 9 * HOUR) == 3  # none open: its own
    assert effective_min_replicas(3, windows, 10.5 * HOUR) == 4
    assert effective_min_replicas(3, windows, 11.5 * HOUR) == 4  # both open: the largest
    assert effective_min_replicas(3, windows, 12.5 * HOUR) == 2  # a window's minimum replaces the own one
    assert effective_min_replicas(3, windows, 21 * HOUR) == 0
    assert effective_min_replicas(3, windows, 11 * HOUR - 60, lead=60) == 4
    assert effective_min_replicas(1, (), 0.0) == 1


def test_unusable_windows_say_why():
    assert PredictionWindow(5.0, 5.0, 1).problems() == ["the window ends before it starts; make end later than start"]
    assert "less than a week" in PredictionWindow(0.0, WEEK, 1, weekly=True).problems()[0]
    assert PredictionWindow(0.0, 1.0, -1).problems() == ["min_replicas is -1; it must be 0 or more"]
    assert SALE.problems() == []

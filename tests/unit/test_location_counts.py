"""The request-location monitor's pure parts on a virtual clock: counting, windows, pruning, the points cap, and
reading posted bodies; plus the client's merge of monitors' windows."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usm.collectors.requests import checked_window, merge
from usm.geo.sphere import Coordinates
from usm.locationmonitor.counts import (
    LocationCount,
    LocationCounts,
    RequestCount,
    TableFull,
)
from usm.locationmonitor.items import InvalidItems, parse_items


def item(service: str, latitude: float, longitude: float, count: int = 1) -> RequestCount:
    return RequestCount(service, latitude, longitude, count)


def totals(counts: LocationCounts, interval: float | None, at: float) -> dict[tuple[str, float, float], int]:
    window = counts.window(interval, at)
    return {(s, p.latitude, p.longitude): p.count for s, points in window.services.items() for p in points}


# --- counting and rounding ------------------------------------------------------------------------

def test_items_add_up_per_service_and_rounded_location() -> None:
    counts = LocationCounts(retention=900, max_points=100, resolution=5, precision=2)
    counts.add([item("cart", 38.7223, -9.1393, 3), item("cart", 38.7249, -9.1351, 4), item("stock", 38.72, -9.14, 2)],
               at=1000.0)
    counts.add([item("cart", 38.72, -9.14, 1), item("cart", 40.4168, -3.7038, 5)], at=1003.0)
    assert totals(counts, None, 1004.0) == {("cart", 38.72, -9.14): 8, ("cart", 40.42, -3.7): 5,
                                            ("stock", 38.72, -9.14): 2}
    assert counts.points == 3
    assert counts.accepted == 5


def test_a_count_of_zero_adds_no_point() -> None:
    counts = LocationCounts(retention=60, max_points=1)
    counts.add([item("cart", 10, 10, 0)], at=0.0)
    assert counts.points == 0
    counts.add([item("cart", 20, 20, 1)], at=1.0)  # the only point is still free
    assert totals(counts, None, 1.0) == {("cart", 20.0, 20.0): 1}


def test_negative_zero_and_zero_are_one_location() -> None:
    counts = LocationCounts(retention=60, max_points=10, precision=1)
    counts.add([item("cart", -0.01, -0.04, 1), item("cart", 0.0, 0.0, 1)], at=0.0)
    assert totals(counts, None, 0.0) == {("cart", 0.0, 0.0): 2}


# --- windows --------------------------------------------------------------------------------------

def test_a_window_sums_the_buckets_that_overlap_it() -> None:
    counts = LocationCounts(retention=600, max_points=10, resolution=10)
    counts.add([item("cart", 1, 1, 1)], at=100.0)   # bucket [100, 110)
    counts.add([item("cart", 1, 1, 10)], at=135.0)  # bucket [130, 140)
    counts.add([item("cart", 1, 1, 100)], at=161.0)  # bucket [160, 170)
    assert totals(counts, 5, 165.0) == {("cart", 1.0, 1.0): 100}
    assert totals(counts, 30, 165.0) == {("cart", 1.0, 1.0): 110}  # (135, 165] touches [130, 140)
    assert totals(counts, 26, 165.0) == {("cart", 1.0, 1.0): 110}  # (139, 165] does too
    assert totals(counts, 25, 165.0) == {("cart", 1.0, 1.0): 100}  # (140, 165] does not
    assert totals(counts, 36, 165.0) == {("cart", 1.0, 1.0): 110}  # (129, 165]
    assert totals(counts, 66, 165.0) == {("cart", 1.0, 1.0): 111}
    assert totals(counts, None, 165.0) == {("cart", 1.0, 1.0): 111}
    window = counts.window(36, 165.0)
    assert (window.since, window.until, window.interval) == (120.0, 165.0, 36)


def test_the_window_reports_the_span_it_covers() -> None:
    counts = LocationCounts(retention=60, max_points=10, resolution=5)
    window = counts.window(20, at=1003.0)
    assert window.since == 980.0  # the bucket holding 983 starts at 980
    assert window.until == 1003.0
    assert window.services == {}


@pytest.mark.parametrize("interval", [0, -5, 61, math.nan, math.inf])
def test_an_interval_outside_the_retention_is_refused(interval: float) -> None:
    counts = LocationCounts(retention=60, max_points=10)
    with pytest.raises(ValueError, match="at most the retention"):
        counts.window(interval, at=0.0)


# --- pruning --------------------------------------------------------------------------------------

def test_counts_older_than_the_retention_are_pruned_and_their_points_freed() -> None:
    counts = LocationCounts(retention=60, max_points=10, resolution=5)
    counts.add([item("cart", 1, 1, 1), item("stock", 2, 2, 1)], at=0.0)
    counts.add([item("cart", 3, 3, 1)], at=50.0)
    assert counts.points == 3
    assert totals(counts, None, 64.0) == {("cart", 1.0, 1.0): 1, ("stock", 2.0, 2.0): 1, ("cart", 3.0, 3.0): 1}
    assert totals(counts, None, 66.0) == {("cart", 3.0, 3.0): 1}  # bucket [0, 5) ended at 5 <= 66 - 60
    assert counts.points == 1
    assert totals(counts, None, 1000.0) == {}
    assert counts.points == 0


def test_a_long_run_of_new_locations_never_needs_more_points_than_the_retention_holds() -> None:
    counts = LocationCounts(retention=30, max_points=40, resolution=1)
    for second in range(3600):  # one new location a second for an hour: only the last 31 s are kept
        counts.add([item("cart", (second % 1800) / 20 - 45, 0.0, 1)], at=float(second))
        assert counts.points <= 32
    assert counts.merged == 0 and counts.refused == 0
    assert sum(totals(counts, None, 3599.0).values()) == 31


def test_a_clock_stepping_back_counts_into_the_newest_bucket() -> None:
    counts = LocationCounts(retention=60, max_points=10, resolution=5)
    counts.add([item("cart", 1, 1, 1)], at=1000.0)
    counts.add([item("cart", 1, 1, 2)], at=900.0)  # the clock stepped back: counted now, not in the past
    assert totals(counts, 5, 1000.0) == {("cart", 1.0, 1.0): 3}
    assert totals(counts, None, 1065.0) == {}  # and pruned together


def test_buckets_skipped_by_a_long_gap_are_all_cleared() -> None:
    counts = LocationCounts(retention=20, max_points=10, resolution=5)
    for at in (0.0, 5.0, 10.0, 15.0, 20.0):
        counts.add([item("cart", 1, 1, 1)], at=at)
    counts.add([item("cart", 1, 1, 7)], at=47.0)  # ring slot 9 % 5 = 4, last written at t=20
    assert totals(counts, None, 47.0) == {("cart", 1.0, 1.0): 7}
    assert counts.points == 1


# --- the points cap -------------------------------------------------------------------------------

def test_a_full_table_merges_a_new_location_into_its_services_nearest_point() -> None:
    counts = LocationCounts(retention=60, max_points=3)
    counts.add([item("cart", 38.72, -9.14, 1), item("cart", 52.52, 13.40, 1), item("stock", 40.0, -3.0, 1)], at=0.0)
    added = counts.add([item("cart", 48.86, 2.35, 5)], at=1.0)  # Paris: nearer Berlin than Lisbon
    assert (added.items, added.merged) == (1, 1)
    assert totals(counts, None, 1.0) == {("cart", 38.72, -9.14): 1, ("cart", 52.52, 13.4): 6,
                                         ("stock", 40.0, -3.0): 1}
    assert counts.points == 3 and counts.merged == 1


def test_a_full_table_refuses_a_new_service_and_keeps_nothing_of_that_request() -> None:
    counts = LocationCounts(retention=60, max_points=2)
    counts.add([item("cart", 1, 1, 1)], at=0.0)
    with pytest.raises(TableFull, match="service 'stock'.*--max-points"):
        counts.add([item("cart", 1, 1, 5), item("cart", 9, 9, 5), item("stock", 2, 2, 1)], at=1.0)
    assert totals(counts, None, 1.0) == {("cart", 1.0, 1.0): 1}  # neither the count nor the free point was used
    assert counts.points == 1 and counts.refused == 3
    counts.add([item("stock", 2, 2, 1)], at=2.0)  # the free point is still free
    assert counts.points == 2


def test_a_request_can_merge_into_a_point_it_created_itself() -> None:
    counts = LocationCounts(retention=60, max_points=1)
    added = counts.add([item("cart", 10, 10, 1), item("cart", 11, 11, 2)], at=0.0)
    assert added.merged == 1
    assert totals(counts, None, 0.0) == {("cart", 10.0, 10.0): 3}


def test_merging_follows_the_points_as_pruning_replaces_them() -> None:
    counts = LocationCounts(retention=10, max_points=2, resolution=1)
    counts.add([item("cart", 38.72, -9.14, 1), item("cart", 52.52, 13.4, 1)], at=0.0)  # Lisbon, Berlin
    counts.add([item("cart", 40.42, -3.7, 1)], at=1.0)  # Madrid: into Lisbon
    counts.add([item("cart", 52.52, 13.4, 1)], at=8.0)  # Berlin stays; Lisbon's counts expire at 12
    counts.add([item("cart", -33.87, 151.21, 1)], at=12.0)  # Sydney takes Lisbon's freed point
    counts.add([item("cart", -37.81, 144.96, 5), item("cart", 41.9, 12.5, 2)], at=13.0)  # Melbourne, Rome
    assert totals(counts, None, 13.0) == {("cart", 52.52, 13.4): 3, ("cart", -33.87, 151.21): 6}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.floats(-90, 90), st.floats(-180, 180), st.integers(1, 9)),
                min_size=1, max_size=30), st.integers(2, 6))
def test_merging_never_loses_or_invents_a_count(posted, max_points: int) -> None:
    counts = LocationCounts(retention=60, max_points=max_points)
    kept = 0
    for service, latitude, longitude, count in posted:
        try:
            counts.add([item(service, latitude, longitude, count)], at=0.0)
            kept += count
        except TableFull:
            assert service not in counts.window(None, 0.0).services
    held = totals(counts, None, 0.0)
    assert sum(held.values()) == kept
    assert len(held) <= max_points


def test_freed_points_are_reused_after_pruning() -> None:
    counts = LocationCounts(retention=10, max_points=2, resolution=1)
    counts.add([item("cart", 1, 1, 1), item("stock", 1, 1, 1)], at=0.0)
    with pytest.raises(TableFull):
        counts.add([item("orders", 1, 1, 1)], at=5.0)
    counts.add([item("orders", 1, 1, 1), item("users", 2, 2, 1)], at=12.0)
    assert totals(counts, None, 12.0) == {("orders", 1.0, 1.0): 1, ("users", 2.0, 2.0): 1}


def test_the_memory_bound_does_not_depend_on_what_is_posted() -> None:
    counts = LocationCounts(retention=900, max_points=10_000, resolution=5)
    bound = counts.memory_bound
    assert bound == 10_000 * 181 * 8
    for second in range(0, 600, 3):
        counts.add([item(f"s{second % 7}", (second % 170) - 85, (second % 350) - 175, 1000)] * 20, at=float(second))
    assert counts.memory_bound == bound


# --- against a reference model ----------------------------------------------------------------------

posts = st.lists(
    st.tuples(st.floats(0, 5), st.lists(st.tuples(st.sampled_from("abc"), st.integers(-3, 3), st.integers(-3, 3),
                                                   st.integers(0, 50)), min_size=1, max_size=4)),
    max_size=40)


@settings(max_examples=150, deadline=None)
@given(posts=posts, interval=st.floats(0.5, 30), resolution=st.sampled_from([1.0, 2.5, 5.0]))
def test_windows_match_a_list_of_every_post(posts, interval: float, resolution: float) -> None:
    """Every window equals the sum over a plain list of all posts whose bucket overlaps it and is retained."""
    counts = LocationCounts(retention=30, max_points=1000, resolution=resolution, precision=0)
    log: list[tuple[float, str, float, float, int]] = []
    at = 0.0
    for step, items in posts:
        at += step
        counts.add([item(s, lat, lon, n) for s, lat, lon, n in items], at=at)
        log += [(at, s, float(lat), float(lon), n) for s, lat, lon, n in items]
        newest = math.floor(at / resolution)
        first = max(math.floor((at - interval) / resolution), newest - math.ceil(30 / resolution))
        expected: dict[tuple[str, float, float], int] = {}
        for ts, s, lat, lon, n in log:
            if first <= math.floor(ts / resolution) and n:
                expected[(s, lat, lon)] = expected.get((s, lat, lon), 0) + n
        assert totals(counts, interval, at) == expected


# --- reading posted bodies ----------------------------------------------------------------------------

def test_a_body_is_one_item_or_a_list() -> None:
    one = parse_items(b'{"service": "cart", "latitude": 38.7, "longitude": -9, "count": 3}')
    many = parse_items(json.dumps([{"service": "cart", "latitude": 1, "longitude": 2, "count": 1}] * 2).encode())
    assert one == [RequestCount("cart", 38.7, -9.0, 3)]
    assert many == [RequestCount("cart", 1.0, 2.0, 1)] * 2
    assert parse_items(b"[]") == []


def test_every_bad_field_is_reported_with_its_index() -> None:
    body = json.dumps([
        {"service": "cart", "latitude": 1, "longitude": 2, "count": 1},
        {"service": "", "latitude": 91, "longitude": "2", "count": -1},
        {"service": "cart", "latitude": 1, "count": 1.5, "colour": "red"},
        7,
    ]).encode()
    with pytest.raises(InvalidItems) as raised:
        parse_items(body)
    located = [(e.index, e.field) for e in raised.value.errors]
    assert located == [(1, "service"), (1, "latitude"), (1, "longitude"), (1, "count"),
                       (2, "longitude"), (2, "count"), (2, "colour"), (3, None)]
    messages = {(e.index, e.field): e.message for e in raised.value.errors}
    assert "-90 to 90" in messages[(1, "latitude")]
    assert "'longitude' is missing" in messages[(2, "longitude")]
    assert "unknown field 'colour'" in messages[(2, "colour")]
    assert raised.value.as_json()["error"].endswith("nothing of this request was kept")


@pytest.mark.parametrize("body, expected", [
    (b"not json", "not valid JSON"),
    (b"[1,", "not valid JSON"),
    (b'"cart"', "one item"),
    (b"42", "one item"),
    (b'{"service": "cart", "latitude": NaN, "longitude": 0, "count": 1}', "finite"),
    (b'{"service": "cart", "latitude": 1e999, "longitude": 0, "count": 1}', "finite"),
    (b'{"service": "cart", "latitude": 1, "longitude": 0, "count": true}', "whole number"),
    (b'{"service": "cart", "latitude": 1, "longitude": 0, "count": 2000000000}', "whole number"),
])
def test_bodies_that_are_not_items_are_refused_with_a_reason(body: bytes, expected: str) -> None:
    with pytest.raises(InvalidItems, match=expected):
        parse_items(body)


def test_too_many_items_in_one_body_are_refused() -> None:
    body = json.dumps([{"service": "cart", "latitude": 1, "longitude": 2, "count": 1}] * 10_001).encode()
    with pytest.raises(InvalidItems, match="at most 10000 items"):
        parse_items(body)


# --- the client's side: checking and merging monitors' windows ----------------------------------------

def window_body(interval: float, services: dict) -> dict:
    return {"interval": interval, "since": 0.0, "until": interval, "services": services}


def test_windows_of_several_monitors_add_up_per_service_and_location() -> None:
    east = window_body(60, {"cart": [{"latitude": 0, "longitude": 0, "count": 2},
                                     {"latitude": 10, "longitude": 20, "count": 1}]})
    west = window_body(60, {"cart": [{"latitude": 0, "longitude": 0, "count": 3}],
                            "stock": [{"latitude": -5, "longitude": 5, "count": 4}]})
    merged = merge([east, west])
    assert merged == {"cart": ((Coordinates(0, 0), 5.0), (Coordinates(10, 20), 1.0)),
                      "stock": ((Coordinates(-5, 5), 4.0),)}


@pytest.mark.parametrize("body, reason", [
    ([], "no 'services'"),
    ({"interval": 60}, "no 'services'"),
    (window_body(30, {}), "covers 30 s where 60 s were asked"),
    (window_body(60, {"cart": [{"latitude": 100, "longitude": 0, "count": 1}]}), "service 'cart'"),
    (window_body(60, {"cart": [{"latitude": 1, "longitude": 0, "count": "3"}]}), "service 'cart'"),
])
def test_an_answer_that_is_not_a_window_is_an_error(body, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        checked_window(body, 60)


def test_location_counts_are_what_a_window_lists() -> None:
    counts = LocationCounts(retention=60, max_points=10)
    counts.add([item("cart", 1, 2, 3)], at=0.0)
    assert counts.window(None, 0.0).services == {"cart": (LocationCount(1.0, 2.0, 3),)}

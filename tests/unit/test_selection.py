"""The three ways of choosing an instance, on hand-computed distances and seeded random choices."""

from __future__ import annotations

import random

import pytest

from usm.geo.sphere import Coordinates
from usm.registration.instance import Instance, InvalidInstance
from usm.registration.selection import (
    choose,
    closest,
    parse_choice,
    random_among_closest,
    random_within,
    rank,
    search_range,
)

PORTO = Coordinates(41.15, -8.61)
PLACES = {  # great-circle km from Porto, by the law of cosines (R = 6,371 km): another formula than the code's
    "lisbon": (Coordinates(38.72, -9.14), 274.0),
    "madrid": (Coordinates(40.42, -3.70), 421.0),
    "paris": (Coordinates(48.86, 2.35), 1213.0),
    "berlin": (Coordinates(52.52, 13.40), 2084.0),
    "tokyo": (Coordinates(35.68, 139.69), 10880.0),
}


def instances() -> dict[str, Instance]:
    return {name: Instance("orders", f"127.0.0.{i + 1}", 8080, place, name)
            for i, (name, (place, _)) in enumerate(PLACES.items())}


def names(ranked) -> list[str]:
    return [r.instance.region for r in ranked]


def test_rank_orders_by_great_circle_distance() -> None:
    ranked = rank(reversed(list(instances().values())), PORTO)
    assert names(ranked) == ["lisbon", "madrid", "paris", "berlin", "tokyo"]
    for r in ranked:
        assert r.distance_km == pytest.approx(PLACES[r.instance.region][1], rel=0.01)


def test_equal_distances_are_ordered_by_instance_id() -> None:
    a = Instance("orders", "127.0.0.1", 9001, PORTO)
    b = Instance("orders", "127.0.0.1", 9002, PORTO)
    expected = sorted([a, b], key=lambda i: i.instance_id)
    assert [r.instance for r in rank([b, a], PORTO)] == expected
    assert [r.instance for r in rank([a, b], PORTO)] == expected


def test_closest_is_the_nearest_and_none_without_instances() -> None:
    assert closest(rank(instances().values(), PORTO)).instance.region == "lisbon"
    assert closest(rank(instances().values(), Coordinates(35.0, 135.0))).instance.region == "tokyo"
    assert closest(()) is None


@pytest.mark.parametrize("seed", [1, 2, 3, 11, 42])
def test_random_among_the_three_closest_follows_the_seed(seed: int) -> None:
    ranked = rank(instances().values(), PORTO)
    candidates = ["lisbon", "madrid", "paris"]  # the three nearest, from the distances above
    expected = random.Random(seed).choice(candidates)
    assert random_among_closest(ranked, 3, random.Random(seed)).instance.region == expected


def test_random_among_closest_reaches_each_candidate_and_nothing_else() -> None:
    ranked = rank(instances().values(), PORTO)
    rng = random.Random(7)
    seen = {random_among_closest(ranked, 2, rng).instance.region for _ in range(200)}
    assert seen == {"lisbon", "madrid"}
    assert random_among_closest(ranked, 99, random.Random(0)).instance.region in PLACES
    assert random_among_closest((), 3, random.Random(0)) is None


@pytest.mark.parametrize(("range_km", "reach", "candidates"), [
    (100.0, 400.0, ["lisbon"]),  # 100 -> 200 -> 400: Lisbon (274) is in, Madrid (421) is not
    (250.0, 500.0, ["lisbon", "madrid"]),  # 250 -> 500
    (500.0, 500.0, ["lisbon", "madrid"]),  # no doubling needed
    (1300.0, 1300.0, ["lisbon", "madrid", "paris"]),
    (3000.0, 3000.0, ["lisbon", "madrid", "paris", "berlin"]),
])
@pytest.mark.parametrize("seed", [0, 5, 9])
def test_random_within_a_range_doubles_it_until_one_is_found(range_km: float, reach: float,
                                                             candidates: list[str], seed: int) -> None:
    ranked = rank(instances().values(), PORTO)
    assert search_range(ranked[0].distance_km, range_km) == reach
    expected = random.Random(seed).choice(candidates)
    assert random_within(ranked, range_km, random.Random(seed)).instance.region == expected


def test_random_within_from_far_away_finds_the_only_near_one() -> None:
    ranked = rank(instances().values(), Coordinates(35.0, 135.0))  # near Osaka: Tokyo ~400 km, Europe ~9,000 km
    assert {random_within(ranked, 1.0, random.Random(s)).instance.region for s in range(20)} == {"tokyo"}


def test_choose_dispatches_on_the_query() -> None:
    ranked = rank(instances().values(), PORTO)
    assert choose(ranked, None, None, random.Random(0)).instance.region == "lisbon"
    assert choose(ranked, 2, None, random.Random(4)).instance.region == random.Random(4).choice(["lisbon", "madrid"])
    assert choose(ranked, None, 250.0, random.Random(4)).instance.region == random.Random(4).choice(
        ["lisbon", "madrid"])


@pytest.mark.parametrize(("number", "range_km", "message"), [
    ("2", "100", "not both"),
    ("0", None, "number='0' is not valid"),
    ("two", None, "whole number"),
    (None, "-1", "range='-1' is not valid"),
    (None, "nan", "above 0"),
    (None, "inf", "above 0"),
])
def test_bad_query_parameters_say_what_is_allowed(number, range_km, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_choice(number, range_km)


def test_good_query_parameters_are_parsed() -> None:
    assert parse_choice(None, None) == (None, None)
    assert parse_choice("3", None) == (3, None)
    assert parse_choice(None, "12.5") == (None, 12.5)


def test_bad_arguments_are_refused() -> None:
    ranked = rank(instances().values(), PORTO)
    with pytest.raises(ValueError, match="at least 1"):
        random_among_closest(ranked, 0, random.Random(0))
    with pytest.raises(ValueError, match="above 0"):
        random_within(ranked, 0.0, random.Random(0))


@pytest.mark.parametrize(("service", "host", "port"), [
    ("Orders", "127.0.0.1", 80), ("_", "127.0.0.1", 80), ("a b", "127.0.0.1", 80),
    ("orders", "", 80), ("orders", "1.2.3.4;", 80), ("orders", "127.0.0.1", 0), ("orders", "127.0.0.1", 70000),
])
def test_invalid_instances_are_refused(service: str, host: str, port: int) -> None:
    with pytest.raises(InvalidInstance):
        Instance(service, host, port, PORTO)


def test_instance_id_is_stable_and_json_round_trips() -> None:
    one = Instance("orders", "10.0.0.7", 8080, PORTO, "europe")
    assert one.instance_id == Instance("orders", "10.0.0.7", 8080, Coordinates(0, 0)).instance_id
    assert one.instance_id != Instance("orders", "10.0.0.7", 8081, PORTO).instance_id
    assert Instance.from_json(one.to_json()) == one
    assert one.key == f"/usm/services/orders/{one.instance_id}"

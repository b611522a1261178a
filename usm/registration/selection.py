"""Which instance of a service a caller should use: the three algorithms the original documented.

1. :func:`closest`: the instance nearest to the caller.
2. :func:`random_among_closest`: a random one among the ``number`` nearest (spreads load over a few nearby
   instances instead of piling every caller of a place onto one).
3. :func:`random_within`: a random one among those within ``range_km`` of the caller, doubling the range until
   at least one is inside it (prefers "near enough" over "nearest", and still answers when none is that near).

The original implemented only the first; its routes for the other two returned the closest too (§7.2, §13 item
27). Distances are great-circle (``usm.geo.sphere``). Ties in distance are broken by instance id, so an order is
the same on every sidecar. Randomness comes from the ``random.Random`` the caller passes: seeded in tests,
seeded from the OS in the sidecar. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from usm.geo.sphere import Coordinates, distance_m
from usm.registration.instance import Instance


@dataclass(frozen=True)
class Ranked:
    """An instance and its distance from the caller."""

    instance: Instance
    distance_km: float


def rank(instances: Iterable[Instance], caller: Coordinates) -> tuple[Ranked, ...]:
    """The instances nearest first (ties by instance id)."""
    ranked = (Ranked(i, distance_m(caller, i.coordinates) / 1000.0) for i in instances)
    return tuple(sorted(ranked, key=lambda r: (r.distance_km, r.instance.instance_id)))


def closest(ranked: Sequence[Ranked]) -> Ranked | None:
    return ranked[0] if ranked else None


def random_among_closest(ranked: Sequence[Ranked], number: int, rng: random.Random) -> Ranked | None:
    """One of the ``number`` nearest, uniformly (all of them when there are fewer)."""
    if number < 1:
        raise ValueError(f"number must be at least 1, not {number!r}")
    return rng.choice(ranked[:number]) if ranked else None


def random_within(ranked: Sequence[Ranked], range_km: float, rng: random.Random) -> Ranked | None:
    """One of those within ``range_km``, uniformly; with none that near, the range is doubled until one is."""
    if not (math.isfinite(range_km) and range_km > 0):
        raise ValueError(f"range must be a number of kilometres above 0, not {range_km!r}")
    if not ranked:
        return None
    reach = search_range(ranked[0].distance_km, range_km)
    return rng.choice([r for r in ranked if r.distance_km <= reach])


def search_range(nearest_km: float, range_km: float) -> float:
    """``range_km`` doubled as often as needed to reach ``nearest_km`` (at most ~60 doublings on Earth)."""
    reach = range_km
    while reach < nearest_km:
        reach *= 2
    return reach


def parse_choice(number: str | None, range_km: str | None) -> tuple[int | None, float | None]:
    """The ``number`` and ``range`` query parameters, checked: at most one of them, ``number`` a whole number
    from 1, ``range`` kilometres above 0. :class:`ValueError` says what is wrong and what is allowed."""
    if number is not None and range_km is not None:
        raise ValueError("give either number=X (random among the X closest) or range=KM (random among those "
                         "within KM kilometres), not both")
    if number is not None:
        try:
            parsed = int(number)
        except ValueError:
            parsed = 0
        if parsed < 1:
            raise ValueError(f"number={number!r} is not valid: give a whole number of instances from 1")
        return parsed, None
    if range_km is not None:
        try:
            reach = float(range_km)
        except ValueError:
            reach = math.nan
        if not (math.isfinite(reach) and reach > 0):
            raise ValueError(f"range={range_km!r} is not valid: give a distance in kilometres above 0")
        return None, reach
    return None, None


def choose(ranked: Sequence[Ranked], number: int | None, range_km: float | None,
           rng: random.Random) -> Ranked | None:
    """The algorithm the query asked for: ``number`` → 2, ``range_km`` → 3, neither → 1."""
    if number is not None:
        return random_among_closest(ranked, number, rng)
    if range_km is not None:
        return random_within(ranked, range_km, rng)
    return closest(ranked)

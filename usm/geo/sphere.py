"""Points on the Earth's sphere: coordinates, great-circle distance, weighted spherical centroid.

Pure functions over a spherical Earth of radius 6 371 km (the original used the same radius). For many points at
once, ``usm.geo.arrays`` holds numpy variants that give the same results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0
"""Mean Earth radius in metres."""

DEGENERATE_CENTROID = 1e-9
"""A weighted centroid whose mean unit vector is shorter than this has no meaningful direction (see
``weighted_centroid``)."""


@dataclass(frozen=True)
class Coordinates:
    """A point on the Earth: latitude in [-90, 90] and longitude in [-180, 180], in decimal degrees."""

    latitude: float
    longitude: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latitude) and -90.0 <= self.latitude <= 90.0):
            raise ValueError(f"latitude must be a number in [-90, 90], not {self.latitude!r}")
        if not (math.isfinite(self.longitude) and -180.0 <= self.longitude <= 180.0):
            raise ValueError(f"longitude must be a number in [-180, 180], not {self.longitude!r}")


def distance_m(a: Coordinates, b: Coordinates) -> float:
    """Great-circle distance between two points, in metres, by the haversine formula.

    ``h = sin²(Δφ/2) + cos φ1 · cos φ2 · sin²(Δλ/2)`` and ``d = 2R · asin(√h)``.

    The original computed ``R · acos(sin φ1 sin φ2 + cos φ1 cos φ2 cos Δλ)`` (spherical law of cosines), whose
    argument can round to slightly more than 1 for near-identical points and so gives NaN, and which loses all
    precision below a few metres. Haversine works with the small differences directly and is exact near zero; ``h``
    is clamped to [0, 1] so rounding can never leave the domain of ``asin``.
    """
    phi1, phi2 = math.radians(a.latitude), math.radians(b.latitude)
    half_dphi = (phi2 - phi1) / 2.0
    half_dlambda = math.radians(b.longitude - a.longitude) / 2.0
    h = math.sin(half_dphi) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(half_dlambda) ** 2
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def to_unit_vector(point: Coordinates) -> tuple[float, float, float]:
    """The point as a 3-D unit vector (x towards (0°, 0°), y towards (0°, 90°E), z towards the North Pole)."""
    phi, lam = math.radians(point.latitude), math.radians(point.longitude)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


def from_vector(x: float, y: float, z: float) -> Coordinates:
    """The point a (non-zero, not necessarily unit) 3-D vector points at. Longitude comes from ``atan2`` and so is
    in (-180, 180]; at the poles it is whatever ``atan2`` gives for the rounding residue."""
    latitude = math.degrees(math.atan2(z, math.hypot(x, y)))
    longitude = math.degrees(math.atan2(y, x))
    return Coordinates(max(-90.0, min(90.0, latitude)), max(-180.0, min(180.0, longitude)))


def weighted_centroid(points: Iterable[tuple[Coordinates, float]]) -> Coordinates | None:
    """The weighted spherical centroid of ``(point, weight)`` pairs, or ``None`` when it is undefined.

    Each point becomes a 3-D unit vector; the centroid is the direction of the weighted mean vector. This is
    what the original did (§4.3), and unlike averaging latitudes and longitudes it is right across the
    antimeridian: 179°E and 179°W average to 180°, not 0°.

    Differences from the original: no point is skipped (the original dropped every point whose latitude or
    longitude was exactly 0, so the equator and the Greenwich meridian did not count); weights of 0 are ignored
    and negative weights are an error.

    ``None`` when there is nothing to average (no points, or all weights 0) or when the weights cancel out: the
    mean vector is shorter than ``DEGENERATE_CENTROID`` (e.g. two antipodal points of equal weight), so it has
    no direction. Callers fall back to another location (see ``usm.placement.migration_target``).
    """
    sx = sy = sz = total = 0.0
    for point, weight in points:
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weights must be finite and >= 0, not {weight!r}")
        if weight == 0:
            continue
        x, y, z = to_unit_vector(point)
        sx += x * weight
        sy += y * weight
        sz += z * weight
        total += weight
    if total == 0.0:
        return None
    if math.sqrt(sx * sx + sy * sy + sz * sz) / total < DEGENERATE_CENTROID:
        return None
    return from_vector(sx, sy, sz)


def centroid(points: Iterable[Coordinates]) -> Coordinates | None:
    """The spherical centroid of points of equal weight (``weighted_centroid`` with every weight 1)."""
    return weighted_centroid((point, 1.0) for point in points)


def longitude_difference(a: float, b: float) -> float:
    """The signed difference ``b - a`` between two longitudes, wrapped into [-180, 180)."""
    return (b - a + 180.0) % 360.0 - 180.0


__all__ = [
    "DEGENERATE_CENTROID",
    "EARTH_RADIUS_M",
    "Coordinates",
    "centroid",
    "distance_m",
    "from_vector",
    "longitude_difference",
    "to_unit_vector",
    "weighted_centroid",
]

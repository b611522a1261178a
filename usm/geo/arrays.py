"""Array (numpy) variants of ``usm.geo.sphere`` for thousands of points at once.

Same formulas and the same ``None`` rule for degenerate centroids; inputs are array-likes of degrees. Use these
where a cycle handles many request locations (e.g. the centroid of every service's callers in one pass); the
scalar functions in ``sphere`` stay the reference and the tests check that both agree.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from usm.geo.sphere import DEGENERATE_CENTROID, EARTH_RADIUS_M, Coordinates, from_vector


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Element-wise great-circle distances in metres (haversine, clamped), with numpy broadcasting.

    ``haversine_m(lats, lons, p.latitude, p.longitude)`` gives the distance of every point to ``p``;
    ``haversine_m(a_lat[:, None], a_lon[:, None], b_lat, b_lon)`` gives a distance matrix.
    """
    phi1 = np.radians(np.asarray(lat1, dtype=np.float64))
    phi2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dlambda = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    h = np.sin((phi2 - phi1) / 2.0) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlambda / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def distances_to(lat: ArrayLike, lon: ArrayLike, target: Coordinates) -> NDArray[np.float64]:
    """Distance in metres of every point ``(lat[i], lon[i])`` to ``target``."""
    return haversine_m(lat, lon, target.latitude, target.longitude)


def nearest_index(lat: ArrayLike, lon: ArrayLike, target: Coordinates) -> int | None:
    """Index of the point closest to ``target`` (the first one on a tie), or ``None`` for no points."""
    d = distances_to(lat, lon, target)
    if d.size == 0:
        return None
    return int(np.argmin(d))


def unit_vectors(lat: ArrayLike, lon: ArrayLike) -> NDArray[np.float64]:
    """The points as an ``(n, 3)`` array of unit vectors (same axes as ``sphere.to_unit_vector``)."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=-1)


def _checked_weights(weights: ArrayLike | None, n: int) -> NDArray[np.float64]:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"expected {n} weights, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    return w


def _centroid_of_sum(vector: NDArray[np.float64], total: float) -> Coordinates | None:
    if total == 0.0 or float(np.linalg.norm(vector)) / total < DEGENERATE_CENTROID:
        return None
    return from_vector(float(vector[0]), float(vector[1]), float(vector[2]))


def weighted_centroid_of(lat: ArrayLike, lon: ArrayLike, weights: ArrayLike | None = None) -> Coordinates | None:
    """The weighted spherical centroid of the points (weights default to 1); ``None`` as in
    ``sphere.weighted_centroid`` (no weight, or weights that cancel out)."""
    vectors = unit_vectors(lat, lon).reshape(-1, 3)
    w = _checked_weights(weights, vectors.shape[0])
    return _centroid_of_sum(w @ vectors, float(w.sum()))


def centroids_by_group(
    groups: Sequence[Hashable], lat: ArrayLike, lon: ArrayLike, weights: ArrayLike | None = None
) -> dict[Hashable, Coordinates | None]:
    """The weighted spherical centroid of the points of each group, in one pass.

    ``groups[i]`` names the group of point ``i`` (e.g. the service a request went to). Groups are returned in
    order of first appearance; a group whose weights are all 0 or cancel out maps to ``None``.
    """
    vectors = unit_vectors(lat, lon).reshape(-1, 3)
    n = vectors.shape[0]
    if len(groups) != n:
        raise ValueError(f"expected {n} group keys, got {len(groups)}")
    w = _checked_weights(weights, n)
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(g, len(index)) for g in groups), dtype=np.int64, count=n)
    k = len(index)
    sums = np.stack([np.bincount(codes, weights=w * vectors[:, axis], minlength=k) for axis in range(3)], axis=-1)
    totals = np.bincount(codes, weights=w, minlength=k)
    return {g: _centroid_of_sum(sums[i], float(totals[i])) for g, i in index.items()}


__all__ = [
    "centroids_by_group",
    "distances_to",
    "haversine_m",
    "nearest_index",
    "unit_vectors",
    "weighted_centroid_of",
]

"""Geography: distances, spherical centroids, regions; hand-computed values and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from usm.geo import (
    AREAS,
    CLOUD_REGIONS,
    EARTH_RADIUS_M,
    REPRESENTATIVE_CLOUD_REGION,
    USABLE_CLOUD_REGIONS,
    Coordinates,
    area,
    centroid,
    cloud_region,
    distance_m,
    longitude_difference,
    nearest_area,
    nearest_cloud_region,
    weighted_centroid,
)

LISBON = Coordinates(38.7223, -9.1393)
LONDON = Coordinates(51.5074, -0.1278)
PORTUGAL_EDGE = Coordinates(39.575097, -8.909794)  # the original's seeded edge host


def same_place(a: Coordinates, b: Coordinates, degrees: float) -> bool:
    """Latitudes and (wrapped) longitudes each within ``degrees``."""
    return abs(a.latitude - b.latitude) <= degrees and abs(longitude_difference(a.longitude, b.longitude)) <= degrees


# --- the spherical centroid: hand-computed values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        pytest.param([((10, 10), 1), ((30, 30), 1)], (20.28, 19.35), id="(10,10)+(30,30)-equal-weights"),
        pytest.param([((10, 10), 1), ((30, 30), 2)], (23.66, 22.78), id="(10,10)+(30,30)-weights-1:2"),
        pytest.param([((10, 10), 5), ((30, 30), 10)], (23.66, 22.78), id="weights-5:10-same-as-1:2"),
        pytest.param([((0, 10), 1), ((0, 30), 1)], (0.0, 20.0), id="equator-points-count"),
        pytest.param([((10, 0), 1), ((30, 0), 1)], (20.0, 0.0), id="greenwich-points-count"),
        pytest.param([((0, 0), 1), ((0, 90), 1)], (0.0, 45.0), id="a-quarter-of-the-equator"),
        pytest.param([((45, 20), 3)], (45.0, 20.0), id="one-point"),
        pytest.param([((45, 20), 3), ((-10, -50), 0)], (45.0, 20.0), id="zero-weight-ignored"),
    ],
)
def test_weighted_centroid_hand_computed(points, expected) -> None:
    result = weighted_centroid((Coordinates(lat, lon), w) for (lat, lon), w in points)
    assert result is not None
    assert result.latitude == pytest.approx(expected[0], abs=0.01)
    assert result.longitude == pytest.approx(expected[1], abs=0.01)


def test_original_expectations_were_planar_and_wrong() -> None:
    """The original's test expected (20, 20) and (25, 25): a flat average, not a spherical one."""
    a, b = Coordinates(10, 10), Coordinates(30, 30)
    assert not same_place(centroid([a, b]), Coordinates(20, 20), 0.1)
    assert not same_place(weighted_centroid([(a, 1), (b, 2)]), Coordinates(25, 25), 0.1)


@pytest.mark.parametrize(
    ("lons", "expected_lon"),
    [
        pytest.param((179.0, -179.0), 180.0, id="179E+179W-is-180-not-0"),
        pytest.param((170.0, -150.0), -170.0, id="170E+150W-is-170W"),
        pytest.param((-175.0, 165.0), 175.0, id="175W+165E-is-175E"),
        pytest.param((180.0, -180.0), 180.0, id="the-same-meridian-twice"),
    ],
)
def test_centroid_across_the_antimeridian(lons, expected_lon) -> None:
    result = centroid(Coordinates(0.0, lon) for lon in lons)
    assert result is not None
    assert result.latitude == pytest.approx(0.0, abs=1e-9)
    assert abs(longitude_difference(result.longitude, expected_lon)) < 1e-9


@pytest.mark.parametrize(
    "points",
    [
        pytest.param([], id="no-points"),
        pytest.param([((10, 10), 0), ((20, 20), 0)], id="all-weights-zero"),
        pytest.param([((0, 0), 1), ((0, 180), 1)], id="antipodes-cancel"),
        pytest.param([((90, 0), 2), ((-90, 0), 2)], id="the-poles-cancel"),
        pytest.param([((0, 0), 1), ((0, 120), 1), ((0, -120), 1)], id="three-spread-on-the-equator"),
    ],
)
def test_centroid_is_none_when_undefined(points) -> None:
    assert weighted_centroid((Coordinates(lat, lon), w) for (lat, lon), w in points) is None


@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf], ids=["negative", "nan", "infinite"])
def test_centroid_rejects_bad_weights(weight) -> None:
    with pytest.raises(ValueError, match="weights"):
        weighted_centroid([(Coordinates(1, 1), 1.0), (Coordinates(2, 2), weight)])


# --- distances -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        pytest.param(LISBON, LONDON, 1585.0, id="lisbon-london"),
        pytest.param(PORTUGAL_EDGE, cloud_region("eu-central-1").location, 1805.0, id="portugal-frankfurt"),
        pytest.param(PORTUGAL_EDGE, cloud_region("eu-west-3").location, 1366.0, id="portugal-paris"),
        pytest.param(PORTUGAL_EDGE, cloud_region("eu-west-2").location, 1491.0, id="portugal-london"),
        pytest.param(PORTUGAL_EDGE, cloud_region("eu-west-1").location, 1544.0, id="portugal-ireland"),
    ],
)
def test_distance_known_pairs(a, b, km) -> None:
    assert distance_m(a, b) / 1000 == pytest.approx(km, abs=1.0)


@pytest.mark.parametrize(
    ("a", "b", "metres"),
    [
        pytest.param((0, 0), (0, 90), math.pi / 2 * EARTH_RADIUS_M, id="quarter-equator"),
        pytest.param((0, 0), (0, 180), math.pi * EARTH_RADIUS_M, id="antipodes-on-equator"),
        pytest.param((90, 0), (-90, 0), math.pi * EARTH_RADIUS_M, id="pole-to-pole"),
        pytest.param((90, 0), (90, 123), 0.0, id="north-pole-any-longitude"),
        pytest.param((0, 179.5), (0, -179.5), math.radians(1) * EARTH_RADIUS_M, id="across-antimeridian"),
        pytest.param((38.7223, -9.1393), (38.7223, -9.1393), 0.0, id="same-point"),
    ],
)
def test_distance_hand_computed(a, b, metres) -> None:
    assert distance_m(Coordinates(*a), Coordinates(*b)) == pytest.approx(metres, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("offset_deg", [1e-13, 1e-10, 1e-7], ids=["1e-13deg", "1e-10deg", "1e-7deg"])
def test_distance_near_identical_points_is_finite_and_exact(offset_deg) -> None:
    """Haversine keeps distances far below a millimetre (the law of cosines rounds them to 0 or NaN)."""
    a = Coordinates(0.0, 10.0)
    b = Coordinates(0.0, 10.0 + offset_deg)
    d = distance_m(a, b)
    assert math.isfinite(d)
    assert d == pytest.approx(math.radians(b.longitude - a.longitude) * EARTH_RADIUS_M, rel=1e-6)


def test_original_law_of_cosines_gives_nan_where_haversine_does_not() -> None:
    """§4.1: two points 1e-9° of latitude apart at 74°N (about 0.1 mm)."""
    a, b = Coordinates(74.0, 5.0), Coordinates(74.0 + 1e-9, 5.0)
    phi1, phi2 = math.radians(a.latitude), math.radians(b.latitude)
    argument = math.sin(phi1) * math.sin(phi2) + math.cos(phi1) * math.cos(phi2) * math.cos(0.0)
    assert argument > 1.0  # so the original's acos(argument) is NaN (Java) or a ValueError (Python)
    assert distance_m(a, b) == pytest.approx(math.radians(b.latitude - a.latitude) * EARTH_RADIUS_M, rel=1e-6)


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(91, 0), (-90.5, 0), (0, 180.1), (0, -181), (math.nan, 0), (0, math.inf)],
    ids=["lat>90", "lat<-90", "lon>180", "lon<-180", "lat-nan", "lon-inf"],
)
def test_coordinates_are_validated(lat, lon) -> None:
    with pytest.raises(ValueError):
        Coordinates(lat, lon)


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [(179.0, -179.0, 2.0), (-179.0, 179.0, -2.0), (10.0, 30.0, 20.0), (0.0, 180.0, -180.0)],
    ids=["east-across", "west-across", "plain", "half-turn"],
)
def test_longitude_difference(a, b, diff) -> None:
    assert longitude_difference(a, b) == pytest.approx(diff)


# --- regions ---------------------------------------------------------------------------------------------------


def test_region_tables_are_consistent() -> None:
    codes = [r.code for r in CLOUD_REGIONS]
    assert len(codes) == len(set(codes)) == 23
    assert len(USABLE_CLOUD_REGIONS) == 17
    area_names = {a.name for a in AREAS}
    assert len(AREAS) == 7
    assert all(r.area in area_names for r in CLOUD_REGIONS)
    assert set(REPRESENTATIVE_CLOUD_REGION) == area_names
    assert all(cloud_region(code).usable for code in REPRESENTATIVE_CLOUD_REGION.values())
    assert area("europe").title == "Europe"


@pytest.mark.parametrize(
    ("point", "region"),
    [
        pytest.param(PORTUGAL_EDGE, "eu-west-3", id="portugal-paris-not-london"),
        pytest.param(Coordinates(-33.8688, 151.2093), "ap-southeast-2", id="sydney"),
        pytest.param(Coordinates(21.3069, -157.8583), "us-west-1", id="honolulu"),
        pytest.param(Coordinates(59.3293, 18.0686), "eu-central-1", id="stockholm-disabled-region-skipped"),
        pytest.param(Coordinates(-17.7134, 178.0650), "ap-southeast-2", id="fiji-across-antimeridian"),
    ],
)
def test_nearest_cloud_region(point, region) -> None:
    assert nearest_cloud_region(point).code == region
    assert nearest_cloud_region(point, CLOUD_REGIONS).code == region  # disabled ones are skipped


def test_nearest_cloud_region_of_nothing_is_none() -> None:
    assert nearest_cloud_region(LISBON, ()) is None
    assert nearest_cloud_region(LISBON, [cloud_region("eu-north-1")]) is None


@pytest.mark.parametrize(
    ("point", "name"),
    [(PORTUGAL_EDGE, "europe"), (Coordinates(-23.5, -46.6), "south_america"), (Coordinates(25.2, 55.3), "middle_east")],
    ids=["portugal", "sao-paulo", "dubai"],
)
def test_nearest_area(point, name) -> None:
    assert nearest_area(point).name == name


# --- properties ------------------------------------------------------------------------------------------------

latitudes = st.floats(-90, 90, allow_nan=False)
longitudes = st.floats(-180, 180, allow_nan=False)
points = st.builds(Coordinates, latitudes, longitudes)
weights = st.floats(0.001, 1000, allow_nan=False)


@given(points, weights)
def test_centroid_of_one_point_is_that_point(p: Coordinates, w: float) -> None:
    c = weighted_centroid([(p, w)])
    assert c is not None
    assert c.latitude == pytest.approx(p.latitude, abs=1e-9)
    if abs(p.latitude) < 89.999:  # at a pole every longitude is the same point
        assert abs(longitude_difference(c.longitude, p.longitude)) < 1e-6


@given(points, points)
def test_distance_is_symmetric_bounded_and_zero_on_itself(a: Coordinates, b: Coordinates) -> None:
    d = distance_m(a, b)
    assert d == distance_m(b, a)
    assert 0.0 <= d <= math.pi * EARTH_RADIUS_M
    assert distance_m(a, a) == 0.0


@given(points, points, points)
def test_distance_triangle_inequality(a: Coordinates, b: Coordinates, c: Coordinates) -> None:
    assert distance_m(a, c) <= distance_m(a, b) + distance_m(b, c) + 1e-6


# Points inside a 60°x60° box centred anywhere in longitude (so also across the antimeridian): every pair is
# less than 90° of arc apart, the case where the centroid provably lies in every point's "farthest-neighbour" cap.
boxed = st.tuples(
    st.lists(st.tuples(st.floats(-30, 30), st.floats(-30, 30), weights), min_size=1, max_size=8),
    st.floats(-180, 180),
)


def _shift(lon: float, by: float) -> float:
    return (lon + by + 180.0) % 360.0 - 180.0


@given(boxed)
def test_centroid_is_within_the_farthest_point_of_each_point(data) -> None:
    items, shift = data
    pts = [(Coordinates(lat, _shift(lon, shift)), w) for lat, lon, w in items]
    c = weighted_centroid(pts)
    assert c is not None
    for p, _ in pts:
        farthest = max(distance_m(p, q) for q, _ in pts)
        assert distance_m(c, p) <= farthest + 1e-3


@given(boxed, st.floats(0.01, 100), st.randoms())
def test_centroid_ignores_weight_scale_and_order(data, scale: float, rnd) -> None:
    items, shift = data
    pts = [(Coordinates(lat, _shift(lon, shift)), w) for lat, lon, w in items]
    shuffled = [(p, w * scale) for p, w in pts]
    rnd.shuffle(shuffled)
    a, b = weighted_centroid(pts), weighted_centroid(shuffled)
    assert a is not None and b is not None
    assert distance_m(a, b) < 1e-3


@given(points, points)
def test_centroid_of_two_points_is_equidistant(a: Coordinates, b: Coordinates) -> None:
    assume(distance_m(a, b) < 0.99 * math.pi * EARTH_RADIUS_M)  # not (nearly) antipodal
    c = centroid([a, b])
    assert c is not None
    assert distance_m(c, a) == pytest.approx(distance_m(c, b), abs=1e-3)
    assert distance_m(c, a) == pytest.approx(distance_m(a, b) / 2, abs=1e-3)


# --- numpy variants --------------------------------------------------------------------------------------------

np = pytest.importorskip("numpy", reason="usm.geo.arrays needs numpy")
arrays = pytest.importorskip("usm.geo.arrays")


def test_arrays_distances_match_scalar() -> None:
    lats, lons = [LISBON.latitude, 0.0, 90.0], [LISBON.longitude, 179.5, 0.0]
    got = arrays.distances_to(lats, lons, LONDON)
    want = [distance_m(Coordinates(la, lo), LONDON) for la, lo in zip(lats, lons, strict=True)]
    assert got == pytest.approx(want, rel=1e-12)
    matrix = arrays.haversine_m(np.array(lats)[:, None], np.array(lons)[:, None], lats, lons)
    assert matrix.shape == (3, 3)
    assert np.allclose(np.diag(matrix), 0.0)
    assert np.allclose(matrix, matrix.T)


def test_arrays_centroid_hand_computed() -> None:
    c = arrays.weighted_centroid_of([10, 30], [10, 30], [1, 2])
    assert c.latitude == pytest.approx(23.66, abs=0.01)
    assert c.longitude == pytest.approx(22.78, abs=0.01)
    assert arrays.weighted_centroid_of([], []) is None
    assert arrays.weighted_centroid_of([0, 0], [0, 180]) is None
    with pytest.raises(ValueError, match="weights"):
        arrays.weighted_centroid_of([1, 2], [1, 2], [1, -1])


def test_arrays_centroids_by_group() -> None:
    result = arrays.centroids_by_group(
        ["cart", "shop", "cart", "shop", "gone"],
        [10, 0, 30, 0, 5],
        [10, 179, 30, -179, 5],
        [1, 1, 2, 1, 0],
    )
    assert list(result) == ["cart", "shop", "gone"]
    assert same_place(result["cart"], Coordinates(23.66, 22.78), 0.01)
    assert same_place(result["shop"], Coordinates(0.0, 180.0), 1e-9)
    assert result["gone"] is None


def test_arrays_nearest_index() -> None:
    assert arrays.nearest_index([51.5, 38.7, 38.7], [-0.1, -9.1, -9.1], LISBON) == 1  # first on a tie
    assert arrays.nearest_index([], [], LISBON) is None


@given(st.lists(st.tuples(latitudes, longitudes, weights), min_size=1, max_size=20))
def test_arrays_agree_with_scalar(items) -> None:
    lats, lons, ws = (list(x) for x in zip(*items, strict=True))
    pts = [(Coordinates(la, lo), w) for la, lo, w in items]
    scalar = weighted_centroid(pts)
    vector = arrays.weighted_centroid_of(lats, lons, ws)
    if scalar is None or vector is None:
        return  # near-cancelling inputs may fall on either side of the threshold by rounding
    assert distance_m(scalar, vector) < 1e-2
    got = arrays.distances_to(lats, lons, pts[0][0])
    assert got == pytest.approx([distance_m(p, pts[0][0]) for p, _ in pts], rel=1e-9, abs=1e-6)

"""Where things are: the seven world areas and the cloud (AWS EC2) regions, with their coordinates.

Two kinds of "region" exist, as in the original:

* an **area** (``europe``, ``north_america``, ...) groups hosts for per-region support components (load balancer,
  registration server, ...). A host's area is the one whose centroid is closest to it;
* a **cloud region** (``eu-west-2``, ...) is where a cloud host runs. A new cloud host near a point is launched in
  the usable cloud region closest to that point.

The coordinates are the ones the original used (a city inside each AWS region; a rough centroid of each area).
Facts, not code: the table is data and may be edited or replaced (a simulator may pass its own tuple of regions to
the placement functions).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from usm.geo.sphere import Coordinates, distance_m


@dataclass(frozen=True)
class Area:
    """A world area: its name (used as a host's ``region``), a title for people, and a representative point."""

    name: str
    title: str
    location: Coordinates


@dataclass(frozen=True)
class CloudRegion:
    """A cloud provider region: its code, a title, the area it belongs to, a point inside it, and whether new
    hosts may be launched there (the original kept six regions defined but disabled)."""

    code: str
    title: str
    area: str
    location: Coordinates
    usable: bool = True


AREAS: tuple[Area, ...] = (
    Area("europe", "Europe", Coordinates(49.540486, 9.881931)),
    Area("north_america", "North America", Coordinates(39.787092, -99.754244)),
    Area("south_america", "South America", Coordinates(-14.864205, -55.902655)),
    Area("africa", "Africa", Coordinates(4.256283, 23.308534)),
    Area("middle_east", "Middle East", Coordinates(31.971059, 46.572714)),
    Area("asia", "Asia", Coordinates(35.360601, 95.728129)),
    Area("oceania", "Oceania", Coordinates(-13.611172, 130.755130)),
)

CLOUD_REGIONS: tuple[CloudRegion, ...] = (
    CloudRegion("us-east-1", "US East (N. Virginia)", "north_america", Coordinates(38.946728, -77.443386)),
    CloudRegion("us-east-2", "US East (Ohio)", "north_america", Coordinates(39.958587, -82.997058)),
    CloudRegion("us-west-1", "US West (N. California)", "north_america", Coordinates(37.758891, -122.443318)),
    CloudRegion("us-west-2", "US West (Oregon)", "north_america", Coordinates(45.841904, -119.296774)),
    CloudRegion("af-south-1", "Africa (Cape Town)", "africa", Coordinates(-33.953923, 18.566379)),
    CloudRegion("ap-south-1", "Asia Pacific (Mumbai)", "asia", Coordinates(19.085863, 72.873766)),
    CloudRegion("ap-northeast-2", "Asia Pacific (Seoul)", "asia", Coordinates(37.562049, 127.007511)),
    CloudRegion("ap-southeast-1", "Asia Pacific (Singapore)", "asia", Coordinates(1.353010, 103.869377)),
    CloudRegion("ap-southeast-2", "Asia Pacific (Sydney)", "oceania", Coordinates(-33.831767, 151.007401)),
    CloudRegion("ap-northeast-1", "Asia Pacific (Tokyo)", "asia", Coordinates(35.688572, 139.618912)),
    CloudRegion("ca-central-1", "Canada (Central)", "north_america", Coordinates(45.508968, -73.616289)),
    CloudRegion("eu-central-1", "Europe (Frankfurt)", "europe", Coordinates(50.110991, 8.632203)),
    CloudRegion("eu-west-1", "Europe (Ireland)", "europe", Coordinates(53.346174, -6.272156)),
    CloudRegion("eu-west-2", "Europe (London)", "europe", Coordinates(51.516689, -0.134100)),
    CloudRegion("eu-west-3", "Europe (Paris)", "europe", Coordinates(48.879382, 2.341615)),
    CloudRegion("me-south-1", "Middle East (Bahrain)", "middle_east", Coordinates(26.233356, 50.585524)),
    CloudRegion("sa-east-1", "South America (Sao Paulo)", "south_america", Coordinates(-23.576129, -46.614103)),
    CloudRegion("us-gov-west-1", "AWS GovCloud (US-West)", "north_america", Coordinates(46.412832, -117.046891), False),
    CloudRegion("us-gov-east-1", "AWS GovCloud (US-East)", "north_america", Coordinates(40.058766, -83.175497), False),
    CloudRegion("ap-east-1", "Asia Pacific (Hong Kong)", "asia", Coordinates(22.321326, 114.172109), False),
    CloudRegion("ap-northeast-3", "Asia Pacific (Osaka)", "asia", Coordinates(34.675407, 135.496091), False),
    CloudRegion("eu-south-1", "Europe (Milan)", "europe", Coordinates(45.469902, 9.179905), False),
    CloudRegion("eu-north-1", "Europe (Stockholm)", "europe", Coordinates(59.329544, 18.066653), False),
)

USABLE_CLOUD_REGIONS: tuple[CloudRegion, ...] = tuple(r for r in CLOUD_REGIONS if r.usable)
"""The 17 regions where the original launched hosts."""

REPRESENTATIVE_CLOUD_REGION: dict[str, str] = {
    "europe": "eu-central-1",
    "north_america": "us-east-1",
    "south_america": "sa-east-1",
    "africa": "af-south-1",
    "middle_east": "me-south-1",
    "asia": "ap-south-1",
    "oceania": "ap-southeast-2",
}
"""Area -> the cloud region that hosts the area's shared components (the original's elastic-IP hosts)."""

_AREA_BY_NAME = {a.name: a for a in AREAS}
_CLOUD_REGION_BY_CODE = {r.code: r for r in CLOUD_REGIONS}


def area(name: str) -> Area:
    """The area called ``name``; ``KeyError`` if there is none."""
    return _AREA_BY_NAME[name]


def cloud_region(code: str) -> CloudRegion:
    """The cloud region with this code; ``KeyError`` if there is none."""
    return _CLOUD_REGION_BY_CODE[code]


def nearest_area(point: Coordinates, areas: Iterable[Area] = AREAS) -> Area:
    """The area whose centroid is closest to ``point`` (ties: by name). ``ValueError`` if ``areas`` is empty."""
    return min(areas, key=lambda a: (distance_m(point, a.location), a.name))


def nearest_cloud_region(
    point: Coordinates, regions: Iterable[CloudRegion] = USABLE_CLOUD_REGIONS
) -> CloudRegion | None:
    """The usable cloud region closest to ``point`` (ties: by code), or ``None`` when none is usable.

    Disabled regions in ``regions`` are skipped, so the full ``CLOUD_REGIONS`` may be passed.
    """
    usable = [r for r in regions if r.usable]
    if not usable:
        return None
    return min(usable, key=lambda r: (distance_m(point, r.location), r.code))


__all__ = [
    "AREAS",
    "CLOUD_REGIONS",
    "REPRESENTATIVE_CLOUD_REGION",
    "USABLE_CLOUD_REGIONS",
    "Area",
    "CloudRegion",
    "area",
    "cloud_region",
    "nearest_area",
    "nearest_cloud_region",
]

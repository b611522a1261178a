"""Geography, pure: coordinates, great-circle distances, spherical centroids, world areas and cloud regions.

``sphere`` and ``regions`` use only the standard library; ``arrays`` (numpy) holds vectorised variants and is not
imported here, so importing ``usm.geo`` never needs numpy.
"""

from usm.geo.regions import (
    AREAS,
    CLOUD_REGIONS,
    REPRESENTATIVE_CLOUD_REGION,
    USABLE_CLOUD_REGIONS,
    Area,
    CloudRegion,
    area,
    cloud_region,
    nearest_area,
    nearest_cloud_region,
)
from usm.geo.sphere import (
    EARTH_RADIUS_M,
    Coordinates,
    centroid,
    distance_m,
    longitude_difference,
    weighted_centroid,
)

__all__ = [
    "AREAS",
    "CLOUD_REGIONS",
    "EARTH_RADIUS_M",
    "REPRESENTATIVE_CLOUD_REGION",
    "USABLE_CLOUD_REGIONS",
    "Area",
    "CloudRegion",
    "Coordinates",
    "area",
    "centroid",
    "cloud_region",
    "distance_m",
    "longitude_difference",
    "nearest_area",
    "nearest_cloud_region",
    "weighted_centroid",
]

"""The site file's optional ``cloud:`` and ``swarm:`` sections: where the inventory is kept in sync from.

``cloud:`` names how usm reaches its EC2 hosts (the regions it syncs and launches in, the image tag, the
instance type, key pair and security groups) and how often it reads them (default every 45 s, as the
original). Credentials are not among its keys: boto3's own chain supplies them (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, or an instance role), and ``AWS_ENDPOINT_URL_EC2`` may stand for
``endpoint_url``. ``swarm:`` names the site host that runs usm's swarm and how often its nodes are read
(default every 10 s).

Checked here, after the schema, with each problem at its place in the file: every region is an AWS region usm
knows, every cloud host's ``cloud_region`` is among the synced regions (else its state could never be read), the
swarm manager is a host of the site, and intervals are positive durations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from usm.engine.expressions import parse_duration
from usm.engine.yamldoc import PathItem
from usm.geo.regions import CLOUD_REGIONS, cloud_region
from usm.placement.model import HostKind

CLOUD_SYNC_INTERVAL = 45.0  # seconds (original §5.4)
SWARM_SYNC_INTERVAL = 10.0  # seconds (original §5.3)


@dataclass(frozen=True)
class SiteCloud:
    """How usm reaches its cloud hosts on EC2 (``usm.actuators.ec2.Ec2Settings`` is made from it)."""

    regions: tuple[str, ...]
    endpoint_url: str | None = None  # a local EC2 API such as moto_server; None: AWS (or AWS_ENDPOINT_URL_EC2)
    image_tag: str = "usm-image=docker-host"
    instance_type: str = "t2.micro"
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    sync_interval: float = CLOUD_SYNC_INTERVAL


@dataclass(frozen=True)
class SiteSwarm:
    """usm's Docker swarm: the site host that manages it, and how often its nodes are read."""

    manager: str
    sync_interval: float = SWARM_SYNC_INTERVAL


Report = Callable[[list[PathItem], str, str], None]


def interval(data: Any, where: list[PathItem], default: float, problem: Report) -> float:
    """A positive duration (``45s``, ``1m``, or a number of seconds) at ``where``, else ``default``."""
    if where[-1] not in data:
        return default
    raw = data[where[-1]]
    try:
        seconds = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            else parse_duration(str(raw))
    except ValueError as error:
        problem(where, str(error), "write a number and one unit: 10s, 45s, 2m")
        return default
    if not seconds > 0:
        problem(where, f"the sync interval must be longer than 0 s, not {raw}", "write a duration such as 45s")
        return default
    return seconds


def read_cloud(data: Any, problem: Report) -> SiteCloud | None:
    """The ``cloud:`` section of a schema-valid site document (``None`` when absent)."""
    section = data.get("cloud")
    if section is None:
        return None
    regions: list[str] = []
    for j, code in enumerate(section["regions"]):
        try:
            cloud_region(str(code))
        except KeyError:
            problem(["cloud", "regions", j], f"'{code}' is not an AWS region usm knows",
                    "use one of: " + ", ".join(r.code for r in CLOUD_REGIONS))
            continue
        if str(code) not in regions:
            regions.append(str(code))
    for i, host in enumerate(data["hosts"]):
        where = str(host.get("cloud_region", ""))
        if host.get("kind") == HostKind.CLOUD.value and where and regions and where not in regions:
            problem(["hosts", i, "cloud_region"],
                    f"cloud host '{host['name']}' is in {where}, which cloud.regions does not list, so usm could "
                    "never read its state", f"add {where} to cloud.regions")
    return SiteCloud(
        regions=tuple(regions),
        endpoint_url=str(section["endpoint_url"]) if "endpoint_url" in section else None,
        image_tag=str(section.get("image_tag", SiteCloud.image_tag)),
        instance_type=str(section.get("instance_type", SiteCloud.instance_type)),
        key_name=str(section["key_name"]) if "key_name" in section else None,
        security_groups=tuple(str(g) for g in section.get("security_groups") or ()),
        sync_interval=interval(section, ["cloud", "sync_interval"], CLOUD_SYNC_INTERVAL, problem),
    )


def read_swarm(data: Any, problem: Report) -> SiteSwarm | None:
    """The ``swarm:`` section of a schema-valid site document (``None`` when absent)."""
    section = data.get("swarm")
    if section is None:
        return None
    names = list(dict.fromkeys(str(h["name"]) for h in data["hosts"]))
    manager = str(section["manager"])
    if manager not in names:
        problem(["swarm", "manager"], f"the swarm manager '{manager}' is not a host of this site",
                "name the host whose engine manages usm's swarm: " + ", ".join(names))
    return SiteSwarm(manager, interval(section, ["swarm", "sync_interval"], SWARM_SYNC_INTERVAL, problem))


__all__ = ["CLOUD_SYNC_INTERVAL", "SWARM_SYNC_INTERVAL", "SiteCloud", "SiteSwarm", "read_cloud", "read_swarm"]

"""Which host receives a container: capacity check and the closest capable host.

Fixes against the original (§4.2, §13 items 12-14):

* capacity counts cpu, ram **and disk**, and the containers already starting on a host (bug 12);
* cpu is compared in cores against cores (the original divided a host-wide percentage by the core count);
* when no running host fits, a stopped host is **started** as part of the plan (bug 13), a stopped edge host is
  considered whether or not a stopped cloud host exists (bug 13), and a stopped cloud host only counts if it is in
  the cloud region a new host would be launched in, so a stopped instance on another continent is never woken to
  serve nearby callers (bug 14);
* ties are broken by name, so the same input always gives the same host.
"""

from __future__ import annotations

from usm.geo.regions import CloudRegion
from usm.geo.sphere import Coordinates, distance_m
from usm.placement.model import (
    DEFAULT_OPTIONS,
    NOTHING,
    RECEIVING_STATES,
    Cluster,
    HostCapacity,
    HostKind,
    HostState,
    PlacementOptions,
    Resources,
)
from usm.placement.plans import HostChoice, LaunchCloudHost, NoPlan, StartHost, UseHost

_TOLERANCE = 1e-12


def _within(amount: float, capacity: float, percent: float) -> bool:
    """``amount <= capacity · percent / 100``, without a division and with a relative tolerance of 1e-12 so that
    a load exactly at the limit is not refused by floating-point rounding."""
    limit = capacity * percent
    return amount * 100.0 <= limit + _TOLERANCE * max(1.0, abs(limit))


def has_room(total: Resources, load: Resources, demand: Resources, options: PlacementOptions) -> bool:
    """Whether ``demand`` fits on a host of capacity ``total`` already carrying ``load``: after adding it, cpu,
    ram and disk each stay at or below the allowed share of the capacity (being exactly at the limit fits)."""
    return (  # load + demand, field by field (without building a Resources on this hot path)
        _within(load.cpu + demand.cpu, total.cpu, options.max_cpu_percent)
        and _within(load.ram + demand.ram, total.ram, options.max_ram_percent)
        and _within(load.disk + demand.disk, total.disk, options.max_disk_percent)
    )


def fits(cluster: Cluster, host: str, demand: Resources, options: PlacementOptions = DEFAULT_OPTIONS) -> bool:
    """Whether ``demand`` fits on the named host, counting the containers already starting there."""
    return has_room(cluster.host(host).total, cluster.load(host), demand, options)


def closest_capable_host(
    cluster: Cluster,
    demand: Resources,
    near: Coordinates,
    options: PlacementOptions = DEFAULT_OPTIONS,
    exclude: frozenset[str] = frozenset(),
) -> UseHost | None:
    """The running (or already starting) host closest to ``near`` that fits ``demand``, not in ``exclude``;
    ties by name. ``None`` when none fits."""

    def capable(h: HostCapacity) -> bool:
        return h.state in RECEIVING_STATES and h.name not in exclude and fits(cluster, h.name, demand, options)

    best = cluster.closest_host(near, capable)
    return UseHost(best[0].name, best[1]) if best is not None else None


def _closest_startable_host(
    cluster: Cluster,
    demand: Resources,
    near: Coordinates,
    launch_region: CloudRegion | None,
    options: PlacementOptions,
    exclude: frozenset[str],
) -> StartHost | None:
    """The stopped host closest to ``near`` that would fit ``demand``, not in ``exclude``: an edge host, or a
    cloud host in ``launch_region`` (any cloud host when it is ``None``); ties by name."""
    startable = (
        (distance_m(h.location, near), h.name)
        for h in cluster.hosts_in(HostState.STOPPED)
        if h.name not in exclude
        and (h.kind is HostKind.EDGE or launch_region is None or h.cloud_region == launch_region.code)
        and fits(cluster, h.name, demand, options)
    )
    best = min(startable, default=None)
    return StartHost(best[1], best[0]) if best is not None else None


def choose_host(
    cluster: Cluster,
    demand: Resources,
    near: Coordinates,
    options: PlacementOptions = DEFAULT_OPTIONS,
    exclude: frozenset[str] = frozenset(),
) -> HostChoice | NoPlan:
    """Where a container needing ``demand`` should go to serve callers around ``near``.

    In order of preference (each tier only if the previous has nothing):

    1. the closest running host that fits (``UseHost``);
    2. the closest stopped host that would fit (``StartHost``): any stopped edge host, or a stopped cloud host in
       the cloud region of tier 3 (any stopped cloud host when no cloud region is configured);
    3. a new cloud host in the usable cloud region closest to ``near`` (``LaunchCloudHost``), if it would fit
       (``options.new_host_capacity``).

    With ``options.closer_host_factor`` set, a tier is also passed over when a later one is much closer (see
    ``PlacementOptions``). Hosts in ``exclude`` are never chosen. ``NoPlan`` when nothing qualifies.
    """
    running = closest_capable_host(cluster, demand, near, options, exclude)
    factor = options.closer_host_factor
    if running is not None and factor is None:
        return running  # no later tier can win: skip them
    tiers: list[HostChoice] = [] if running is None else [running]

    launch_region = cluster.launch_region(near)
    if options.can_start_hosts:
        stopped = _closest_startable_host(cluster, demand, near, launch_region, options, exclude)
        if stopped is not None:
            tiers.append(stopped)

    new_host_fits = options.new_host_capacity is None or has_room(options.new_host_capacity, NOTHING, demand, options)
    if options.can_launch_hosts and launch_region is not None and new_host_fits:
        tiers.append(LaunchCloudHost(launch_region.code, distance_m(launch_region.location, near)))

    if not tiers:
        return NoPlan(
            f"no host for cpu={demand.cpu:g} ram={demand.ram:g} disk={demand.disk:g}: no running host has room"
            + ("" if options.can_start_hosts else "; starting hosts is not allowed")
            + ("" if options.can_launch_hosts else "; launching hosts is not allowed")
        )
    if factor is None:
        return tiers[0]
    for i, tier in enumerate(tiers[:-1]):
        if tier.distance_m <= factor * min(later.distance_m for later in tiers[i + 1 :]):
            return tier
    return tiers[-1]


__all__ = ["choose_host", "closest_capable_host", "fits", "has_room"]

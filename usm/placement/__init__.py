"""Placement, pure: turns a decision into a plan (which host receives a replica, which container leaves an
overworked host, how an underworked host is drained, when a host must be started or launched, how a failed
container is restored, when per-region support components start and stop).

No I/O and no clock: the control loop passes the cluster as data and the time as a number, and executes the plans
it gets back (``usm.placement.plans``).
"""

from usm.placement.hosts import choose_host, closest_capable_host, fits, has_room
from usm.placement.model import (
    DEFAULT_OPTIONS,
    NOTHING,
    Cluster,
    ContainerDemand,
    HostCapacity,
    HostKind,
    HostState,
    PlacementOptions,
    Resources,
    ServiceSpec,
)
from usm.placement.plans import (
    DrainHost,
    HostChoice,
    LaunchCloudHost,
    MoveContainer,
    NoPlan,
    PlaceReplica,
    RestoreContainer,
    StartHost,
    StopContainer,
    StopHost,
    TerminateHost,
    UseHost,
)
from usm.placement.rebalance import footprint, overwork_order, plan_overwork, plan_underwork
from usm.placement.recovery import GiveUpRecovery, RecoveryTracker, plan_recovery
from usm.placement.replicas import (
    choose_replica_to_stop,
    migration_target,
    plan_migration,
    plan_minimum_replicas,
    plan_replica,
    plan_stop,
    replica_location,
)
from usm.placement.support import (
    ArmSupportStop,
    CancelSupportStop,
    RegionSupport,
    StartSupport,
    StopSupport,
    SupportState,
    containers_by_region,
    step_support,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "NOTHING",
    "ArmSupportStop",
    "CancelSupportStop",
    "Cluster",
    "ContainerDemand",
    "DrainHost",
    "GiveUpRecovery",
    "HostCapacity",
    "HostChoice",
    "HostKind",
    "HostState",
    "LaunchCloudHost",
    "MoveContainer",
    "NoPlan",
    "PlaceReplica",
    "PlacementOptions",
    "RecoveryTracker",
    "RegionSupport",
    "Resources",
    "RestoreContainer",
    "ServiceSpec",
    "StartHost",
    "StartSupport",
    "StopContainer",
    "StopHost",
    "StopSupport",
    "SupportState",
    "TerminateHost",
    "UseHost",
    "choose_host",
    "choose_replica_to_stop",
    "closest_capable_host",
    "containers_by_region",
    "fits",
    "footprint",
    "has_room",
    "migration_target",
    "overwork_order",
    "plan_migration",
    "plan_minimum_replicas",
    "plan_overwork",
    "plan_recovery",
    "plan_replica",
    "plan_stop",
    "plan_underwork",
    "replica_location",
    "step_support",
]

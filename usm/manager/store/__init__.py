"""The inventory store: what exists (regions, hosts, nodes, workers), what is deployed (apps, services, event
predictions, containers, per-region components) and an index of the decision log, in SQLite or PostgreSQL.

``database`` opens a store and migrates it (Alembic, ``usm db upgrade``); ``crud`` is the service layer the hub
and the CLI share; ``views`` gives the engine's ``Inventory`` and placement's ``Cluster`` of what is stored;
``accounts`` holds the hub's users, API tokens and audit log; ``federation`` the workers, region leases, host
assignments and stop requests through which a master and its workers coordinate; ``configs`` the policy and site
versions the master hands them; ``revisions`` a counter per table that every committed change moves on, for
readers that cache.
"""

from usm.manager.store.accounts import ApiToken, AuditEntry, User
from usm.manager.store.base import Base
from usm.manager.store.catalog import (
    App,
    AppService,
    EventPrediction,
    Service,
    ServiceKind,
)
from usm.manager.store.configs import ConfigKind, ConfigVersion
from usm.manager.store.containers import (
    Container,
    ContainerState,
    LoadBalancer,
    RegistrationServer,
)
from usm.manager.store.decisions import DecisionRecord, index_log, read_record
from usm.manager.store.errors import (
    Duplicate,
    InUse,
    Invalid,
    NotFound,
    NotMigrated,
    StoreError,
)
from usm.manager.store.federation import (
    HostAssignment,
    RegionLease,
    StopRequest,
    Worker,
    WorkerState,
    heartbeat,
    silent_workers,
)
from usm.manager.store.hosts import (
    CloudHost,
    EdgeHost,
    ElasticIp,
    Host,
    Node,
    NodeAvailability,
    NodeRole,
    NodeState,
    Region,
)
from usm.manager.store.revisions import REVISIONS

__all__ = [
    "REVISIONS", "ApiToken", "App", "AppService", "AuditEntry", "Base", "CloudHost", "ConfigKind", "ConfigVersion",
    "Container", "ContainerState", "DecisionRecord", "Duplicate", "EdgeHost", "ElasticIp", "EventPrediction", "Host",
    "HostAssignment", "InUse", "Invalid", "LoadBalancer", "Node", "NodeAvailability", "NodeRole", "NodeState",
    "NotFound", "NotMigrated", "Region", "RegionLease", "RegistrationServer", "Service", "ServiceKind", "StopRequest",
    "StoreError", "User", "Worker", "WorkerState", "heartbeat", "index_log", "read_record", "silent_workers",
]

"""Starting and stopping a master or a worker: each sequence is an ordered plan of steps (pure data), carried out
by :func:`carry_out` over three ports: the store, the containers and the cloud.

What the original did (original-system §9), as it applies here:

* master start: migrate the store; forget stop requests an earlier shutdown left (they would stop the new
  workers); publish the site file and the policy for the workers; give every region a lease, held by the master
  until a worker takes it; allocate one elastic IP per cloud region. The control loop and the supervision start
  after the plan.
* master stop: ask every worker to stop and wait for them (a worker that does not stop in time is taken over:
  its region comes back to the master, whose steps then cover it); stop every usm-managed container of every
  region; terminate every usm-managed cloud instance; release the elastic IPs; leave a clean store (no worker,
  lease, assignment or stop request left; the inventory, policy and site versions stay).
* worker start: check the store's schema; register (which is its first heartbeat). The master hands the region
  over at its next supervision.
* worker stop: stop the managed containers of its region and terminate its region's cloud hosts (only while it
  still holds the region), then unregister, which hands the region back to the master. Elastic IPs are the
  master's: it allocated them.

A dry run keeps the store's steps only: it never started anything on a host, and stops nothing either. As in the
original, a step that fails is reported and the next one runs: a shutdown that cannot reach one host
still stops the others and still cleans the store. The control loop stops before a shutdown plan runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

log = logging.getLogger("usm.federation")
_P = TypeVar("_P")


class Role(str, Enum):
    MASTER = "master"
    WORKER = "worker"


@dataclass(frozen=True)
class Deployment:
    """Who runs a sequence: its role and name, its own region, the regions it answers for (the master: every
    region of the site; a worker: its own), and the cloud regions usm may launch hosts in (none: no cloud)."""

    role: Role
    name: str
    region: str
    regions: tuple[str, ...]
    cloud_regions: tuple[str, ...] = ()
    await_workers: float = 60.0  # how long a stopping master waits for its workers, in seconds
    dry_run: bool = False  # touches no host or cloud resource: only the store's steps


# --- steps --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrateStore:
    """Bring the store's schema to this code's revision (master)."""


@dataclass(frozen=True)
class RequireStore:
    """Refuse a store whose schema is not this code's revision (worker: the master migrates)."""


@dataclass(frozen=True)
class ClearStopRequests:
    """Forget the stop requests an earlier shutdown left."""


@dataclass(frozen=True)
class PublishSite:
    """Store the site file as the workers' newest version."""


@dataclass(frozen=True)
class PublishPolicy:
    """Store the policy given at start as the newest version (if one was given)."""


@dataclass(frozen=True)
class PrepareRegions:
    """Give each region a lease (held by the master) if it has none."""

    regions: tuple[str, ...]


@dataclass(frozen=True)
class RegisterWorker:
    name: str
    region: str


@dataclass(frozen=True)
class AllocateElasticIps:
    """One usm elastic IP per cloud region."""

    cloud_regions: tuple[str, ...]


@dataclass(frozen=True)
class RequestWorkersStop:
    """Ask every worker to stop."""


@dataclass(frozen=True)
class AwaitWorkers:
    """Wait until every worker has unregistered, at most ``timeout`` seconds."""

    timeout: float


@dataclass(frozen=True)
class TakeOverRegions:
    """Take back every region a worker still holds."""

    regions: tuple[str, ...]


@dataclass(frozen=True)
class StopContainers:
    """Stop the usm-managed containers on the hosts of these regions (those the runner holds)."""

    regions: tuple[str, ...]


@dataclass(frozen=True)
class TerminateCloudHosts:
    """Terminate the usm-managed cloud instances: every one in ``cloud_regions`` (master), or the cloud hosts of
    ``regions`` (worker)."""

    regions: tuple[str, ...]
    cloud_regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseElasticIps:
    cloud_regions: tuple[str, ...]


@dataclass(frozen=True)
class UnregisterWorker:
    """Remove the worker's registration: its region goes back to the master."""

    name: str


@dataclass(frozen=True)
class ClearRuntime:
    """Leave a clean store: no worker, lease, assignment or stop request."""


Step = (MigrateStore | RequireStore | ClearStopRequests | PublishSite | PublishPolicy | PrepareRegions
        | RegisterWorker | AllocateElasticIps | RequestWorkersStop | AwaitWorkers | TakeOverRegions | StopContainers
        | TerminateCloudHosts | ReleaseElasticIps | UnregisterWorker | ClearRuntime)


def startup_plan(deployment: Deployment) -> tuple[Step, ...]:
    d = deployment
    if d.role is Role.WORKER:
        return RequireStore(), RegisterWorker(d.name, d.region)
    steps: list[Step] = [MigrateStore(), ClearStopRequests(), PublishSite(), PublishPolicy(),
                         PrepareRegions(d.regions)]
    if d.cloud_regions:
        steps.append(AllocateElasticIps(d.cloud_regions))
    return _touching_nothing(steps) if d.dry_run else tuple(steps)


def shutdown_plan(deployment: Deployment) -> tuple[Step, ...]:
    d = deployment
    if d.role is Role.WORKER:
        steps: list[Step] = [StopContainers((d.region,))]
        if d.cloud_regions:
            steps.append(TerminateCloudHosts((d.region,)))
        steps.append(UnregisterWorker(d.name))
    else:
        steps = [RequestWorkersStop(), AwaitWorkers(d.await_workers), TakeOverRegions(d.regions),
                 StopContainers(d.regions)]
        if d.cloud_regions:
            steps += [TerminateCloudHosts(d.regions, d.cloud_regions), ReleaseElasticIps(d.cloud_regions)]
        steps.append(ClearRuntime())
    return _touching_nothing(steps) if d.dry_run else tuple(steps)


_WORLD_STEPS = (StopContainers, AllocateElasticIps, TerminateCloudHosts, ReleaseElasticIps)


def _touching_nothing(steps: list[Step]) -> tuple[Step, ...]:
    """A dry run's sequence: the store's steps only (a dry run never touched a host, and stops none)."""
    return tuple(s for s in steps if not isinstance(s, _WORLD_STEPS))


# --- carrying a plan out ------------------------------------------------------------------------------------------


class StorePort(Protocol):
    """The federation's side of the store; each method returns what it did, in words, and raises on failure."""

    def migrate(self) -> str: ...
    def require_current(self) -> str: ...
    def clear_stop_requests(self) -> str: ...
    def publish_site(self) -> str: ...
    def publish_policy(self) -> str: ...
    def prepare_regions(self, regions: Sequence[str]) -> str: ...
    def register_worker(self, name: str, region: str) -> str: ...
    def request_workers_stop(self) -> str: ...
    def await_workers(self, timeout: float) -> str: ...
    def take_over(self, regions: Sequence[str]) -> str: ...
    def unregister_worker(self, name: str) -> str: ...
    def clear_runtime(self) -> str: ...


class ContainersPort(Protocol):
    def stop_managed(self, regions: Sequence[str]) -> str:
        """Stop every usm-managed container on the hosts of ``regions`` the runner holds."""


class CloudPort(Protocol):
    def allocate_elastic_ips(self, cloud_regions: Sequence[str]) -> str: ...
    def terminate_managed(self, regions: Sequence[str], cloud_regions: Sequence[str]) -> str: ...
    def release_elastic_ips(self, cloud_regions: Sequence[str]) -> str: ...


@dataclass(frozen=True)
class StepResult:
    step: Step
    ok: bool
    detail: str


def carry_out(plan: Sequence[Step], store: StorePort, containers: ContainersPort | None = None,
              cloud: CloudPort | None = None) -> tuple[StepResult, ...]:
    """Run ``plan`` in order; a step that raises is reported as failed and the next one runs."""
    results = []
    for step in plan:
        try:
            detail = _call(step, store, containers, cloud)()
            results.append(StepResult(step, True, detail))
            log.info("%s: %s", type(step).__name__, detail)
        except Exception as error:  # noqa: BLE001 - every failure is reported; the sequence goes on (§9)
            results.append(StepResult(step, False, f"{type(error).__name__}: {error}"))
            log.error("%s failed (the sequence goes on): %s", type(step).__name__, error)
    return tuple(results)


def _call(step: Step, store: StorePort, containers: ContainersPort | None,
          cloud: CloudPort | None) -> Callable[[], str]:
    match step:
        case MigrateStore():
            return store.migrate
        case RequireStore():
            return store.require_current
        case ClearStopRequests():
            return store.clear_stop_requests
        case PublishSite():
            return store.publish_site
        case PublishPolicy():
            return store.publish_policy
        case PrepareRegions(regions):
            return lambda: store.prepare_regions(regions)
        case RegisterWorker(name, region):
            return lambda: store.register_worker(name, region)
        case RequestWorkersStop():
            return store.request_workers_stop
        case AwaitWorkers(timeout):
            return lambda: store.await_workers(timeout)
        case TakeOverRegions(regions):
            return lambda: store.take_over(regions)
        case UnregisterWorker(name):
            return lambda: store.unregister_worker(name)
        case ClearRuntime():
            return store.clear_runtime
        case StopContainers(regions):
            return lambda: _required(containers, "containers").stop_managed(regions)
        case AllocateElasticIps(clouds):
            return lambda: _required(cloud, "cloud").allocate_elastic_ips(clouds)
        case TerminateCloudHosts(regions, clouds):
            return lambda: _required(cloud, "cloud").terminate_managed(regions, clouds)
        case ReleaseElasticIps(clouds):
            return lambda: _required(cloud, "cloud").release_elastic_ips(clouds)
    raise TypeError(f"not a sequence step: {step!r}")


def _required(port: _P | None, what: str) -> _P:
    if port is None:
        raise RuntimeError(f"no {what} port was given for this step")
    return port


__all__ = ["AllocateElasticIps", "AwaitWorkers", "ClearRuntime", "ClearStopRequests", "CloudPort", "ContainersPort",
           "Deployment", "MigrateStore", "PrepareRegions", "PublishPolicy", "PublishSite", "RegisterWorker",
           "ReleaseElasticIps", "RequestWorkersStop", "RequireStore", "Role", "Step", "StepResult",
           "StopContainers", "StorePort", "TakeOverRegions", "TerminateCloudHosts", "UnregisterWorker",
           "carry_out", "shutdown_plan", "startup_plan"]

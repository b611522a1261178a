"""The start and stop sequences of a master and a worker, as plans (original-system §9). Carrying them out against
a real store, Docker engine and EC2 API is tested in tests/integration/test_federation_sequences.py."""

from __future__ import annotations

from usm.manager.federation.sequences import (
    AllocateElasticIps,
    AwaitWorkers,
    ClearRuntime,
    ClearStopRequests,
    Deployment,
    MigrateStore,
    PrepareRegions,
    PublishPolicy,
    PublishSite,
    RegisterWorker,
    ReleaseElasticIps,
    RequestWorkersStop,
    RequireStore,
    Role,
    StopContainers,
    TakeOverRegions,
    TerminateCloudHosts,
    UnregisterWorker,
    shutdown_plan,
    startup_plan,
)

REGIONS = ("europe", "north_america")
MASTER = Deployment(Role.MASTER, "master", "europe", REGIONS, ("eu-west-3", "us-east-1"), await_workers=30.0)
WORKER = Deployment(Role.WORKER, "w-na", "north_america", ("north_america",), ("us-east-1",))


def test_the_master_prepares_the_store_before_anything_runs():
    assert startup_plan(MASTER) == (
        MigrateStore(), ClearStopRequests(), PublishSite(), PublishPolicy(), PrepareRegions(REGIONS),
        AllocateElasticIps(("eu-west-3", "us-east-1")))


def test_without_cloud_no_elastic_ip_is_allocated_or_released_and_no_instance_terminated():
    local = Deployment(Role.MASTER, "master", "europe", REGIONS)
    assert not any(isinstance(s, AllocateElasticIps) for s in startup_plan(local))
    assert shutdown_plan(local) == (RequestWorkersStop(), AwaitWorkers(60.0), TakeOverRegions(REGIONS),
                                    StopContainers(REGIONS), ClearRuntime())


def test_the_master_stops_its_workers_first_and_leaves_a_clean_store_last():
    assert shutdown_plan(MASTER) == (
        RequestWorkersStop(), AwaitWorkers(30.0), TakeOverRegions(REGIONS), StopContainers(REGIONS),
        TerminateCloudHosts(REGIONS, ("eu-west-3", "us-east-1")), ReleaseElasticIps(("eu-west-3", "us-east-1")),
        ClearRuntime())


def test_a_worker_registers_and_on_stop_clears_its_region_then_gives_it_back():
    assert startup_plan(WORKER) == (RequireStore(), RegisterWorker("w-na", "north_america"))
    assert shutdown_plan(WORKER) == (StopContainers(("north_america",)), TerminateCloudHosts(("north_america",)),
                                     UnregisterWorker("w-na"))


def test_a_dry_run_keeps_to_the_store():
    dry = Deployment(Role.MASTER, "master", "europe", REGIONS, ("eu-west-3",), dry_run=True)
    assert startup_plan(dry) == (MigrateStore(), ClearStopRequests(), PublishSite(), PublishPolicy(),
                                 PrepareRegions(REGIONS))
    assert shutdown_plan(dry) == (RequestWorkersStop(), AwaitWorkers(60.0), TakeOverRegions(REGIONS), ClearRuntime())
    worker = Deployment(Role.WORKER, "w-na", "north_america", ("north_america",), ("us-east-1",), dry_run=True)
    assert shutdown_plan(worker) == (UnregisterWorker("w-na"),)

"""Live mode kept in sync with a real swarm and a real EC2 API, and routing host steps to EC2.

Two pseudo-hosts (a private dockerd behind its own sshd each): ``lisbon``, an edge host that manages a one-node
swarm, and ``dublin-1``, a cloud host: an instance usm launched in moto_server's eu-west-1, whose Docker endpoint
is the second pseudo-host. ``usm run``'s wiring (``live_runner``) runs with its background syncs on virtual time,
so "after the next EC2 sync" is exactly at 45 s, without sleeping. What usm did is checked behind its back: each
engine through its own socket, EC2 through a plain boto3 client.

The tests run in file order on one world.
"""

from __future__ import annotations

import contextlib
import json
import logging
from contextlib import ExitStack
from dataclasses import dataclass

import boto3
import docker.errors
import pytest

from tests.services import free_port, need
from tests.services.dockerd import busybox_image, remove_tree
from tests.services.dockerhost import DockerHost, client_key, short_tempdir
from tests.services.moto import MotoServer, fake_aws_credentials, moto_server_binary
from tests.virtualtime import VirtualTime
from usm.actuators.cloudsteps import CloudHostSteps
from usm.actuators.containersteps import ContainerSteps
from usm.actuators.docker import LABEL_MANAGED, LABEL_NAME, ContainerSettings, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts
from usm.actuators.ec2 import Ec2, Ec2Settings
from usm.actuators.swarm import Swarm
from usm.manager.runner import LiveRunner
from usm.manager.site import Site, load_site
from usm.manager.wiring import DataFiles, SyncTime, container_specs, live_runner
from usm.placement.model import HostState
from usm.placement.plans import (
    DrainHost,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    StartHost,
    StopHost,
    TerminateHost,
    UseHost,
)
from usm.placement.replicas import plan_minimum_replicas

REGION = "eu-west-1"
IMAGE = "usm-test/busybox:1"
SERVE = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
POLICY = {
    "00-settings.yaml": "settings:\n  period: 15s\n",
    "services.yaml": "rules:\n  - name: never\n    scope: service\n    target: \"*\"\n    when: cpu > 1000\n"
                     "    then: replicate\n",
}
SYNCS = 2  # threads: the EC2 sync and the swarm sync


class SteppedClock:
    """The Docker actuator's clock for direct calls: a migration's delay before stopping passes at once."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class World:
    engines: dict[str, DockerHost]
    moto: MotoServer
    site: Site
    access: DockerAccess
    time: VirtualTime
    runner: LiveRunner
    swarm: Swarm
    data: DataFiles

    def ec2(self):
        return boto3.client("ec2", region_name=REGION, endpoint_url=self.moto.url)

    def instance(self, host: str) -> dict:
        """The live (not terminated) instance tagged usm-host=host, as EC2 itself describes it."""
        found = [i for r in self.ec2().describe_instances(
            Filters=[{"Name": "tag:usm-host", "Values": [host]}])["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]
        assert len(found) <= 1, found
        return found[0] if found else {}

    def containers(self, host: str) -> dict[str, str]:
        """usm's containers on a host, as its engine reports them: usm name -> status."""
        client = self.engines[host].engine()
        try:
            return {c.labels[LABEL_NAME]: c.status for c in client.containers.list(all=True)
                    if c.labels.get(LABEL_MANAGED) == "true"}
        finally:
            client.close()

    def cycle(self, at: float):
        """Move the virtual time to ``at`` (the syncs that fall due run), then run one control-loop cycle."""
        self.time.advance(at - self.time.clock(), SYNCS)
        report = self.runner.cycle(at)
        assert report is not None
        return report


def site_text(engines: dict[str, DockerHost], moto: MotoServer) -> str:
    return f"""\
hosts:
  - {{name: lisbon, kind: edge, latitude: 38.72, longitude: -9.14, docker: "{engines['lisbon'].url}", cpu: 16,
     ram: 8Gi, disk: 100Gi}}
  - {{name: dublin-1, kind: cloud, cloud_region: {REGION}, latitude: 53.35, longitude: -6.26,
     docker: "{engines['dublin-1'].url}", cpu: 16, ram: 8Gi, disk: 100Gi}}
apps:
  - {{name: shop, services: [front]}}
services:
  - {{name: front, image: "{IMAGE}", command: {json.dumps(SERVE)}, memory: 64Mi, cpu: 0.1, min_replicas: 2}}
cloud:
  regions: [{REGION}]
  endpoint_url: {moto.url}
swarm:
  manager: lisbon
"""


@pytest.fixture(scope="module")
def world():
    for binary in ("dockerd", "docker", "sshd", "busybox"):
        need(binary)
    moto_server_binary()
    workdir = short_tempdir("usm-sync-")
    identity, public = client_key(workdir)
    engines = {name: DockerHost(workdir / name[:1], public) for name in ("lisbon", "dublin-1")}
    moto = MotoServer(workdir / "moto")
    with ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        stack.callback(remove_tree, workdir)
        fake_aws_credentials(patch, workdir)
        for process in (moto, *engines.values()):
            stack.callback(process.stop)
        from usm.lab.process import side_by_side

        side_by_side([moto.start, *(e.start for e in engines.values())])
        side_by_side([moto.warm_up, *(lambda e=e: busybox_image(e.engine()) for e in engines.values())])
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text("".join(f"{e.known_hosts_line}\n" for e in engines.values()))
        access = DockerAccess(known_hosts=known_hosts, identity=identity)

        # usm launched dublin-1 earlier: an instance of the tagged image, named after the host
        raw = boto3.client("ec2", region_name=REGION, endpoint_url=moto.url)
        image = raw.register_image(Name="docker-host", RootDeviceName="/dev/sda1")["ImageId"]
        raw.create_tags(Resources=[image], Tags=[{"Key": "usm-image", "Value": "docker-host"}])
        Ec2(Ec2Settings(regions=(REGION,), endpoint_url=moto.url)).launch(REGION, host="dublin-1")

        clients = stack.enter_context(DockerHosts({n: e.url for n, e in engines.items()}, access))
        swarm = Swarm(clients, "lisbon")
        swarm.init("127.0.0.1", port=free_port())
        stack.callback(lambda: [_leave_swarm(e) for e in engines.values()])

        path = workdir / "site.yaml"
        path.write_text(site_text(engines, moto))
        site = load_site(path, access)
        policy = workdir / "policy"
        policy.mkdir()
        for name, text in POLICY.items():
            (policy / name).write_text(text)

        # one replica of front runs on lisbon already; the site wants two
        containers = DockerContainers(clients, ContainerSettings(pull=False))
        containers.launch("lisbon", container_specs(site)["front"], "front-first")
        swarm.set_availability("lisbon", "drain")  # before usm starts: its first swarm sync sees it

        time = VirtualTime()
        data = DataFiles(workdir / "data")
        runner = live_runner(site, policy, data, dry_run=False, stack=stack, access=access, clock=time.clock,
                             sync_time=SyncTime(time.clock, time.wait))
        stack.callback(time.close)  # runs before the syncs are stopped (last in, first out)
        time.settle(SYNCS)
        yield World(engines, moto, site, access, time, runner, swarm, data)


def _leave_swarm(engine: DockerHost) -> None:
    client = engine.engine()
    with contextlib.suppress(docker.errors.APIError):  # not in a swarm
        client.swarm.leave(force=True)  # an engine in a swarm takes seconds longer to shut down
    client.close()


def planned(report, step_type: type) -> list:
    return [(item.step, outcome) for item, outcome in zip(report.planned, report.outcomes)
            if isinstance(item.step, step_type)]


def test_a_drained_swarm_nodes_host_receives_no_placement(world: World):
    report = world.cycle(0.0)
    cluster = report.observation.cluster
    assert cluster.host("lisbon").state is HostState.STOPPING  # its node is drained
    assert cluster.host("dublin-1").state is HostState.RUNNING  # its instance runs
    [(step, outcome)] = planned(report, PlaceReplica)
    assert (step.service, step.on) == ("front", UseHost("dublin-1", step.on.distance_m))
    assert outcome.ok, outcome.detail
    assert list(world.containers("lisbon")) == ["front-first"]  # lisbon received nothing
    assert list(world.containers("dublin-1").values()) == ["running"]
    # the drain made the difference: with lisbon receiving, the replica would have gone there, by its twin
    undrained = cluster.with_host_state("lisbon", HostState.RUNNING)
    [would] = plan_minimum_replicas(undrained, report.observation.services)
    assert would.on.host == "lisbon"
    assert report.observation.problems == ()


def test_a_cloud_host_stopped_behind_usms_back_is_stopped_after_the_next_ec2_sync(world: World):
    instance_id = world.instance("dublin-1")["InstanceId"]
    world.ec2().stop_instances(InstanceIds=[instance_id])
    assert world.instance("dublin-1")["State"]["Name"] == "stopped"

    report = world.cycle(15.0)  # the swarm synced at 10 s; EC2 not since 0 s
    assert report.observation.cluster.host("dublin-1").state is HostState.RUNNING
    assert {c.host for c in report.observation.inventory.containers} == {"lisbon", "dublin-1"}

    report = world.cycle(45.0)  # EC2 synced at 45 s
    cluster = report.observation.cluster
    assert cluster.host("dublin-1").state is HostState.STOPPED
    assert {c.host for c in report.observation.inventory.containers} == {"lisbon"}  # a stopped host runs nothing
    assert "dublin-1" in {h.name for h in report.observation.inventory.hosts}  # stopped, not gone
    # front is one replica short and lisbon still drained: the plan starts dublin-1 on EC2, then places on it
    [(step, outcome)] = planned(report, PlaceReplica)
    assert step.on == StartHost("dublin-1", step.on.distance_m)
    assert outcome.ok, outcome.detail
    assert outcome.detail.startswith(f"cloud host dublin-1 ({instance_id}) in {REGION} is running; front-")
    assert world.instance("dublin-1")["State"]["Name"] == "running"
    assert len(world.containers("dublin-1")) == 2


def test_a_stop_host_step_for_a_cloud_host_stops_its_instance_in_ec2_through_the_journal(world: World):
    report = world.cycle(50.0)  # EC2 is next due at 90 s: what the start step at 45 s did is seen at once
    assert report.observation.cluster.host("dublin-1").state is HostState.RUNNING
    outcome = world.runner.loop.actuator.execute(StopHost("dublin-1"), 51.0)
    assert outcome.ok, outcome.detail
    assert world.instance("dublin-1")["State"]["Name"] == "stopped"
    journal = [json.loads(line) for line in world.data.journal.read_text().splitlines()]
    assert [(e["state"], e["step"]["type"]) for e in journal if e["step"]["type"] == "StopHost"] == [
        ("begun", "StopHost"), ("done", "StopHost")]

    world.swarm.set_availability("lisbon", "active")
    report = world.cycle(60.0)  # the swarm synced at 60 s; EC2 is next due at 90 s
    cluster = report.observation.cluster
    assert cluster.host("dublin-1").state is HostState.STOPPED  # the step's own result, not a sync's
    assert cluster.host("lisbon").state is HostState.RUNNING
    [(step, outcome)] = planned(report, PlaceReplica)  # front's replacement goes to lisbon, now active
    assert step.on.host == "lisbon" and outcome.ok, outcome.detail


def test_an_edge_host_is_neither_stopped_nor_terminated_on_ec2(world: World):
    before = world.containers("lisbon")
    refused = {
        StopHost("lisbon"): "lisbon is an edge host: only cloud hosts are stopped here (on EC2)",
        TerminateHost("lisbon"): "lisbon is an edge host: only cloud hosts are terminated here (on EC2)",
        StopHost("tokyo"): "tokyo is not a host of the site: only cloud hosts are stopped here (on EC2)",
    }
    for step, detail in refused.items():
        outcome = world.runner.loop.actuator.execute(step, 61.0)
        assert (outcome.ok, outcome.detail, outcome.transient) == (False, detail, False)
    assert world.containers("lisbon") == before


def test_a_launched_host_is_pending_until_the_site_gives_it_a_docker_endpoint(world: World, caplog):
    actuator = world.runner.loop.actuator
    step = PlaceReplica("front", world.site.hosts[1].location, LaunchCloudHost(REGION, 0.0))
    outcome = actuator.execute(step, 62.0)
    assert not outcome.ok and not outcome.transient
    launched = world.instance(f"{REGION}-host-1")
    assert outcome.detail.startswith(f"pending: cloud host {REGION}-host-1 ({launched['InstanceId']}) was launched "
                                     f"in {REGION}")
    assert "the front container is not placed" in outcome.detail and "Add it under hosts" in outcome.detail
    again = actuator.execute(step, 75.0)  # the next cycle's launch finds the same instance
    assert not again.ok and launched["InstanceId"] in again.detail
    assert len(world.ec2().describe_instances()["Reservations"]) == 2  # dublin-1 and the launched one

    with caplog.at_level(logging.WARNING, logger="usm.run"):
        report = world.cycle(90.0)  # EC2 synced at 90 s
    assert {h.name for h in report.observation.cluster.hosts} == {"lisbon", "dublin-1"}  # reported, not invented
    assert [r.getMessage() for r in caplog.records if launched["InstanceId"] in r.getMessage()] == [
        (f"EC2 instance {launched['InstanceId']} ({REGION}-host-1, running) in {REGION} is usm's but not a host of "
        f"the site: usm leaves it alone; add it under hosts (kind: cloud, cloud_region: {REGION}, with its Docker "
        "endpoint) for usm to place containers on it, or terminate it")]


def test_a_drained_cloud_host_is_terminated_after_its_containers_moved(world: World):
    moving = sorted(world.containers("dublin-1"))
    assert moving
    with DockerHosts({n: e.url for n, e in world.engines.items()}, world.access) as clients:
        containers = DockerContainers(clients, ContainerSettings(pull=False), SteppedClock())
        steps = CloudHostSteps(Ec2(Ec2Settings(regions=(REGION,), endpoint_url=world.moto.url)),
                               ContainerSteps(containers, container_specs(world.site)),
                               {h.name: h.kind for h in world.site.hosts})
        lisbon = world.site.hosts[0].location
        drain = DrainHost("dublin-1", tuple(MoveContainer(name, "front", "dublin-1", lisbon, UseHost("lisbon", 0.0))
                                            for name in moving), TerminateHost("dublin-1"))
        outcome = steps.execute(drain, 91.0)
    assert outcome.ok, outcome.detail
    assert world.containers("dublin-1") == {}
    assert len(world.containers("lisbon")) == 2 + len(moving)
    assert world.instance("dublin-1") == {}  # terminated
    assert outcome.detail.endswith(f"in {REGION} is terminated")

    report = world.cycle(135.0)  # after the next EC2 sync a terminated host is gone from the cluster
    assert "dublin-1" not in {h.name for h in report.observation.cluster.hosts}
    assert "dublin-1" not in {h.name for h in report.observation.inventory.hosts}


def test_a_drain_whose_move_fails_leaves_the_host_running(world: World):
    before = world.containers("lisbon")
    drain = DrainHost("lisbon", (MoveContainer("no-such", "front", "lisbon", world.site.hosts[0].location,
                                               UseHost("lisbon", 0.0)),), StopHost("lisbon"))
    outcome = world.runner.loop.actuator.execute(drain, 136.0)  # the live run's route for a DrainHost
    assert not outcome.ok
    assert outcome.detail.startswith("the drain of lisbon stopped at move 1 of 1 (no-such): no container no-such")
    assert outcome.detail.endswith("lisbon is left running")
    assert world.containers("lisbon") == before


def test_a_failed_sync_is_a_problem_of_the_next_cycle_and_keeps_the_last_snapshot(world: World):
    _leave_swarm(world.engines["lisbon"])  # the manager host's engine no longer manages a swarm
    report = world.cycle(150.0)  # the swarm syncs at 140 s and 150 s failed
    failed = [p.reason for p in report.observation.problems if p.subject == "swarm"]
    assert len(failed) == 2 and all("This node is not a swarm manager" in reason for reason in failed), failed
    assert report.observation.cluster.host("lisbon").state is HostState.RUNNING  # as last seen: active
    errors = world.runner.metrics.registry.get_sample_value("usm_collector_errors_total", {"source": "swarm"})
    assert errors == 2
    later = world.cycle(165.0)  # each failure is reported once: only the sync at 160 s is new
    assert len([p for p in later.observation.problems if p.subject == "swarm"]) == 1

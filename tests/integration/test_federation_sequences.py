"""The start and stop sequences carried out against real things: a PostgreSQL store, a private Docker engine and
an EC2 API (moto_server). usm's own containers, instances and elastic IPs go; what usm did not start stays; a step
that fails (a host whose engine is gone) is reported and the sequence goes on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from tests.services import need
from tests.services.dockerd import Dockerd, busybox_image, remove_tree
from tests.services.dockerhost import short_tempdir
from tests.services.moto import MotoServer, fake_aws_credentials
from tests.services.postgres import Postgres
from usm.actuators.docker import ContainerSettings, ContainerSpec, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts
from usm.actuators.ec2 import Ec2, Ec2Settings
from usm.manager.federation.coordinator import Coordinator
from usm.manager.federation.live import regions_of
from usm.manager.federation.ports import CloudSteps, RegionContainers, StoreSteps
from usm.manager.federation.sequences import Deployment, Role, carry_out, shutdown_plan, startup_plan
from usm.manager.site import load_site
from usm.manager.store import federation as fed
from usm.manager.store.database import open_engine, sessions

CLOUD = ("eu-west-1", "ap-southeast-2")
SERVE = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    with Postgres(tmp_path_factory.mktemp("postgres")).start() as server, pytest.MonkeyPatch.context() as env:
        env.setenv("PGPASSWORD", server.password)
        yield server


@pytest.fixture(scope="module")
def dockerd():
    need("dockerd")
    workdir = short_tempdir("usm-seq-")
    engine = Dockerd(workdir / "d").start()
    try:
        busybox_image(engine.client())
        yield engine
    finally:
        engine.stop()
        remove_tree(workdir)


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        server.warm_up()
        yield server
    finally:
        server.stop()


@pytest.fixture
def store(postgres):
    engine = open_engine(postgres.new_database())
    yield engine
    engine.dispose()


@pytest.fixture
def aws(moto, monkeypatch, tmp_path):
    fake_aws_credentials(monkeypatch, tmp_path)
    moto.reset()
    return moto


def site_file(tmp_path: Path, dockerd: Dockerd) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps({
        "region": "europe",
        "hosts": [{"name": "lisbon", "region": "europe", "latitude": 38.72, "longitude": -9.14, "docker": dockerd.url,
                   "cpu": 4, "ram": "8Gi", "disk": "100Gi"},
                  {"name": "tokyo", "region": "asia", "latitude": 35.68, "longitude": 139.69,
                   "docker": f"unix://{tmp_path}/gone.sock", "cpu": 4, "ram": "8Gi", "disk": "100Gi"}],
        "services": [{"name": "web", "image": "usm-test/busybox:1"}],
    }))
    return path


def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "rules.yaml").write_text("rules: []\n")
    return directory


def ec2_client(moto: MotoServer, region: str):
    return boto3.client("ec2", region_name=region, endpoint_url=moto.url)


def running(dockerd: Dockerd) -> list[str]:
    return sorted(c.name for c in dockerd.client().containers.list())


def test_the_master_cleans_up_what_usm_started_and_goes_on_past_a_failed_step(store, dockerd, aws, tmp_path):
    site_path = site_file(tmp_path, dockerd)
    site = load_site(site_path)
    master = Coordinator(sessions(store), None)
    steps = StoreSteps(store, master, site_file=site_path, policy_dir=policy_dir(tmp_path))
    ec2 = Ec2(Ec2Settings(CLOUD, endpoint_url=aws.url))
    cloud = CloudSteps(ec2, site)
    deployment = Deployment(Role.MASTER, "master", "europe", regions_of(site), CLOUD, await_workers=5.0)
    started = carry_out(startup_plan(deployment), steps, None, cloud)
    assert [(type(r.step).__name__, r.ok) for r in started][-1] == ("AllocateElasticIps", True)
    assert all(r.ok for r in started)
    for region in CLOUD:  # one tagged elastic IP per region
        addresses = ec2_client(aws, region).describe_addresses()["Addresses"]
        assert [{t["Key"]: t["Value"] for t in a["Tags"]}.get("usm-managed") for a in addresses] == ["true"]

    # What runs before the stop: a container and an instance of usm's, and one of each that usm did not start.
    containers = DockerContainers(DockerHosts({h.name: h.docker for h in site.hosts},
                                              DockerAccess(known_hosts=tmp_path / "known_hosts")),
                                  ContainerSettings(pull=False))
    containers.launch("lisbon", ContainerSpec("web", "usm-test/busybox:1", "shop", SERVE), "web-1")
    dockerd.client().containers.run("usm-test/busybox:1", list(SERVE), name="not-usms", detach=True,
                                    network_mode="none")
    client = ec2_client(aws, CLOUD[0])
    image = client.register_image(Name="docker-host", RootDeviceName="/dev/sda1")["ImageId"]
    client.create_tags(Resources=[image], Tags=[{"Key": "usm-image", "Value": "docker-host"}])
    ours = ec2.launch(CLOUD[0], "eu-cloud-1")
    theirs = client.run_instances(ImageId=image, InstanceType="t3.small", MinCount=1, MaxCount=1)["Instances"][0]

    stopped = carry_out(shutdown_plan(deployment), steps, RegionContainers(containers, site, master), cloud)
    assert [(type(r.step).__name__, r.ok) for r in stopped] == [
        ("RequestWorkersStop", True), ("AwaitWorkers", True), ("TakeOverRegions", True),
        ("StopContainers", False),  # tokyo's engine does not answer: reported, and the rest goes on
        ("TerminateCloudHosts", True), ("ReleaseElasticIps", True), ("ClearRuntime", True)]
    assert "tokyo" in stopped[3].detail and "stopped web-1@lisbon" in stopped[3].detail
    assert running(dockerd) == ["not-usms"]
    states = {i["InstanceId"]: i["State"]["Name"] for r in client.describe_instances()["Reservations"]
              for i in r["Instances"]}
    assert states == {ours.instance_id: "terminated", theirs["InstanceId"]: "running"}
    assert all(ec2_client(aws, region).describe_addresses()["Addresses"] == [] for region in CLOUD)
    with sessions(store).begin() as session:
        assert fed.leases(session) == {} and session.query(fed.StopRequest).count() == 0
    dockerd.client().containers.get("not-usms").remove(force=True)


def test_a_worker_stops_its_region_only_while_it_holds_it(store, dockerd, tmp_path):
    site_path = site_file(tmp_path, dockerd)
    site = load_site(site_path)
    master = Coordinator(sessions(store), None)
    steps = StoreSteps(store, master, site_file=site_path, policy_dir=policy_dir(tmp_path))
    assert all(r.ok for r in carry_out(startup_plan(Deployment(Role.MASTER, "master", "europe",
                                                               regions_of(site))), steps))
    worker = Coordinator(sessions(store), "w-eu")
    worker_steps = StoreSteps(store, worker)
    deployment = Deployment(Role.WORKER, "w-eu", "europe", ("europe",))
    assert all(r.ok for r in carry_out(startup_plan(deployment), worker_steps))
    master.supervise()
    containers = DockerContainers(DockerHosts({"lisbon": dockerd.url}, DockerAccess(known_hosts=tmp_path / "kh")),
                                  ContainerSettings(pull=False))
    spec = ContainerSpec("web", "usm-test/busybox:1", "shop", SERVE)
    containers.launch("lisbon", spec, "web-2")
    with sessions(store).begin() as session:  # the master took Europe back meanwhile (the worker fell silent)
        fed.hand_over(session, "europe", None, datetime.now(UTC))
    lost = carry_out(shutdown_plan(deployment)[:1], worker_steps, RegionContainers(containers, site, worker))
    assert lost[0].ok and lost[0].detail == "stopped 0 containers; not held: europe"
    assert running(dockerd) == ["web-2"]
    master.supervise()  # it beat meanwhile (registered just now): Europe is handed back
    stopped = carry_out(shutdown_plan(deployment), worker_steps, RegionContainers(containers, site, worker))
    assert [r.ok for r in stopped] == [True, True] and stopped[0].detail == "stopped 1 containers: web-2@lisbon"
    assert running(dockerd) == []
    with sessions(store).begin() as session:
        assert fed.leases(session)["europe"].holder is None and session.query(fed.Worker).count() == 0

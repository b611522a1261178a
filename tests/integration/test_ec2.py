"""The EC2 actuator against a real EC2 API (moto_server on a loopback port), in two regions.

What the test itself creates (images, an instance usm did not launch, an untagged address) goes through a plain
boto3 client, and every check of what usm did reads EC2's own answers, not usm's.
"""

from __future__ import annotations

import functools
from pathlib import Path

import boto3
import pytest

from tests.services import free_port
from tests.services.moto import MotoServer, fake_aws_credentials
from usm.actuators.ec2 import (
    NO_ELASTIC_IP,
    NO_IMAGE,
    NOT_MANAGED,
    REGION_NOT_CONFIGURED,
    WAIT_TIMEOUT,
    Ec2,
    Ec2Error,
    Ec2Settings,
)
from usm.actuators.ec2_steps import UNKNOWN_HOST, carry_out, execute_host_step
from usm.placement.plans import LaunchCloudHost, StartHost, StopHost, TerminateHost

EUROPE, SYDNEY = "eu-west-1", "ap-southeast-2"
REGIONS = (EUROPE, SYDNEY)


class VirtualClock:
    """Time that passes only when the code under test sleeps; remembers every sleep."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory):
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        server.warm_up()
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoServer:
    fake_aws_credentials(monkeypatch, tmp_path)
    moto.reset()
    return moto


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    """One boto3 session for the module: its first client costs ~0.6 s (loading the EC2 model), later ones ~20 ms."""
    return boto3.session.Session()


@pytest.fixture
def ec2(moto: MotoServer, clock: VirtualClock, session: boto3.session.Session) -> Ec2:
    settings = Ec2Settings(regions=REGIONS, endpoint_url=moto.url, poll_interval=5.0, wait_timeout=60.0)
    return Ec2(settings, session=session, clock=clock)


@functools.cache
def _raw(url: str, region: str):
    return boto3.client("ec2", region_name=region, endpoint_url=url)


def raw(moto: MotoServer, region: str):
    """A plain boto3 client: the test's own view of EC2."""
    return _raw(moto.url, region)


def register_image(moto: MotoServer, region: str, name: str, tags: dict[str, str]) -> str:
    client = raw(moto, region)
    image = client.register_image(Name=name, RootDeviceName="/dev/sda1")["ImageId"]
    if tags:
        client.create_tags(Resources=[image], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return image


def docker_host_image(moto: MotoServer, region: str) -> str:
    return register_image(moto, region, "docker-host", {"usm-image": "docker-host"})


def described(moto: MotoServer, region: str, instance_id: str) -> dict:
    reservations = raw(moto, region).describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]


def all_instances(moto: MotoServer, region: str) -> list[dict]:
    pages = raw(moto, region).get_paginator("describe_instances").paginate()
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def tags(resource: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def state(moto: MotoServer, region: str, instance_id: str) -> str:
    return described(moto, region, instance_id)["State"]["Name"]


def unmanaged_instance(moto: MotoServer, region: str, tagged: dict[str, str] | None = None) -> str:
    """An instance started by someone else than usm (optionally with some tags)."""
    image = register_image(moto, region, "someone-elses", {})
    parameters = {}
    if tagged:
        parameters["TagSpecifications"] = [
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tagged.items()]}]
    launched = raw(moto, region).run_instances(ImageId=image, InstanceType="t3.small", MinCount=1, MaxCount=1,
                                               **parameters)
    return launched["Instances"][0]["InstanceId"]


# --- instances -------------------------------------------------------------------------------------------


def test_launch_stop_start_and_terminate_in_two_regions(moto: MotoServer, ec2: Ec2) -> None:
    images = {region: docker_host_image(moto, region) for region in REGIONS}
    register_image(moto, EUROPE, "newer-but-untagged", {"usm-image": "something-else"})

    hosts = {region: ec2.launch(region) for region in REGIONS}
    for region, host in hosts.items():
        seen = described(moto, region, host.instance_id)
        assert (host.region, host.state, seen["State"]["Name"]) == (region, "running", "running")
        assert seen["ImageId"] == images[region]  # the tagged image, not the newer untagged one
        assert seen["InstanceType"] == host.instance_type == "t2.micro"
        assert tags(seen)["usm-managed"] == "true"
        assert tags(seen)["usm-host"] == host.host and host.host.startswith(region)
        volumes = raw(moto, region).describe_volumes(
            Filters=[{"Name": "attachment.instance-id", "Values": [host.instance_id]}])["Volumes"]
        assert volumes and all(tags(v)["usm-managed"] == "true" for v in volumes)

    europe, sydney = hosts[EUROPE], hosts[SYDNEY]
    assert ec2.stop(EUROPE, europe.instance_id).state == "stopped"
    assert state(moto, EUROPE, europe.instance_id) == "stopped"
    assert state(moto, SYDNEY, sydney.instance_id) == "running"  # the other region is left alone

    assert ec2.start(EUROPE, europe.instance_id).state == "running"
    assert state(moto, EUROPE, europe.instance_id) == "running"

    assert ec2.terminate(SYDNEY, sydney.instance_id).state == "terminated"
    assert state(moto, SYDNEY, sydney.instance_id) == "terminated"
    assert [(i.host, i.state) for i in ec2.sync().instances] == [(europe.host, "running")]


def test_launch_takes_the_configured_image_tag_name_and_type(moto: MotoServer, session) -> None:
    register_image(moto, EUROPE, "docker-host", {"usm-image": "docker-host"})
    wanted = register_image(moto, EUROPE, "edge-gateway", {"role": "gateway"})
    settings = Ec2Settings(regions=(EUROPE,), endpoint_url=moto.url, image_tag="role=gateway",
                           instance_type="t3.small")
    ec2 = Ec2(settings, session=session)
    host = ec2.launch(EUROPE, host="web-1")
    seen = described(moto, EUROPE, host.instance_id)
    assert (seen["ImageId"], seen["InstanceType"], tags(seen)["usm-host"]) == (wanted, "t3.small", "web-1")
    other = ec2.launch(EUROPE, host="web-2", instance_type="t3.medium")
    assert described(moto, EUROPE, other.instance_id)["InstanceType"] == "t3.medium"


def test_launching_a_name_that_runs_launches_nothing(moto: MotoServer, ec2: Ec2) -> None:
    docker_host_image(moto, EUROPE)
    first = ec2.launch(EUROPE, host="web-1")
    again = ec2.launch(EUROPE, host="web-1")
    assert again.instance_id == first.instance_id
    assert len(all_instances(moto, EUROPE)) == 1


def test_an_instance_usm_did_not_launch_is_refused(moto: MotoServer, ec2: Ec2) -> None:
    docker_host_image(moto, EUROPE)
    ec2.allocate_elastic_ip(EUROPE)
    strangers = [unmanaged_instance(moto, EUROPE),
                 unmanaged_instance(moto, EUROPE, {"usm-managed": "false", "usm-host": "web-9"})]
    for stranger in strangers:
        for act in (ec2.stop, ec2.start, ec2.terminate, ec2.associate_elastic_ip):
            with pytest.raises(Ec2Error) as refused:
                act(EUROPE, stranger)
            assert (refused.value.code, refused.value.transient) == (NOT_MANAGED, False)
            assert stranger in str(refused.value) and "usm-managed=true" in str(refused.value)
        assert state(moto, EUROPE, stranger) == "running"
    assert ec2.elastic_ip(EUROPE).instance_id is None
    assert ec2.sync().instances == ()
    assert ec2.named("web-9") is None
    outcome = execute_host_step(ec2, StopHost("web-9"))
    assert not outcome.ok and UNKNOWN_HOST in outcome.detail
    assert state(moto, EUROPE, strangers[1]) == "running"


def test_a_failed_launch_is_a_permanent_error_and_leaves_no_instance(moto: MotoServer, ec2: Ec2) -> None:
    with pytest.raises(Ec2Error) as no_image:
        ec2.launch(EUROPE)
    assert (no_image.value.code, no_image.value.transient) == (NO_IMAGE, False)
    assert "usm-image=docker-host" in str(no_image.value)

    docker_host_image(moto, EUROPE)
    with pytest.raises(Ec2Error) as bad_type:
        ec2.launch(EUROPE, host="web-1", instance_type="t2.enormous")
    assert (bad_type.value.code, bad_type.value.transient) == ("InvalidInstanceType.NotFound", False)
    assert bad_type.value.operation == "run_instances" and "t2.enormous" in str(bad_type.value)

    assert all_instances(moto, EUROPE) == []
    assert ec2.sync().instances == ()


def test_a_region_outside_the_settings_is_refused_before_any_call(moto: MotoServer, ec2: Ec2) -> None:
    docker_host_image(moto, "us-west-2")
    with pytest.raises(Ec2Error) as refused:
        ec2.launch("us-west-2")
    assert (refused.value.code, refused.value.transient) == (REGION_NOT_CONFIGURED, False)
    assert all_instances(moto, "us-west-2") == []


def test_waiting_polls_the_instance_at_the_configured_interval(moto: MotoServer, ec2: Ec2,
                                                               clock: VirtualClock) -> None:
    docker_host_image(moto, EUROPE)
    host = ec2.launch(EUROPE)
    assert clock.sleeps == []  # moto runs an instance at once: nothing to wait for

    with pytest.raises(Ec2Error) as timed_out:
        ec2.wait_for(EUROPE, host.instance_id, "stopped")  # nobody stops it
    assert (timed_out.value.code, timed_out.value.transient) == (WAIT_TIMEOUT, True)
    assert "still running" in str(timed_out.value)
    assert clock.sleeps == [5.0] * 12  # 60 s of waiting, one look every 5 s (the original: every 50 ms)


# --- elastic IPs -----------------------------------------------------------------------------------------


def test_the_elastic_ip_of_a_region_moves_from_one_instance_to_another(moto: MotoServer, ec2: Ec2) -> None:
    docker_host_image(moto, EUROPE)
    someone_elses = raw(moto, EUROPE).allocate_address(Domain="vpc")["AllocationId"]
    assert ec2.elastic_ip(EUROPE) is None
    with pytest.raises(Ec2Error) as none_yet:
        ec2.disassociate_elastic_ip(EUROPE)
    assert none_yet.value.code == NO_ELASTIC_IP

    address = ec2.allocate_elastic_ip(EUROPE)
    assert ec2.allocate_elastic_ip(EUROPE) == address  # one per region
    first, second = ec2.launch(EUROPE), ec2.launch(EUROPE)

    def pointed_at() -> str | None:
        found = raw(moto, EUROPE).describe_addresses(AllocationIds=[address.allocation_id])["Addresses"][0]
        assert tags(found)["usm-managed"] == "true"
        return found.get("InstanceId") or None

    assert ec2.associate_elastic_ip(EUROPE, first.instance_id).instance_id == first.instance_id
    assert pointed_at() == first.instance_id
    moved = ec2.associate_elastic_ip(EUROPE, second.instance_id)
    assert (moved.instance_id, moved.public_ip) == (second.instance_id, address.public_ip)
    assert pointed_at() == second.instance_id

    assert ec2.disassociate_elastic_ip(EUROPE).instance_id is None
    assert pointed_at() is None

    ec2.associate_elastic_ip(EUROPE, first.instance_id)
    ec2.release_elastic_ip(EUROPE)
    left = raw(moto, EUROPE).describe_addresses()["Addresses"]
    assert [a["AllocationId"] for a in left] == [someone_elses]  # the address usm did not make is still there
    assert ec2.elastic_ip(EUROPE) is None


def test_terminating_an_instance_takes_the_elastic_ip_off_it(moto: MotoServer, ec2: Ec2) -> None:
    docker_host_image(moto, SYDNEY)
    host = ec2.launch(SYDNEY)
    ec2.allocate_elastic_ip(SYDNEY)
    ec2.associate_elastic_ip(SYDNEY, host.instance_id)
    ec2.terminate(SYDNEY, host.instance_id)
    address = raw(moto, SYDNEY).describe_addresses()["Addresses"][0]
    assert not address.get("InstanceId") and not address.get("AssociationId")


# --- sync ------------------------------------------------------------------------------------------------


def test_sync_lists_exactly_the_managed_instances_of_the_configured_regions(moto: MotoServer, ec2: Ec2) -> None:
    for region in (*REGIONS, "us-east-1"):
        docker_host_image(moto, region)
    web1, web2 = ec2.launch(EUROPE, host="web-1"), ec2.launch(EUROPE, host="web-2")
    syd = ec2.launch(SYDNEY, host="syd-1")
    gone = ec2.launch(SYDNEY, host="syd-2")
    ec2.stop(EUROPE, web2.instance_id)
    ec2.terminate(SYDNEY, gone.instance_id)
    unmanaged_instance(moto, EUROPE)
    unmanaged_instance(moto, SYDNEY, {"usm-host": "syd-3"})
    elsewhere = Ec2(Ec2Settings(regions=("us-east-1",), endpoint_url=moto.url), session=ec2.session)
    elsewhere.launch("us-east-1", host="far-1")

    synced = ec2.sync()
    assert synced.failed == {}
    assert [(i.host, i.region, i.state, i.instance_id) for i in synced.instances] == [
        ("web-1", EUROPE, "running", web1.instance_id),
        ("web-2", EUROPE, "stopped", web2.instance_id),
        ("syd-1", SYDNEY, "running", syd.instance_id),
    ]
    for instance in synced.instances:
        seen = described(moto, instance.region, instance.instance_id)
        assert instance.launched_at == seen["LaunchTime"]
        assert instance.instance_type == seen["InstanceType"] == "t2.micro"
        assert instance.public_ip == seen.get("PublicIpAddress")
    assert synced.instances[0].public_ip is not None


def test_sync_reports_regions_it_cannot_read_as_transient_failures(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ec2 = Ec2(Ec2Settings(regions=REGIONS, endpoint_url=nobody, max_attempts=1))
    synced = ec2.sync()
    assert synced.instances == ()
    assert set(synced.failed) == set(REGIONS)
    assert all(error.transient and error.region == region for region, error in synced.failed.items())


def test_without_credentials_every_call_fails_with_a_permanent_error_that_says_how_to_fix_it(
        moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    ec2 = Ec2(Ec2Settings(regions=REGIONS, endpoint_url=moto.url, max_attempts=1))
    with pytest.raises(Ec2Error) as failed:
        ec2.launch(EUROPE)
    assert (failed.value.code, failed.value.transient) == ("NoCredentials", False)
    assert "AWS_ACCESS_KEY_ID" in str(failed.value)


# --- plan steps ------------------------------------------------------------------------------------------


def test_placement_host_steps_are_carried_out_on_ec2(moto: MotoServer, ec2: Ec2) -> None:
    docker_host_image(moto, SYDNEY)
    launched = carry_out(ec2, LaunchCloudHost(SYDNEY, distance_m=1200.0))
    assert state(moto, SYDNEY, launched.instance_id) == "running"
    name = launched.host

    stopped = execute_host_step(ec2, StopHost(name))
    assert stopped.ok and name in stopped.detail
    assert state(moto, SYDNEY, launched.instance_id) == "stopped"

    assert execute_host_step(ec2, StartHost(name, distance_m=0.0)).ok
    assert state(moto, SYDNEY, launched.instance_id) == "running"

    assert execute_host_step(ec2, TerminateHost(name)).ok
    assert state(moto, SYDNEY, launched.instance_id) == "terminated"
    assert ec2.sync().instances == ()

    for step in (StartHost(name, 0.0), StopHost("edge-lisbon")):
        outcome = execute_host_step(ec2, step)
        assert not outcome.ok and UNKNOWN_HOST in outcome.detail


def test_a_launch_step_that_fails_says_why_and_launches_nothing(moto: MotoServer, ec2: Ec2) -> None:
    outcome = execute_host_step(ec2, LaunchCloudHost(EUROPE, distance_m=0.0))
    assert not outcome.ok and not outcome.transient
    assert NO_IMAGE in outcome.detail and "permanent" in outcome.detail
    assert all_instances(moto, EUROPE) == []


def test_a_host_step_that_cannot_reach_ec2_is_a_transient_outcome(session) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ec2 = Ec2(Ec2Settings(regions=REGIONS, endpoint_url=nobody, max_attempts=1), session=session)
    for step in (LaunchCloudHost(EUROPE, 0.0), StopHost("web-1")):
        outcome = execute_host_step(ec2, step)
        assert not outcome.ok and outcome.transient and "transient" in outcome.detail

"""A host's state from the EC2 and swarm snapshots, and the name a launched host gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from usm.actuators.cloudsteps import launch_name
from usm.actuators.ec2 import LIVE_STATES, CloudInstance
from usm.actuators.swarm import SwarmNode
from usm.geo.sphere import Coordinates
from usm.manager.hoststates import cloud_state, host_states, unknown_instances, unknown_nodes
from usm.manager.site import SiteHost
from usm.manager.syncs import CloudView
from usm.placement.model import HostKind, HostState, Resources


def site_host(name: str, kind: HostKind = HostKind.CLOUD, cloud_region: str = "eu-west-1") -> SiteHost:
    return SiteHost(name, kind, Coordinates(53.3, -6.3), "europe", cloud_region if kind is HostKind.CLOUD else "",
                    f"ssh://usm@{name}.example", "", Resources(2, 4 * 2**30, 50 * 2**30))


def instance(host: str, state: str = "running", region: str = "eu-west-1", minute: int = 0) -> CloudInstance:
    return CloudInstance(host, f"i-{host}-{minute}", region, state, "t2.micro", "ami-1",
                         datetime(2026, 1, 1, 0, minute, tzinfo=UTC))


def node(host: str, availability: str = "active", state: str = "ready", node_id: str | None = None) -> SwarmNode:
    return SwarmNode(node_id or f"n-{host}", host, "worker", availability, state, "127.0.0.1")


def view(*instances: CloudInstance, regions: tuple[str, ...] = ("eu-west-1",)) -> CloudView:
    return CloudView(instances, frozenset(regions))


@pytest.mark.parametrize(("ec2", "expected"), [
    ("pending", HostState.STARTING),
    ("running", HostState.RUNNING),
    ("stopping", HostState.STOPPING),
    ("shutting-down", HostState.STOPPING),
    ("stopped", HostState.STOPPED),
    ("terminated", None),
])
def test_a_cloud_hosts_state_is_its_instances(ec2, expected):
    assert cloud_state(ec2) is expected
    states = host_states([site_host("c1")], view(instance("c1", ec2)), None)
    assert states.get("c1") is expected


def test_every_state_the_ec2_sync_reports_has_a_host_state():
    assert all(cloud_state(s) is not None for s in LIVE_STATES)


def test_a_cloud_host_with_no_instance_in_a_region_read_is_gone_and_unknown_while_unread():
    hosts = [site_host("c1"), site_host("c2", cloud_region="us-east-1")]
    states = host_states(hosts, view(regions=("eu-west-1",)), None)
    assert states == {"c2": HostState.RUNNING}  # c1 gone; us-east-1 never read: c2 as the site says
    assert host_states(hosts, None, None) == {"c1": HostState.RUNNING, "c2": HostState.RUNNING}  # no sync yet


def test_an_edge_host_is_not_judged_by_ec2():
    edge = site_host("lisbon", HostKind.EDGE)
    assert host_states([edge], view(instance("lisbon", "stopped")), None) == {"lisbon": HostState.RUNNING}


def test_the_oldest_instance_of_a_name_counts():
    states = host_states([site_host("c1")], view(instance("c1", "stopped", minute=5), instance("c1", minute=1)), None)
    assert states == {"c1": HostState.RUNNING}


@pytest.mark.parametrize(("availability", "expected"), [
    ("active", HostState.RUNNING),
    ("pause", HostState.STOPPING),
    ("drain", HostState.STOPPING),
])
def test_a_drained_or_paused_node_makes_its_host_receive_nothing(availability, expected):
    hosts = [site_host("lisbon", HostKind.EDGE), site_host("porto", HostKind.EDGE)]
    states = host_states(hosts, None, [node("lisbon", availability), node("porto")])
    assert states == {"lisbon": expected, "porto": HostState.RUNNING}


def test_a_drained_node_does_not_wake_a_stopped_host_and_a_starting_one_stops_receiving():
    hosts = [site_host("c1"), site_host("c2")]
    states = host_states(hosts, view(instance("c1", "stopped"), instance("c2", "pending")),
                         [node("c1", "drain"), node("c2", "drain")])
    assert states == {"c1": HostState.STOPPED, "c2": HostState.STOPPING}


def test_the_ready_node_of_a_host_counts_over_an_old_down_one():
    hosts = [site_host("lisbon", HostKind.EDGE)]
    nodes = [node("lisbon", "drain", "down", "n-0-old"), node("lisbon", "active", "ready", "n-1-new")]
    assert host_states(hosts, None, nodes) == {"lisbon": HostState.RUNNING}


def test_instances_and_nodes_the_site_does_not_list_are_named_not_made_hosts():
    hosts = [site_host("c1"), site_host("lisbon", HostKind.EDGE)]
    cloud = view(instance("c1"), instance("eu-west-1-host-1", "pending"))
    nodes = [node("lisbon"), node("tokyo"), node("", node_id="n-stranger")]
    assert [i.host for i in unknown_instances(hosts, cloud)] == ["eu-west-1-host-1"]
    assert [n.id for n in unknown_nodes(hosts, nodes)] == ["n-tokyo", "n-stranger"]
    assert set(host_states(hosts, cloud, nodes)) == {"c1", "lisbon"}


def test_a_launched_host_is_named_after_its_region_and_the_first_name_the_site_does_not_use():
    assert launch_name("eu-west-1", {}) == "eu-west-1-host-1"
    assert launch_name("eu-west-1", {"eu-west-1-host-1": 1, "eu-west-1-host-3": 1}) == "eu-west-1-host-2"

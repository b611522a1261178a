"""Time what live mode's background syncs cost, and what a cycle pays for them (a table; no assertion).

* **ec2 sync**: ``Ec2.sync`` against a real moto_server holding N usm instances in each of R regions (the
  regions read side by side): median of ``--runs``, after a first call that makes the clients.
* **per cycle**: what ``LiveCollector`` does with the latest snapshots at every cycle (``host_states`` and the
  unknown instances and nodes) for H cloud hosts, each with its instance and swarm node: median of ``--runs``.

    PYTHONPATH=. .venv/bin/python bench/live_syncs.py [--runs 5] [--instances 10,100] [--regions 1,3]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3

from tests.services.moto import DUMMY, MotoServer
from usm.actuators.ec2 import CloudInstance, Ec2, Ec2Settings, usm_tags
from usm.actuators.swarm import SwarmNode
from usm.geo.sphere import Coordinates
from usm.manager.hoststates import host_states, unknown_instances, unknown_nodes
from usm.manager.site import SiteHost
from usm.manager.syncs import CloudView
from usm.placement.model import HostKind, Resources

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


def median_time(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fill(moto: MotoServer, region: str, count: int) -> None:
    """``count`` instances tagged as usm's in ``region`` (launched in one call: the sync is what is timed)."""
    client = boto3.client("ec2", region_name=region, endpoint_url=moto.url)
    image = client.register_image(Name="docker-host", RootDeviceName="/dev/sda1")["ImageId"]
    for start in range(0, count, 50):
        batch = min(50, count - start)
        reservation = client.run_instances(ImageId=image, InstanceType="t2.micro", MinCount=batch, MaxCount=batch,
                                           TagSpecifications=[{"ResourceType": "instance", "Tags": usm_tags()}])
        for n, instance in enumerate(reservation["Instances"], start):
            client.create_tags(Resources=[instance["InstanceId"]], Tags=usm_tags(f"{region}-host-{n}")[1:])


def bench_ec2(counts: list[int], regions: list[int], runs: int) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", DUMMY), ("AWS_SECRET_ACCESS_KEY", DUMMY),
                        ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ[name] = value
    moto = MotoServer(Path(tempfile.mkdtemp(prefix="usm-b", dir="/tmp"))).start()
    try:
        moto.warm_up()
        print("ec2 sync: regions  instances per region  median sync (s)  instances seen")
        for count in counts:
            moto.reset()
            for region in REGIONS[:max(regions)]:
                fill(moto, region, count)
            for r in regions:
                ec2 = Ec2(Ec2Settings(regions=REGIONS[:r], endpoint_url=moto.url))
                seen = len(ec2.sync().instances)  # warm: makes the clients
                print(f"          {r:7d}  {count:20d}  {median_time(ec2.sync, runs):15.3f}  {seen:14d}")
    finally:
        moto.stop()


def cycle(site: list[SiteHost], cloud: CloudView, nodes: tuple[SwarmNode, ...]) -> None:
    """What a cycle does with the snapshots, on a snapshot fresh from a sync (its index not built yet)."""
    fresh = CloudView(cloud.instances, cloud.regions)
    host_states(site, fresh, nodes)
    unknown_instances(site, fresh)
    unknown_nodes(site, nodes)


def bench_cycle(hosts: list[int], runs: int) -> None:
    launched = datetime(2026, 1, 1, tzinfo=UTC)
    print("per cycle: cloud hosts  median host states (ms)")
    for count in hosts:
        site = [SiteHost(f"h{n}", HostKind.CLOUD, Coordinates(0, 0), "europe", "eu-west-1", "ssh://u@h", "",
                         Resources(2, 2**32, 2**35)) for n in range(count)]
        states = ("running", "stopped", "pending")
        cloud = CloudView(tuple(CloudInstance(f"h{n}", f"i-{n}", "eu-west-1", states[n % 3], "t2.micro", "ami-1",
                                              launched) for n in range(count)), frozenset({"eu-west-1"}))
        nodes = tuple(SwarmNode(f"n{n}", f"h{n}", "worker", ("active", "drain")[n % 2], "ready", "127.0.0.1")
                      for n in range(count))

        print(f"           {count:11d}  {median_time(functools.partial(cycle, site, cloud, nodes), runs) * 1000:25.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--instances", default="10,100")
    parser.add_argument("--regions", default="1,3")
    parser.add_argument("--hosts", default="100,1000,10000")
    args = parser.parse_args()
    bench_cycle([int(n) for n in args.hosts.split(",")], args.runs)
    bench_ec2([int(n) for n in args.instances.split(",")], [int(r) for r in args.regions.split(",")], args.runs)


if __name__ == "__main__":
    main()

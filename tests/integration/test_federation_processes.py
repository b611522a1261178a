"""A master and two workers as separate `usm` processes against one real PostgreSQL store, managing three real
pseudo-hosts (a private dockerd each, reached over a real sshd) in three regions: Europe (worker w-eu), North
America (worker w-na) and Asia (the master's own). Heartbeats every second and a 4 s countdown instead of 15 s and
60 s, so the test does not wait minutes; the behaviour on the defaults is tested on a virtual clock
(tests/unit/test_federation_supervision.py, tests/integration/test_federation_manager.py).

What the test looks at is what really happened: the containers on each engine (through its own socket, behind
usm's back), the managers' decision logs, and the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.services import Service, need, wait_until
from tests.services.dockerd import busybox_image, remove_tree
from tests.services.dockerhost import DockerHost, client_key, short_tempdir
from tests.services.postgres import Postgres
from usm.actuators.docker import LABEL_MANAGED, LABEL_SERVICE
from usm.lab.monitor import usm_command
from usm.manager.store import federation as fed
from usm.manager.store.database import open_engine, sessions

SERVE = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
PLACES = {"lisbon": ("europe", 38.72, -9.14), "portland": ("north_america", 45.52, -122.68),
          "tokyo": ("asia", 35.68, 139.69)}
SERVICES = {"web-eu": ("europe", "lisbon"), "web-na": ("north_america", "portland"), "web-asia": ("asia", "tokyo")}
POLICY = """
settings:
  period: 1s
  retention: 5m
rules:
  - name: never
    scope: host
    target: "*"
    when: cpu_percent > {limit}
    then: overwork
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The store, three pseudo-hosts with the busybox image, usm's SSH key and known_hosts, the site file."""
    for binary in ("dockerd", "sshd", "postgres"):
        need(binary)
    root = short_tempdir("usm-fed-")
    identity, public = client_key(root)
    hosts: dict[str, DockerHost] = {}
    database = Postgres(tmp_path_factory.mktemp("postgres"))
    try:
        database.start()
        for name in PLACES:
            hosts[name] = DockerHost(root / name, public).start()
        image = ""
        for host in hosts.values():
            image = busybox_image(host.engine())
        known = root / "known_hosts"
        known.write_text("".join(f"{h.known_hosts_line}\n" for h in hosts.values()))
        site = root / "site.yaml"
        site.write_text(json.dumps({
            "region": "asia",
            "hosts": [{"name": name, "region": region, "latitude": lat, "longitude": lon, "docker": hosts[name].url,
                       "cpu": 64, "ram": "64Gi", "disk": "500Gi"} for name, (region, lat, lon) in PLACES.items()],
            "services": [{"name": service, "region": region, "image": image, "command": SERVE, "memory": "16Mi",
                          "min_replicas": 2} for service, (region, _) in SERVICES.items()],
        }))
        env = {"PGPASSWORD": database.password, "USM_KNOWN_HOSTS": str(known), "USM_SSH_IDENTITY": str(identity)}
        yield {"root": root, "hosts": hosts, "site": site, "env": env, "url": database.url("postgres"),
               "database": database}
    finally:
        for host in hosts.values():
            host.stop()
        database.stop()
        remove_tree(root)


def policy(root: Path, name: str, limit: int) -> Path:
    directory = root / name
    directory.mkdir(exist_ok=True)
    (directory / "rules.yaml").write_text(POLICY.format(limit=limit))
    return directory


def manager(world: dict, name: str, *arguments: str) -> Service:
    argv = [usm_command(), *arguments, "--db", world["url"], "--live", "--heartbeat", "1s", "--countdown", "4s",
            "--data", str(world["root"] / "data")]
    return Service(name, argv, world["root"] / "logs", env=world["env"]).start()


def managed(host: DockerHost, service: str) -> list[str]:
    """The running usm containers of ``service`` on ``host``, as its engine reports them."""
    return sorted(c.name for c in host.engine().containers.list(
        filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_SERVICE}={service}"]}))


def log_of(world: dict, name: str) -> list[dict]:
    path = world["root"] / "data" / name / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def steps_on(world: dict, name: str, host: str) -> list[dict]:
    return [r for r in log_of(world, name) if r["type"] == "step" and r["ok"]
            and host in (r["step"].get("host"), (r["step"].get("on") or {}).get("host"))]


def holder(world: dict, region: str) -> str | None:
    engine = open_engine(world["url"])
    try:
        with sessions(engine).begin() as session:
            lease = fed.leases(session).get(region)
            return lease.holder if lease else "no lease"
    finally:
        engine.dispose()


def waiting(world: dict, processes: dict[str, Service]):
    """``wait_until`` that, when it times out, says what the managers logged and decided last."""
    def wait(ready, timeout: float, what: str) -> None:
        try:
            wait_until(ready, timeout, what)
        except TimeoutError as late:
            steps = {name: [(r["at"], r["ok"], r["detail"]) for r in log_of(world, name) if r["type"] == "step"][-5:]
                     for name in ("master", "w-eu", "w-na")}
            tails = {name: p.log_tail(1500) for name, p in processes.items()}
            raise AssertionError(f"{late}\nlast steps: {steps}\nlogs: {tails}") from None
    return wait


def settled(world: dict) -> bool:
    return all(len(managed(world["hosts"][host], service)) == 2 for service, (_, host) in SERVICES.items())


def stop_federation(master: Service, workers: list[Service]) -> None:
    """SIGTERM to the master, then wait for every process to exit by itself (killed only if it does not)."""
    os.kill(master.pid, signal.SIGTERM)
    for process in (master, *workers):
        try:
            process.process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()


def test_workers_manage_their_regions_and_the_master_covers_a_killed_one(world, monkeypatch):
    for key, value in world["env"].items():
        monkeypatch.setenv(key, value)
    hosts, root = world["hosts"], world["root"]
    master = manager(world, "master", "master", "--site", str(world["site"]), "--policy",
                     str(policy(root, "policy-1", 1000)), "--await-workers", "20s")
    workers = {name: manager(world, name, "worker", "--region", region, "--name", name)
               for name, region in (("w-eu", "europe"), ("w-na", "north_america"))}
    wait = waiting(world, {"master": master, **workers})
    try:
        wait(lambda: holder(world, "europe") == "w-eu" and holder(world, "north_america") == "w-na", 60,
                   "the master to hand each region to its worker")
        wait(lambda: settled(world), 90, "each region's service to run its two replicas")
        # Each region's containers were started by its own manager, and only by it.
        for name, host in (("w-eu", "lisbon"), ("w-na", "portland"), ("master", "tokyo")):
            mine = steps_on(world, name, host)
            assert mine and all(not steps_on(world, other, host) for other in ("w-eu", "w-na", "master")
                                if other != name), (name, host)

        # A policy applied on the master reaches every manager before its next cycle, logged with its version.
        applied = subprocess.run([usm_command(), "policy", "apply", str(policy(root, "policy-2", 999)), "--db",
                                  world["url"]], capture_output=True, text=True, env={**os.environ, **world["env"]},
                                 check=False)
        assert applied.returncode == 0 and "stored as version 2" in applied.stdout, applied.stderr
        after = time.time()

        def cycles_since(name: str) -> list[dict]:
            return [r for r in log_of(world, name) if r["type"] == "cycle" and r["at"] > after]

        wait(lambda: all(cycles_since(n) for n in ("master", "w-eu", "w-na")), 30,
                   "every manager to run a cycle after the policy was applied")
        for name in ("master", "w-eu", "w-na"):
            assert {r["policy_version"] for r in cycles_since(name)} == {2}, name

        # w-eu dies: the master takes Europe over and keeps its service at its minimum. (Steps are counted, not
        # compared by time: a cycle is logged when it ends, under the time it was due.)
        before = len(steps_on(world, "master", "lisbon"))
        workers["w-eu"].kill()
        lost = managed(hosts["lisbon"], "web-eu")[0]
        hosts["lisbon"].engine().containers.get(lost).remove(force=True)
        wait(lambda: holder(world, "europe") is None, 30, "the master to take Europe over")
        wait(lambda: len(managed(hosts["lisbon"], "web-eu")) == 2
             and len(steps_on(world, "master", "lisbon")) > before, 60, "the master to restore web-eu itself")

        # w-eu comes back: Europe is handed back, and w-eu (not the master) restores the next loss.
        mine = len(steps_on(world, "w-eu", "lisbon"))
        workers["w-eu"] = manager(world, "w-eu-2", "worker", "--region", "europe", "--name", "w-eu")
        wait = waiting(world, {"master": master, **workers})
        wait(lambda: holder(world, "europe") == "w-eu", 30, "Europe to be handed back to w-eu")
        masters = len(steps_on(world, "master", "lisbon"))
        hosts["lisbon"].engine().containers.get(managed(hosts["lisbon"], "web-eu")[0]).remove(force=True)
        wait(lambda: len(managed(hosts["lisbon"], "web-eu")) == 2 and len(steps_on(world, "w-eu", "lisbon")) > mine,
             60, "w-eu to restore web-eu after it got Europe back")
        assert len(steps_on(world, "master", "lisbon")) == masters  # the master no longer acts in Europe

        # No step was carried out by two managers, and no service ever got more replicas than asked for.
        executed = {n: {(r["at"], json.dumps(r["step"], sort_keys=True)) for r in log_of(world, n)
                        if r["type"] == "step" and r["ok"]} for n in ("master", "w-eu", "w-na")}
        assert not (executed["master"] & executed["w-eu"] or executed["master"] & executed["w-na"]
                    or executed["w-eu"] & executed["w-na"])
        assert settled(world)
    finally:  # stopping the master stops the federation: the workers obey its stop request
        stop_federation(master, list(workers.values()))
    assert master.process.returncode == 0, master.log_tail()
    assert all(w.process.returncode == 0 for w in workers.values()), [w.log_tail() for w in workers.values()]
    assert all(managed(host, service) == [] for host in hosts.values() for service in SERVICES)
    engine = open_engine(world["url"])
    try:
        with sessions(engine).begin() as session:
            assert fed.leases(session) == {} and session.query(fed.Worker).count() == 0
    finally:
        engine.dispose()

"""The action journal against real faults: a dockerd killed in the middle of a migration, a manager that dies
mid-step and restarts, SSH refused. After recovery: no duplicate container, no lost journal entry.

Two pseudo-hosts (a private dockerd each, reached over a real sshd); the tests look at each engine through its own
socket to see what really happened. Waits (the migration's delay, the retry backoff) run on a virtual clock whose
sleeps are where the faults are injected.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import need
from tests.services.dockerd import busybox_image
from tests.services.dockerhost import DockerHost, pseudo_hosts
from usm.actuators.containersteps import ContainerSteps
from usm.actuators.docker import LABEL_MANAGED, ContainerSettings, ContainerSpec, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts
from usm.actuators.journal import BEGUN, DONE, FAILED, RETRYING, Journal, JournaledActuator, RetryPolicy
from usm.geo.sphere import Coordinates
from usm.placement.plans import MoveContainer, PlaceReplica, UseHost

SERVE = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
LISBON = Coordinates(38.72, -9.14)


class Crash(BaseException):
    """The manager dying: not an Exception, so nothing on the way catches it."""


@dataclass
class VirtualClock:
    now_s: float = 0.0
    hooks: list = field(default_factory=list)  # called (once each, in order) at the next sleeps

    def now(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        if self.hooks:
            self.hooks.pop(0)()
        self.now_s += seconds


@dataclass
class Lab:
    a: DockerHost
    b: DockerHost
    access: DockerAccess
    image: str
    workdir: Path


@pytest.fixture(scope="module")
def lab():
    need("dockerd")
    need("sshd")
    with pseudo_hosts("a", "b", prefix="usm-journal-") as started:
        a, b = started.hosts["a"], started.hosts["b"]
        image = busybox_image(a.engine())
        busybox_image(b.engine())
        yield Lab(a, b, DockerAccess(known_hosts=started.known_hosts, identity=started.identity), image,
                  started.workdir)


def actuator(lab: Lab, journal: Journal, clock: VirtualClock) -> tuple[JournaledActuator, DockerHosts]:
    hosts = DockerHosts({"a": lab.a.url, "b": lab.b.url}, lab.access)
    containers = DockerContainers(hosts, ContainerSettings(pull=False, delay_before_stop=30.0), clock)
    steps = ContainerSteps(containers, {"web": ContainerSpec("web", lab.image, "shop", SERVE)})
    return JournaledActuator(steps, journal, RetryPolicy(attempts=4, first_delay=5.0), clock.sleep), hosts


def managed(host: DockerHost, running_only: bool = True) -> list:
    found = host.engine().containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"})
    return [c for c in found if c.status == "running" or not running_only]


def states(path: Path, identity: str | None = None) -> list[str]:
    return [e["state"] for e in map(json.loads, path.read_text().splitlines()) if identity in (None, e["id"])]


def kill_engine(host: DockerHost) -> None:
    """SIGKILL dockerd and its containerd: the engine dies as in a crash (the containers' shims live on)."""
    pid_file = host.dockerd.root / "x" / "containerd" / "containerd.pid"
    containerd = int(pid_file.read_text())
    host.dockerd.kill()
    os.kill(containerd, signal.SIGKILL)
    # This sandbox's PID 1 does not reap orphans: the dead containerd stays a zombie that dockerd would take
    # for a live one. A host's init reaps it; here its pid file goes instead.
    pid_file.unlink()


def place(lab: Lab, act: JournaledActuator, at: float) -> str:
    outcome = act.execute(PlaceReplica("web", LISBON, UseHost("a", 0.0)), at)
    assert outcome.ok, outcome.detail
    return outcome.detail.split()[0]


def clean(lab: Lab) -> None:
    for host in (lab.a, lab.b):
        for container in managed(host, running_only=False):
            container.remove(force=True)


def test_a_dockerd_killed_mid_migration_is_retried_to_one_copy(lab, tmp_path):
    clean(lab)
    clock = VirtualClock()
    journal = Journal(tmp_path / "journal.jsonl")
    act, hosts = actuator(lab, journal, clock)
    original = place(lab, act, at=0.0)
    move = MoveContainer(original, "web", "a", LISBON, UseHost("b", 0.0))

    # The copy runs on b; during the delay before the original stops, a's engine dies (its containers with it).
    # The stop fails, and is retried after the backoff, by when a's engine is back.
    clock.hooks = [lambda: kill_engine(lab.a), lambda: lab.a.dockerd.start()]
    outcome = act.execute(move, at=15.0)
    hosts.close()

    assert outcome.ok, outcome.detail
    copies = managed(lab.b)
    assert len(copies) == 1, [c.name for c in copies]  # one copy, not one per attempt
    assert managed(lab.a) == []  # the original does not run
    assert states(journal.path) == [BEGUN, DONE, BEGUN, RETRYING, DONE]
    assert journal.unfinished() == []


def test_a_manager_that_dies_mid_step_finishes_it_on_restart(lab, tmp_path):
    clean(lab)
    clock = VirtualClock()
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    act, hosts = actuator(lab, journal, clock)
    original = place(lab, act, at=0.0)
    move = MoveContainer(original, "web", "a", LISBON, UseHost("b", 0.0))

    def die() -> None:
        raise Crash()

    clock.hooks = [die]  # the copy runs on b; the manager dies before the original is stopped
    with pytest.raises(Crash):
        act.execute(move, at=15.0)
    journal.close()
    hosts.close()
    assert states(path)[-1] == BEGUN and len(managed(lab.a)) == len(managed(lab.b)) == 1

    restarted = Journal(path)  # a new manager process reads the journal
    assert [e.step["type"] for e in restarted.unfinished()] == ["MoveContainer"]
    act, hosts = actuator(lab, restarted, VirtualClock())
    outcomes = act.recover()
    hosts.close()

    assert [o.ok for o in outcomes] == [True]
    assert len(managed(lab.b)) == 1 and managed(lab.a) == []  # finished: the copy kept, the original stopped
    assert restarted.unfinished() == []
    assert states(path)[-2:] == [BEGUN, DONE]
    # Carried out once more (a replayed plan), the step is not done twice.
    again = act.execute(move, at=15.0)
    assert again.ok and again.detail.startswith("already done")
    assert len(managed(lab.b)) == 1


def test_ssh_refused_is_transient_and_ends_failed_when_it_lasts(lab, tmp_path):
    clean(lab)
    clock = VirtualClock()
    journal = Journal(tmp_path / "journal.jsonl")
    act, hosts = actuator(lab, journal, clock)
    lab.b.sshd.stop()  # b's SSH refuses connections for the whole step
    try:
        outcome = act.execute(PlaceReplica("web", LISBON, UseHost("b", 0.0)), at=30.0)
    finally:
        lab.b.sshd.start()
    hosts.close()

    assert not outcome.ok and outcome.transient
    assert "still failing after 4 attempts" in outcome.detail
    assert states(journal.path) == [BEGUN, RETRYING, RETRYING, RETRYING, FAILED]
    assert clock.now_s == 5.0 + 10.0 + 20.0  # the backoff, on the virtual clock
    assert managed(lab.b, running_only=False) == []


def test_ssh_refused_then_back_succeeds_once(lab, tmp_path):
    clean(lab)
    clock = VirtualClock()
    journal = Journal(tmp_path / "journal.jsonl")
    act, hosts = actuator(lab, journal, clock)
    lab.b.sshd.stop()
    clock.hooks = [lambda: lab.b.sshd.start()]  # back during the first backoff
    outcome = act.execute(PlaceReplica("web", LISBON, UseHost("b", 0.0)), at=45.0)
    hosts.close()
    assert outcome.ok, outcome.detail
    assert states(journal.path) == [BEGUN, RETRYING, DONE]
    assert len(managed(lab.b)) == 1

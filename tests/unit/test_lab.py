"""The lab's parts that need no daemon: process records, refusals, its state file, its site file and its policy."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from ruamel.yaml import YAML

from usm.actuators.dockerhosts import DockerAccess
from usm.lab import demo
from usm.lab.process import Process, ProcessRecord, find_binary, record_of
from usm.lab.state import LabError, LabFiles, LabState, Recorder, down, status
from usm.lab.up import up
from usm.manager.site import load_site
from usm.policytest import run_file

DEMO_POLICY_TEST = Path(demo.__file__).parent / "policy" / "tests" / "demo_test.yaml"


@pytest.fixture
def sleeper(tmp_path: Path):
    process = Process("sleeper", [find_binary("sleep"), "60"], tmp_path).start()
    yield process
    process.stop()


def test_a_record_finds_its_process_and_stops_it_by_pid(sleeper):
    record = sleeper.record
    assert record.pid == sleeper.pid and record.running()
    record.stop()
    assert not record.running()  # exited: a zombie until its parent collects it counts as stopped
    assert sleeper.process.wait(5) == -15  # it got SIGTERM


def test_a_record_of_a_reused_pid_neither_runs_nor_stops_the_new_process(sleeper):
    stale = ProcessRecord("old", sleeper.pid, sleeper.record.started - 100.0)  # same PID, another start time
    assert not stale.running()
    stale.stop()
    assert sleeper.process.poll() is None


def test_a_process_that_ignores_sigterm_is_killed_with_its_group(tmp_path: Path):
    stubborn = Process("stubborn", [find_binary("sh"), "-c", "trap '' TERM; sleep 60 & wait"], tmp_path)
    stubborn.start(ready=lambda: bool(psutil.Process(stubborn.pid).children()))
    child = record_of("sleep", psutil.Process(stubborn.pid).children()[0].pid)
    stubborn.record.stop(timeout=0.5)
    assert stubborn.process.wait(5) == -9
    assert not child.running()


def test_the_state_file_records_each_started_process_at_once(tmp_path: Path, sleeper):
    files = LabFiles(tmp_path)
    recorder = Recorder(files, LabState())
    recorder.started(sleeper, "lisbon/sleeper")
    loaded = LabState.load(files)
    assert [(p.name, p.pid, p.started) for p in loaded.processes] == [
        ("lisbon/sleeper", sleeper.pid, sleeper.record.started)]
    state, processes = status(tmp_path)
    assert state == loaded and processes == [(loaded.processes[0], True)]


def test_down_stops_the_recorded_processes_and_removes_the_directory(tmp_path: Path, sleeper):
    lab = tmp_path / "lab"
    lab.mkdir()
    Recorder(LabFiles(lab), LabState()).started(sleeper, "sleeper")
    stopped = down(lab)
    assert [p.pid for p in stopped.processes] == [sleeper.pid] and stopped.leftovers == ()
    assert sleeper.process.wait(5) == -15
    assert not lab.exists()


def test_no_lab_or_a_broken_state_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(LabError, match="there is no lab in .*usm lab up --dir"):
        status(tmp_path)
    with pytest.raises(LabError, match="there is no lab"):
        down(tmp_path)
    assert tmp_path.exists()  # nothing removed
    (tmp_path / "lab.json").write_text('{"hosts": []}')
    with pytest.raises(LabError, match="is not a lab state file"):
        status(tmp_path)


@pytest.mark.parametrize("count, cores, message", [
    (0, None, "between 1 and 8"), (9, None, "between 1 and 8"), (2, 0.0, "positive number of cores")])
def test_up_refuses_bad_sizes_before_starting_anything(tmp_path: Path, count, cores, message):
    with pytest.raises(LabError, match=message):
        up(tmp_path / "lab", count, cores)
    assert not (tmp_path / "lab").exists()


def test_up_refuses_a_directory_that_is_not_empty(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LabError, match="is not empty: choose an empty or new directory"):
        up(tmp_path, 1)
    (tmp_path / "lab.json").write_text("{}")
    with pytest.raises(LabError, match="a lab is there: `usm lab down"):
        up(tmp_path, 1)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_site_document_is_a_site_usm_run_accepts(tmp_path: Path):
    hosts = [demo.LabHost(place, f"ssh://root@127.0.0.1:{2200 + i}", f"127.0.0.1:{9100 + i}")
             for i, place in enumerate(demo.PLACES[:3])]
    capacity = demo.Capacity(cpu=4.0, ram=8 * 2**30, disk=100 * 2**30)
    document = demo.site_document(hosts, capacity, "http://127.0.0.1:9090", "http://127.0.0.1:1919")
    path = tmp_path / "site.yaml"
    with path.open("w") as file:
        YAML(typ="rt").dump(document, file)
    site = load_site(path, DockerAccess(known_hosts=tmp_path / "known_hosts"))
    assert [(h.name, h.location, h.docker, h.node_exporter) for h in site.hosts] == [
        (h.place.name, h.place.location, h.docker, h.node_exporter) for h in hosts]
    assert {(h.total.cpu, h.total.ram, h.total.disk) for h in site.hosts} == {(4.0, 8 * 2**30, 100 * 2**30)}
    assert {s.name: (s.image, s.command, s.max_replicas) for s in site.services} == {
        s.name: (demo.IMAGE, s.command, s.max_replicas) for s in demo.SERVICES}
    assert site.apps[0].services == tuple(s.name for s in demo.SERVICES)
    assert (site.prometheus, site.location_monitors) == ("http://127.0.0.1:9090", ("http://127.0.0.1:1919",))


def test_the_demo_app_starts_spread_over_the_hosts():
    hosts = [demo.LabHost(place, "", "") for place in demo.PLACES[:2]]
    placed = demo.initial_placement(hosts)
    assert [(s.name, h.place.name) for s, h in placed] == [("web", "lisbon"), ("worker", "frankfurt")]
    alone = demo.initial_placement(hosts[:1])
    assert {h.place.name for _, h in alone} == {"lisbon"}


def test_the_demo_policy_replicates_the_busy_worker_and_leaves_web_alone():
    result = run_file(str(DEMO_POLICY_TEST))
    assert result.invalid is None
    assert len(result.results) == 5 and [r.name for r in result.results if not r.passed] == []
    assert set(result.matched) == set(result.rules) == {"replicate-busy-service"}


def test_up_refuses_a_directory_too_long_for_the_engines_sockets(tmp_path: Path):
    deep = tmp_path / ("d" * 60) / "lab"
    with pytest.raises(LabError, match="too long a path: the engines' sockets .* must fit in 108 bytes"):
        up(deep, 2)
    assert not deep.exists()

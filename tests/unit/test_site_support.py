"""The site file's support: section, and what live mode makes of it: recording components in a dry run, local
processes (on recorded ports) in a live one, the worker started only when a store is named."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from usm.actuators.dockerhosts import DockerAccess
from usm.engine.yamldoc import InvalidSource
from usm.manager.regional import LocalComponent, PortBook, support_lifecycle, worker_launch
from usm.manager.site import load_site
from usm.manager.sitesupport import SiteSupport
from usm.manager.support import RecordingComponent
from usm.manager.wiring import DataFiles, live_runner

ROOT = Path(__file__).resolve().parents[2]
HOSTS = """\
hosts:
  - {name: lisbon, latitude: 38.72, longitude: -9.14, docker: "unix:///nonexistent/docker.sock", cpu: 4, ram: 8Gi,
     disk: 100Gi}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "site.yaml"
    path.write_text(HOSTS + text)
    return load_site(path, DockerAccess(known_hosts=tmp_path / "known_hosts"))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidSource) as refused:
        load(tmp_path, text)
    return [str(p) for p in refused.value.problems]


def test_without_the_section_there_are_no_support_components(tmp_path):
    assert load(tmp_path, "").support is None


def test_the_section_with_its_defaults_and_every_key(tmp_path):
    assert load(tmp_path, "support: {}\n").support == SiteSupport()
    assert SiteSupport().stop_delay == 300.0 and SiteSupport().components == ("etcd", "load-balancer", "worker")
    site = load(tmp_path, "support:\n  components: [worker, etcd]\n  stop_delay: 30s\n  base_port: 41000\n"
                          "  state_dir: /var/lib/usm/support\n  worker_store: postgresql://usm@127.0.0.1/usm\n")
    assert site.support == SiteSupport(("etcd", "worker"), 30.0, 41000, "/var/lib/usm/support",
                                       "postgresql://usm@127.0.0.1/usm")


@pytest.mark.parametrize(("text", "message"), [
    ("support: {stop_delay: soon}", "'soon' is not a duration"),
    ("support: {stop_delay: -5}", "the stop delay cannot be negative (-5)"),
    ("support: {components: [etcd, etcd]}", "the component 'etcd' is listed twice"),
    ("support: {components: [kafka]}", "support.components"),
    ("support: {base_port: 80}", "support.base_port"),
    ("support: {worker_store: 'mysql://db/usm'}", "support.worker_store"),
])
def test_bad_values_are_refused_with_what_is_wrong(tmp_path, text, message):
    found = problems(tmp_path, text + "\n")
    assert len(found) == 1 and message in found[0], found


def test_a_dry_run_decides_the_components_without_starting_any(tmp_path):
    site = load(tmp_path, "support: {stop_delay: 1m}\n")
    with ExitStack() as stack:
        runner = live_runner(site, ROOT / "policies", DataFiles(tmp_path / "data"), dry_run=True, stack=stack,
                             access=DockerAccess(known_hosts=tmp_path / "known_hosts"))
        support = runner.loop.support
    assert support is not None and support.state.stop_delay_s == 60.0
    assert all(isinstance(c, RecordingComponent) for c in support.components)
    outcomes = support.step({"europe": 1}, 0.0)
    assert [o.ok for o in outcomes] == [True]
    assert [c.calls for c in support.components] == [[("start", "europe")]] * 3
    assert not (tmp_path / "data" / "support").exists()


def test_a_live_run_gets_local_processes_and_a_worker_only_with_a_store(tmp_path):
    recorded = support_lifecycle(SiteSupport(), tmp_path, dry_run=False).components
    assert [type(c) for c in recorded] == [LocalComponent, LocalComponent, RecordingComponent]
    stored = support_lifecycle(SiteSupport(worker_store="postgresql://usm@127.0.0.1/usm"), tmp_path, dry_run=False)
    assert [type(c) for c in stored.components] == [LocalComponent] * 3
    launch = worker_launch("postgresql://usm@127.0.0.1/usm")("europe", (), tmp_path / "w")
    assert launch.argv[1:] == ["worker", "--region", "europe", "--live", "--db", "postgresql://usm@127.0.0.1/usm",
                               "--data", str(tmp_path / "w")]


def test_ports_are_allocated_once_per_component_and_region_and_kept(tmp_path):
    book = PortBook(tmp_path / "ports.json", 41000)
    europe = book.ports("etcd", "europe", 2)
    asia = book.ports("etcd", "asia", 2)
    assert len(set(europe + asia)) == 4 and min(europe + asia) >= 41000
    again = PortBook(tmp_path / "ports.json", 41000)
    assert again.ports("etcd", "europe", 2) == europe and again.ports("etcd", "asia", 2) == asia

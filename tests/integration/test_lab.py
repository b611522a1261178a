"""usm lab: two pseudo-hosts on this machine, managed by usm run in a dry run and live, then taken down.

The commands are the README's own ("Run usm against a local lab"), run by bash from a fresh directory, with the
test's options appended (click keeps the last value of an option): its policy replicates a busy service at once
(period 2s, streak 1), and a few cycles replace Ctrl-C. What happened is seen behind usm's back, through each
engine's own socket with the Docker SDK, and through /proc (psutil) for the processes.

The tests share one lab and run in file order; the last one takes it down.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.services import need
from tests.services.moto import moto_server_binary
from usm.actuators.docker import LABEL_MANAGED, LABEL_NAME, LABEL_SERVICE
from usm.collectors.history import History
from usm.lab.dockerhost import short_tempdir
from usm.lab.process import ProcessRecord
from usm.lab.state import leftovers

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Run usm against a local lab"

# Every pseudo-host reports this machine's load, which other work may keep near 100 %; declaring more cores than
# there are keeps a replica's room independent of that work (the decisions under test do not depend on it).
CORES = 16

POLICY = {
    "00-settings.yaml": "settings:\n  period: 2s\n  streak: {replicate: 1}\n",
    "services.yaml": "rules:\n  - name: replicate-busy\n    scope: service\n    target: \"*\"\n"
                     "    when: cpu > 0.02\n    then: replicate\n",
}
TEST_OPTIONS = "--cycles 3 --metrics-port 0"


def readme_commands() -> list[str]:
    """The commands of the README's lab section (its first code block), without their comments."""
    section = (ROOT / "README.md").read_text().split(SECTION, 1)[1]
    block = section.split("```", 2)[1]
    lines = (line.split("#", 1)[0].strip() for line in block.splitlines()[1:])
    return [line for line in lines if line]


def readme(prefix: str) -> str:
    """The README command that starts with ``prefix`` (exactly one)."""
    found = [c for c in readme_commands() if c.startswith(prefix)]
    assert len(found) == 1, f"the README's lab section should have one command starting with {prefix!r}: {found}"
    return found[0]


@dataclass
class Lab:
    root: Path  # where the commands run: the lab is root/lab, as in the README
    policy: Path

    @property
    def directory(self) -> Path:
        return self.root / "lab"

    def state(self) -> dict:
        return json.loads((self.directory / "lab.json").read_text())

    def shell(self, script: str, timeout: float = 240) -> subprocess.CompletedProcess:
        """Run ``script`` with bash in the lab's parent directory, this venv's usm first on PATH."""
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=self.root, env=env, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def usm_run(self, prefix: str) -> subprocess.CompletedProcess:
        """A README `usm run` command, after sourcing the env file as the README does, with the test's policy."""
        done = self.shell(f"{readme('. ')}\n{readme(prefix)} --policy {self.policy} {TEST_OPTIONS}")
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    def containers(self) -> dict[str, tuple[str, str, str]]:
        """Every container of every lab engine, as the engine itself reports it: name -> (host, service, status)."""
        found = {}
        for host in self.state()["hosts"]:
            client = docker.DockerClient(base_url=host["engine"], timeout=30)
            try:
                for c in client.containers.list(all=True):
                    assert c.labels.get(LABEL_MANAGED) == "true", f"{c.name} on {host['name']} is not usm's"
                    found[c.labels[LABEL_NAME]] = (host["name"], c.labels[LABEL_SERVICE], c.status)
            finally:
                client.close()
        return found


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def lab():
    for binary in ("dockerd", "docker", "sshd", "busybox", "prometheus", "prometheus-node-exporter"):
        need(binary)
    moto_server_binary()
    root = short_tempdir("usm-lab-")  # dockerd's socket paths must stay short
    policy = root / "policy"
    policy.mkdir()
    for name, text in POLICY.items():
        (policy / name).write_text(text)
    lab = Lab(root, policy)
    try:
        done = lab.shell(f"{readme('usm lab up')} --cores {CORES}")
        assert done.returncode == 0, done.stderr[-3000:]
        yield lab
    finally:
        if (lab.directory / "lab.json").exists():
            lab.shell(readme("usm lab down"))
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class DryRun:
    before: dict
    after: dict
    decisions: list[dict]
    samples: object  # polars DataFrame of the history


@pytest.fixture(scope="module")
def dry_run(lab: Lab) -> DryRun:
    before = lab.containers()
    lab.usm_run("usm run --dry-run")
    data = lab.directory / "dry-run"
    with History(str(data / "history.duckdb"), read_only=True) as history:
        samples = history.samples(float("-inf"), float("inf"))
    return DryRun(before, lab.containers(), records(data / "decisions.jsonl"), samples)


def test_the_readme_lab_commands_are_usm_commands_and_files_of_a_lab():
    from click.testing import CliRunner

    from usm.lab.state import LabFiles
    from usm.manager.cli import main

    commands = readme_commands()
    for command in commands:
        words = shlex.split(command)
        if words[0] == "usm":  # --help after the rest: click still refuses an unknown command or option
            answer = CliRunner().invoke(main, [*words[1:], "--help"])
            assert answer.exit_code == 0, f"{command}: {answer.output}"
    files = LabFiles(Path("lab"))
    mentioned = {word for command in commands for word in shlex.split(command) if word.startswith("lab/")}
    assert mentioned >= {str(files.env), str(files.site), str(files.policy)}


def test_the_lab_runs_the_demo_app_on_its_hosts(lab):
    containers = lab.containers()
    assert sorted(service for _, service, _ in containers.values()) == ["web", "worker"]
    assert {status for _, _, status in containers.values()} == {"running"}
    assert {host for host, _, _ in containers.values()} == {h["name"] for h in lab.state()["hosts"]}


def test_a_dry_run_decides_to_replicate_but_touches_nothing(dry_run):
    planned = [r for r in dry_run.decisions if r["type"] == "step" and r["step"]["type"] == "PlaceReplica"]
    assert planned, "the dry run should have planned a replica of the busy worker"
    assert {r["step"]["service"] for r in planned} == {"worker"}
    assert all(r["ok"] and r["detail"] == "dry run: not carried out" for r in planned)
    assert dry_run.after == dry_run.before


def test_a_dry_run_records_host_metrics_and_container_stats_in_its_history(lab, dry_run):
    fields = {}
    for entity, field in dry_run.samples.select("entity", "field").unique().iter_rows():
        fields.setdefault(entity, set()).add(field)
    for host in lab.state()["hosts"]:  # from Prometheus, which scrapes the host's node_exporter
        assert {"cpu", "cpu_percent", "ram", "ram_percent", "filesystem_available"} <= fields.get(host["name"], set())
    for container in dry_run.before:  # from each engine's stats, over SSH
        assert {"cpu", "ram"} <= fields.get(container, set()), container
    busy = dry_run.samples.filter(dry_run.samples["field"] == "cpu")
    worker = next(name for name, (_, service, _) in dry_run.before.items() if service == "worker")
    assert busy.filter(busy["entity"] == worker)["value"].max() > 0.02


def test_a_live_run_replicates_the_busy_service_on_a_lab_host(lab):
    before = lab.containers()
    lab.usm_run("usm run --live")
    after = lab.containers()
    new = {name: where for name, where in after.items() if name not in before}
    assert new, "the live run should have started a replica"
    assert {service for _, service, _ in new.values()} == {"worker"}
    assert {status for _, _, status in new.values()} == {"running"}
    assert {host for host, _, _ in new.values()} <= {h["name"] for h in lab.state()["hosts"]}
    assert {name: where for name, where in after.items() if name in before} == before  # nothing else touched
    started = [r for r in records(lab.directory / "live" / "decisions.jsonl")
               if r["type"] == "step" and r["step"]["type"] == "PlaceReplica"]
    assert len(started) == len(new) and all(r["ok"] for r in started)


def test_lab_down_stops_every_process_by_pid_and_leaves_nothing_behind(lab):
    processes = [ProcessRecord.from_dict(p) for p in lab.state()["processes"]]
    assert len(processes) == 2 * 3 + 3  # per host dockerd, sshd, node_exporter; Prometheus, monitor, EC2 API
    status = lab.shell(readme("usm lab status"))
    assert status.returncode == 0, status.stdout + status.stderr  # all running
    done = lab.shell(readme("usm lab down"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "left behind" not in done.stdout, done.stdout  # every engine took its containerd and shims with it
    assert [p.name for p in processes if p.running()] == []
    assert leftovers(lab.directory) == []
    assert not lab.directory.exists()
    with open("/proc/mounts") as mounts:
        assert not [line for line in mounts if str(lab.directory) in line]

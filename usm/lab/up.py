"""The local lab: pseudo-hosts on this machine that ``usm run --live`` manages.

``up`` starts, all on 127.0.0.1 and all inside one directory: per pseudo-host a private dockerd
(no bridge, no iptables), an sshd whose sessions reach that dockerd (its own host key, usm's
client key authorized) and a node_exporter; one Prometheus scraping every node_exporter; one
``usm location-monitor``; one ``moto_server`` (the EC2 API). It then writes what ``usm run``
needs: the known_hosts file with each sshd's host key (read from the server's own key file, as an
operator would record it after checking its fingerprint), the client key, an env file exporting
``USM_KNOWN_HOSTS`` / ``USM_SSH_IDENTITY`` (and the EC2 endpoint), the site file, and a demo
policy; imports a busybox image into every engine and starts one replica of each demo service
through usm's own Docker actuator, over SSH, so a lab that came up is one usm can reach.

Every process is recorded in ``lab.json`` (``usm.lab.state``) as soon as it runs, so that ``usm lab
down`` finds it even after a failed ``up``. Processes are started in a session of their own and
survive the ``usm lab up`` that started them.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shlex
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import paramiko
import psutil
from ruamel.yaml import YAML

from usm.actuators.docker import ContainerSettings, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts
from usm.actuators.known_hosts import KnownHosts
from usm.lab.demo import IMAGE, PLACES, Capacity, LabHost, initial_placement, site_document
from usm.lab.dockerd import MAX_SOCKET_PATH, busybox_image, unmount_under
from usm.lab.dockerhost import DockerHost, client_key
from usm.lab.monitor import LocationMonitor
from usm.lab.moto import MotoServer
from usm.lab.process import Process, side_by_side
from usm.lab.prometheus import NodeExporter, Prometheus
from usm.lab.state import LabError, LabFiles, LabState, Recorder, stop_all
from usm.manager.site import load_site
from usm.manager.wiring import container_specs

SCRAPE_INTERVAL = "2s"
Announce = Callable[[str], None]


def machine_capacity() -> Capacity:
    """This machine's cores, memory and root filesystem: what every pseudo-host's node exporter reports."""
    return Capacity(float(os.cpu_count() or 1), psutil.virtual_memory().total, psutil.disk_usage("/").total)


def up(directory: Path, count: int, cores: float | None = None, announce: Announce = lambda _: None) -> LabState:
    """Start a lab of ``count`` pseudo-hosts in ``directory`` (absent or empty); see the module docstring.

    Each pseudo-host declares this machine's memory and disk, and ``cores`` cores (default: this machine's). They
    all report this machine's load, so on a machine kept busy by other work no host has room for a replica;
    declaring more cores than there are keeps the lab's placements independent of that work.
    """
    if cores is not None and not cores > 0:
        raise LabError(f"--cores must be a positive number of cores, not {cores}")
    if not 1 <= count <= len(PLACES):
        raise LabError(f"--hosts must be between 1 and {len(PLACES)} (one per place: "
                       f"{', '.join(p.name for p in PLACES)}), not {count}")
    files = LabFiles(Path(directory).absolute())
    if files.directory.exists() and any(files.directory.iterdir()):
        hint = (f"a lab is there: `usm lab down --dir {files.directory}` first" if files.state.exists()
                else "choose an empty or new directory")
        raise LabError(f"{files.directory} is not empty: {hint}")
    longest = max((files.directory / p.name / "d" / "x" for p in PLACES[:count]), key=lambda path: len(str(path)))
    if len(str(longest)) > MAX_SOCKET_PATH:
        raise LabError(f"{files.directory} is too long a path: the engines' sockets under it (e.g. in {longest}) must "
                       "fit in 108 bytes; choose a shorter directory, e.g. under /tmp")
    if os.geteuid() != 0:
        raise LabError("the lab runs its own dockerd instances, which need root: run `usm lab up` as root")
    files.directory.mkdir(parents=True, exist_ok=True)
    state = LabState()
    recorder = Recorder(files, state)
    recorder.save()
    try:
        _bring_up(files, recorder, count, cores, announce)
    except BaseException as failure:  # stopped on purpose too (Ctrl-C): nothing is left running
        announce("stopping what was started")
        stop_all(state.processes)
        unmount_under(files.directory)
        if isinstance(failure, Exception):
            raise LabError(f"the lab did not come up: {failure}\nIts logs are in {files.directory}; "
                           f"`usm lab down --dir {files.directory}` removes it.") from failure
        raise
    return state


def _bring_up(files: LabFiles, recorder: Recorder, count: int, cores: float | None, announce: Announce) -> None:
    state, root = recorder.state, files.directory
    identity, public = client_key(root)
    places = PLACES[:count]
    engines = {p.name: DockerHost(root / p.name, public) for p in places}
    exporters = {p.name: NodeExporter(root / p.name / "n") for p in places}
    prometheus = Prometheus(root / "prometheus", [e.instance for e in exporters.values()], SCRAPE_INTERVAL)
    monitor = LocationMonitor(root / "location-monitor")
    moto = MotoServer(root / "moto")

    def start(process: Process, name: str, then: Callable[[], object] = lambda: None) -> Callable[[], None]:
        def task() -> None:
            process.start()
            recorder.started(process, name)
            then()
        return task

    announce(f"starting {count} pseudo-host{'s' if count != 1 else ''} ({', '.join(p.name for p in places)}), "
             "Prometheus, the location monitor and the EC2 API")
    tasks = []
    for name, engine in engines.items():
        tasks.append(start(engine.dockerd, f"{name}/dockerd", partial(_import_image, engine)))
        tasks.append(start(engine.sshd, f"{name}/sshd"))
        tasks.append(start(exporters[name], f"{name}/node_exporter"))
    side_by_side([*tasks, start(prometheus, "prometheus"), start(monitor, "location-monitor"), start(moto, "moto")])

    known = KnownHosts(files.known_hosts)
    for engine in engines.values():
        known.record(engine.sshd.known_as, paramiko.PKey.from_path(engine.sshd.host_key))
    user = getpass.getuser()
    hosts = [LabHost(p, f"ssh://{user}@127.0.0.1:{engines[p.name].sshd.port}", exporters[p.name].instance)
             for p in places]
    state.hosts = [{"name": h.place.name, "docker": h.docker, "engine": engines[h.place.name].dockerd.url,
                    "node_exporter": h.node_exporter} for h in hosts]
    state.urls = {"prometheus": prometheus.url, "location_monitor": monitor.url, "ec2": moto.url}
    recorder.save()
    capacity = machine_capacity()
    if cores is not None:
        capacity = replace(capacity, cpu=float(cores))
    _write_site(files.site, site_document(hosts, capacity, prometheus.url, monitor.url))
    _write_env(files, identity, moto.url)
    _copy_policy(files.policy)
    announce("starting the demo app through usm's Docker actuator, over SSH; waiting for Prometheus' first scrapes")
    side_by_side([lambda: _start_demo(files, identity, hosts),
          *(lambda e=e: prometheus.wait_up(e.instance) for e in exporters.values())])


def _import_image(engine: DockerHost) -> None:
    repository, tag = IMAGE.split(":")
    busybox_image(engine.engine(), repository, tag)


def _write_site(path: Path, document: dict[str, Any]) -> None:
    yaml = YAML(typ="rt")  # keeps the document's key order
    with path.open("w") as file:
        file.write("# A local lab's site (usm lab up): its pseudo-hosts, Prometheus, location monitor and demo app.\n")
        yaml.dump(document, file)


def _write_env(files: LabFiles, identity: Path, ec2_url: str) -> None:
    """The env file. The EC2 credentials are random placeholders made for this lab: moto accepts any, and real
    ones must never reach it."""
    values = {
        "USM_KNOWN_HOSTS": str(files.known_hosts), "USM_SSH_IDENTITY": str(identity),
        "AWS_ENDPOINT_URL_EC2": ec2_url, "AWS_ACCESS_KEY_ID": f"LAB{secrets.token_hex(8).upper()}",
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }
    lines = [f"# The usm lab in {files.directory}: `. {shlex.quote(str(files.env))}` before `usm run`.",
             *(f"export {key}={shlex.quote(value)}" for key, value in values.items())]
    descriptor = os.open(files.env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")


def _copy_policy(target: Path) -> None:
    target.mkdir()
    for item in resources.files("usm.lab").joinpath("policy").iterdir():
        if item.name.endswith(".yaml"):
            (target / item.name).write_text(item.read_text())


def _start_demo(files: LabFiles, identity: Path, hosts: list[LabHost]) -> None:
    access = DockerAccess(known_hosts=files.known_hosts, identity=identity)
    site = load_site(files.site, access)  # the site file must be one usm run accepts
    specs = container_specs(site)
    with DockerHosts({h.name: h.docker for h in site.hosts}, access) as clients:
        containers = DockerContainers(clients, ContainerSettings(pull=False))
        for service, host in initial_placement(hosts):
            containers.launch(host.place.name, specs[service.name])


__all__ = ["machine_capacity", "up"]

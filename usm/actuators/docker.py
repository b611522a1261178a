"""Containers on hosts through their Docker APIs: launch, replicate, migrate and stop (original §3.6, §3.7).

Every container usm starts carries the labels ``usm.managed=true``, ``usm.service``, ``usm.app`` and
``usm.container`` (its usm name, also its Docker name, so that the engine itself refuses a second container of that
name). usm finds its containers by these labels, never by guessing from names or images, and refuses to touch a
container without ``usm.managed=true``: it was not started by usm.

Fixes against the original: a replica copies the source container's command as it is (the original rebuilt it
from the service's template and was off by one when a registration address had been prepended, §13 item 17);
launching a name that exists reports that container instead of starting a second one; a migration stops the
original only once the new container runs; waiting (for a container to run, the delay before stopping the
original) goes through an injected :class:`~usm.actuators.clock.Clock`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import docker
import docker.errors
from docker.models.containers import Container

from usm.actuators.clock import WALL_CLOCK, Clock
from usm.actuators.dockerhosts import DockerClients

LABEL_MANAGED = "usm.managed"
LABEL_SERVICE = "usm.service"
LABEL_APP = "usm.app"
LABEL_NAME = "usm.container"  # the usm container name (the Docker stats collector reads it too)
LABEL_LINEAGE = "usm.lineage"  # the failed container a restored one replaces (recovery counts failures by it)

NETWORK_MODES = ("host", "none")  # services are reached on their host's address; no private bridge networks
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


class ContainerError(Exception):
    """A container action could not be carried out; the message says why."""


class UnmanagedContainer(ContainerError):
    """The container exists but usm did not start it (no ``usm.managed=true`` label): usm leaves it alone."""


class ContainerNotFound(ContainerError):
    """No container of that name on that host."""


@dataclass(frozen=True)
class ContainerSpec:
    """What to run for one service: the image and how to start it."""

    service: str
    image: str
    app: str = ""
    command: tuple[str, ...] = ()  # empty: the image's own command
    environment: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "host"
    memory_bytes: int | None = None  # a hard memory limit, if any

    def __post_init__(self) -> None:
        if self.network_mode not in NETWORK_MODES:
            raise ContainerError(f"service {self.service}: network mode {self.network_mode!r} is not one usm uses; "
                                 f"choose one of {', '.join(NETWORK_MODES)}")
        if not self.image:
            raise ContainerError(f"service {self.service}: no image to run")


@dataclass(frozen=True)
class ManagedContainer:
    """A container usm manages, as its host's engine reports it."""

    name: str  # the usm name (= the Docker name)
    service: str
    app: str
    host: str
    id: str
    status: str  # Docker's: created, running, paused, restarting, exited, dead
    lineage: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True)
class Launched:
    container: ManagedContainer
    created: bool  # False: a container of that name was already there and is reported, not started twice


@dataclass(frozen=True)
class Migrated:
    container: ManagedContainer  # the new one, running
    created: bool
    stopped: bool  # False: the original was already gone


@dataclass(frozen=True)
class ContainerSettings:
    """How long the actuator waits, and for what. Defaults follow the original where it had one."""

    delay_before_stop: float = 30.0  # migration: from the new container running to stopping the original (s)
    run_timeout: float = 60.0  # how long a started container may take to be running (s)
    poll: float = 0.25  # between two looks at a starting container (s)
    stop_grace: int = 10  # seconds between SIGTERM and SIGKILL when a container stops
    pull: bool = True  # pull an image the host does not have (off: the image must be loaded there already)


def labels_of(spec: ContainerSpec, name: str, lineage: str = "") -> dict[str, str]:
    """The labels that make a container usm's."""
    labels = {LABEL_MANAGED: "true", LABEL_SERVICE: spec.service, LABEL_APP: spec.app, LABEL_NAME: name}
    if lineage:
        labels[LABEL_LINEAGE] = lineage
    return labels


def is_managed(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(LABEL_MANAGED) == "true"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ContainerError(f"container name {name!r} is not usable: it must start with a letter or digit and "
                             "hold only letters, digits, '_', '.' and '-' (at most 128 characters)")
    return name


def new_name(service: str) -> str:
    """A fresh usm name for a container of ``service``."""
    return check_name(f"{service}-{secrets.token_hex(5)}")


def managed_container(container: Container, host: str) -> ManagedContainer:
    labels = container.labels
    return ManagedContainer(name=labels.get(LABEL_NAME, container.name), service=labels.get(LABEL_SERVICE, ""),
                            app=labels.get(LABEL_APP, ""), host=host, id=container.id, status=container.status,
                            lineage=labels.get(LABEL_LINEAGE, ""))


def spec_of(container: Container) -> ContainerSpec:
    """How ``container`` was started, read back from its engine: what a replica of it runs."""
    config, host_config = container.attrs["Config"], container.attrs["HostConfig"]
    environment = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    labels = container.labels
    return ContainerSpec(service=labels.get(LABEL_SERVICE, ""), image=config["Image"], app=labels.get(LABEL_APP, ""),
                         command=tuple(config.get("Cmd") or ()), environment=environment,
                         network_mode=host_config.get("NetworkMode") or "host",
                         memory_bytes=host_config.get("Memory") or None)


class DockerContainers:
    """Launch, replicate, migrate and stop usm's containers on the hosts ``hosts`` reaches.

    Usable on its own; :class:`usm.actuators.containersteps.ContainerSteps` fits it to placement's plan steps.
    """

    def __init__(self, hosts: DockerClients, settings: ContainerSettings = ContainerSettings(),
                 clock: Clock = WALL_CLOCK):
        self.hosts = hosts
        self.settings = settings
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------------------------

    def list(self, host: str, service: str | None = None) -> tuple[ManagedContainer, ...]:
        """usm's containers on ``host`` (all states), found by label; of one service if ``service`` is given."""
        wanted = [f"{LABEL_MANAGED}=true"] + ([f"{LABEL_SERVICE}={service}"] if service else [])
        found = self.hosts.client(host).containers.list(all=True, filters={"label": wanted})
        return tuple(sorted((managed_container(c, host) for c in found), key=lambda c: c.name))

    def find(self, host: str, name: str) -> ManagedContainer | None:
        """usm's container ``name`` on ``host``; ``None`` if there is none. Raises :class:`UnmanagedContainer` if
        the container of that name is not usm's."""
        container = self._get(host, name)
        return None if container is None else managed_container(container, host)

    def _get(self, host: str, name: str) -> Container | None:
        client = self.hosts.client(host)
        found = client.containers.list(all=True, filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_NAME}={name}"]})
        if found:
            return found[0]
        try:
            other = client.containers.get(name)  # by Docker name (or id): only to refuse what is not usm's
        except docker.errors.NotFound:
            return None
        if is_managed(other.labels):
            return None  # usm's, but not by that usm name (an id prefix matched): not the one asked for
        raise UnmanagedContainer(f"container {name} on host {host} was not started by usm (it has no "
                                 f"{LABEL_MANAGED}=true label): usm does not touch it")

    # -- acting ----------------------------------------------------------------------------------------------

    def launch(self, host: str, spec: ContainerSpec, name: str | None = None, lineage: str = "") -> Launched:
        """Start a container of ``spec`` named ``name`` on ``host`` and wait until it runs.

        Idempotent: if usm's container ``name`` is already on ``host`` it is reported (and started again if it had
        stopped), not duplicated.
        """
        name = check_name(name or new_name(spec.service))
        existing = self._get(host, name)
        if existing is not None:
            return Launched(self._running(host, existing), created=False)
        client = self.hosts.client(host)
        self._ensure_image(client, host, spec.image)
        try:
            container = client.containers.create(
                spec.image, list(spec.command) or None, name=name, labels=labels_of(spec, name, lineage),
                environment=dict(spec.environment), network_mode=spec.network_mode, mem_limit=spec.memory_bytes,
                detach=True)
        except docker.errors.APIError as error:
            if error.status_code == 409:  # created meanwhile by someone else: report it if it is usm's
                raced = self._get(host, name)
                if raced is not None:
                    return Launched(self._running(host, raced), created=False)
            raise ContainerError(f"cannot create {name} on host {host}: {error.explanation or error}") from None
        try:
            return Launched(self._running(host, container), created=True)
        except ContainerError:
            container.remove(force=True)  # ours, never ran: nothing of value is lost
            raise

    def replicate(self, name: str, source: str, target: str, new: str | None = None) -> Launched:
        """Start a copy of usm's container ``name`` (on ``source``) on ``target``, named ``new``."""
        original = self._require(source, name)
        spec = spec_of(original)
        return self.launch(target, spec, new or new_name(spec.service))

    def migrate(self, name: str, source: str, target: str, new: str | None = None) -> Migrated:
        """Move ``name`` from ``source`` to ``target``: start the copy, wait until it runs, wait
        ``delay_before_stop``, then stop the original. If the copy does not run, the original is left as it is."""
        original = self._get(source, name)
        if original is None:  # a repeated migration whose original is already gone: report the copy
            copy = self._get(target, new) if new else None
            if copy is None:
                raise ContainerNotFound(f"no container {name} on host {source} to migrate")
            return Migrated(self._running(target, copy), created=False, stopped=False)
        launched = self.launch(target, spec_of(original), new or new_name(original.labels[LABEL_SERVICE]))
        self.clock.sleep(self.settings.delay_before_stop)
        stopped = self.stop(source, name)
        return Migrated(launched.container, launched.created, stopped)

    def stop(self, host: str, name: str) -> bool:
        """Stop and remove usm's container ``name`` on ``host``; ``False`` if there was none (already gone)."""
        container = self._get(host, name)
        if container is None:
            return False
        try:
            container.stop(timeout=self.settings.stop_grace)
            container.remove(force=True)
        except docker.errors.NotFound:
            return False
        return True

    # -- helpers ---------------------------------------------------------------------------------------------

    def _require(self, host: str, name: str) -> Container:
        container = self._get(host, name)
        if container is None:
            raise ContainerNotFound(f"no container {name} on host {host}")
        return container

    def _ensure_image(self, client: docker.DockerClient, host: str, image: str) -> None:
        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        if not self.settings.pull:
            raise ContainerError(f"image {image} is not on host {host} and pulling is off: load it there "
                                 "(docker load / docker import) or turn pulling on")
        try:
            client.images.pull(image)
        except docker.errors.APIError as error:
            raise ContainerError(f"image {image} is not on host {host} and pulling it failed: "
                                 f"{error.explanation or error}") from None

    def _running(self, host: str, container: Container) -> ManagedContainer:
        """Start ``container`` if it is not running, and wait (on the clock) until it runs."""
        container.reload()
        if container.status in ("created", "exited"):
            try:
                container.start()
            except docker.errors.APIError as error:
                raise ContainerError(f"cannot start container {container.name} on host {host}: "
                                     f"{error.explanation or error}") from None
        deadline = self.clock.now() + self.settings.run_timeout
        while True:
            container.reload()
            state = container.attrs["State"]
            if state.get("Running") and not state.get("Restarting"):
                return managed_container(container, host)
            if state.get("Status") in ("exited", "dead"):
                logs = container.logs(tail=5).decode(errors="replace").strip()
                raise ContainerError(f"container {container.name} on host {host} exited with code "
                                     f"{state.get('ExitCode')} instead of running" + (f"; its log ends: {logs}"
                                                                                       if logs else ""))
            if self.clock.now() >= deadline:
                raise ContainerError(f"container {container.name} on host {host} was not running after "
                                     f"{self.settings.run_timeout:g} s (state {state.get('Status')})")
            self.clock.sleep(self.settings.poll)


__all__ = [
    "LABEL_APP",
    "LABEL_LINEAGE",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_SERVICE",
    "ContainerError",
    "ContainerNotFound",
    "ContainerSettings",
    "ContainerSpec",
    "DockerContainers",
    "Launched",
    "ManagedContainer",
    "Migrated",
    "UnmanagedContainer",
    "check_name",
    "is_managed",
    "labels_of",
    "managed_container",
    "new_name",
    "spec_of",
]

"""The service registry: which instances of each service run where, kept in etcd under leases.

An instance is one key, ``/usm/services/<service>/<instance id>``, whose value is the instance as JSON (endpoint,
coordinates, region). The key is bound to a lease that its registration keeps alive; when the instance (or its
sidecar, or its host) dies, the keep-alives stop and etcd deletes the key once the lease expires. Nobody has to
notice the death and clean up: the original's Eureka registrations relied on heartbeats and eviction in the same
way, but on a server per region that did not peer (§13 item 21); here there is one etcd cluster with a member per
region, so every region sees every instance.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from usm.registration.etcd import Etcd, EtcdError, KeyValue, LeaseNotFound, WatchEvent
from usm.registration.instance import PREFIX, Instance, check_service

log = logging.getLogger(__name__)

DEFAULT_TTL = 10


def parse_entry(kv: KeyValue | WatchEvent) -> Instance | None:
    """The instance a registry key holds; None (and a warning) for a value that is not one, so a stray key
    written by hand cannot break every look-up."""
    try:
        return Instance.from_json(json.loads(kv.value or b""))
    except (ValueError, KeyError, TypeError) as invalid:
        log.warning("ignoring registry key %s: its value is not an instance (%s)", kv.key, invalid)
        return None


class Registration:
    """One instance kept registered: a lease, the instance's key under it, and :meth:`refresh` to keep it alive.

    :meth:`refresh` renews the lease; when the lease has expired meanwhile (the process was paused, etcd was
    out of reach longer than the TTL), the instance is registered again under a new lease rather than left out.
    :class:`KeepAlive` calls it every third of the TTL.
    """

    def __init__(self, etcd: Etcd, instance: Instance, ttl: int = DEFAULT_TTL) -> None:
        if ttl < 1:
            raise ValueError(f"the registration TTL must be at least 1 second, not {ttl!r}")
        self.etcd = etcd
        self.instance = instance
        self.ttl = ttl
        self.lease: int | None = None
        self._lock = threading.Lock()

    def register(self) -> int:
        """Put the instance under a new lease (replacing any earlier registration of it); the lease id."""
        with self._lock:
            old, self.lease = self.lease, None
            lease = self.etcd.grant(self.ttl)
            self.etcd.put(self.instance.key, json.dumps(self.instance.to_json()), lease)
            self.lease = lease
        if old is not None and old != lease:
            self.etcd.revoke(old)
        return lease

    def refresh(self) -> int:
        """Keep the registration alive; the lease's TTL. Registers anew when the lease has expired."""
        lease = self.lease
        if lease is None:
            self.register()
            return self.ttl
        try:
            return self.etcd.keepalive(lease)
        except LeaseNotFound:
            log.warning("the lease of %s %s expired; registering it again", self.instance.service,
                        self.instance.endpoint)
            self.register()
            return self.ttl

    def deregister(self) -> None:
        """Remove the instance now (revoking its lease deletes its key)."""
        with self._lock:
            lease, self.lease = self.lease, None
        if lease is not None:
            self.etcd.revoke(lease)


class KeepAlive(threading.Thread):
    """Refreshes a registration every ``ttl / 3`` seconds until stopped; errors are logged and retried at the
    next beat (two missed beats still leave a third before the lease expires)."""

    def __init__(self, registration: Registration) -> None:
        super().__init__(name=f"keepalive-{registration.instance.service}", daemon=True)
        self.registration = registration
        self.stopped = threading.Event()
        self.failures = 0

    def run(self) -> None:
        interval = self.registration.ttl / 3
        while not self.stopped.wait(interval):
            try:
                self.registration.refresh()
                self.failures = 0
            except EtcdError as error:
                self.failures += 1
                log.warning("could not keep %s registered (%d in a row): %s", self.registration.instance.service,
                            self.failures, error)

    def stop(self) -> None:
        self.stopped.set()


class Registry:
    """Reads and writes the registry in one etcd cluster."""

    def __init__(self, etcd: Etcd) -> None:
        self.etcd = etcd

    def register(self, instance: Instance, ttl: int = DEFAULT_TTL) -> Registration:
        registration = Registration(self.etcd, instance, ttl)
        registration.register()
        return registration

    def instances(self, service: str) -> list[Instance]:
        """The registered instances of ``service``, in instance-id order."""
        values, _ = self.etcd.get_prefix(f"{PREFIX}{check_service(service)}/")
        return [i for i in map(parse_entry, values) if i is not None]

    def snapshot(self) -> tuple[dict[str, tuple[Instance, ...]], int]:
        """Every registered instance by service, and the revision it was read at."""
        values, revision = self.etcd.get_prefix(PREFIX)
        return group(i for i in map(parse_entry, values) if i is not None), revision


def group(instances: Iterable[Instance]) -> dict[str, tuple[Instance, ...]]:
    grouped: dict[str, list[Instance]] = {}
    for instance in instances:
        grouped.setdefault(instance.service, []).append(instance)
    return {service: tuple(sorted(items, key=lambda i: i.instance_id)) for service, items in grouped.items()}


class InstanceCache:
    """Every service's instances, read once and then kept current by a watch on the registry's prefix.

    Look-ups read :attr:`services` (an immutable mapping replaced whole on every change, so readers on other
    threads never see half an update) and never wait on etcd. :meth:`run` (a thread) applies the watch's events;
    when the watch breaks it reads the whole prefix again and watches from there, so missed events cannot leave
    a stale instance behind. ``version`` grows with every change, for callers that cache derived orderings.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.services: Mapping[str, tuple[Instance, ...]] = MappingProxyType({})
        self.revision = 0
        self.version = 0
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self._by_key: dict[str, Instance] = {}

    def sync(self) -> None:
        """Read the whole registry now."""
        values, revision = self.registry.etcd.get_prefix(PREFIX)
        self._by_key = {kv.key: i for kv in values if (i := parse_entry(kv)) is not None}
        self._publish(revision)
        self.synced.set()

    def apply(self, events: Iterable[WatchEvent]) -> None:
        revision = self.revision
        for event in events:
            instance = parse_entry(event) if event.value is not None else None
            if instance is None:
                self._by_key.pop(event.key, None)
            else:
                self._by_key[event.key] = instance
            revision = max(revision, event.revision)
        self._publish(revision)

    def _publish(self, revision: int) -> None:
        self.services = MappingProxyType(group(self._by_key.values()))
        self.revision = revision
        self.version += 1

    def run(self, retry_s: float = 1.0) -> None:
        """Sync and follow the watch until :meth:`stop`; on any etcd failure wait ``retry_s`` and start over."""
        while not self.stopped.is_set():
            try:
                self.sync()
                for events in self.registry.etcd.watch_prefix(PREFIX, self.revision + 1):
                    self.apply(events)
                    if self.stopped.is_set():
                        return
            except EtcdError as error:
                if self.stopped.is_set():
                    return
                log.warning("registry watch interrupted, reading it again in %g s: %s", retry_s, error)
            self.stopped.wait(retry_s)

    def start(self, retry_s: float = 1.0) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(retry_s,), name="registry-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stopped.set()
        self.registry.etcd.close_watches()

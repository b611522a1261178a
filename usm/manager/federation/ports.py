"""The start and stop sequences' ports (``usm.manager.federation.sequences``) over the real things: the store,
the hosts' Docker engines and EC2."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from usm.actuators.docker import DockerContainers
from usm.actuators.ec2 import Ec2
from usm.engine import load_policy
from usm.engine.loader import policy_files
from usm.manager.federation.coordinator import Coordinator, moment
from usm.manager.federation.live import hosts_in
from usm.manager.site import Site
from usm.manager.store import federation as store
from usm.manager.store.configs import ConfigKind, latest_version, store_version
from usm.manager.store.database import require_current, sessions, upgrade
from usm.manager.store.federation import Worker
from usm.placement.model import HostKind

log = logging.getLogger("usm.federation")


def site_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:12]


def publish_policy(engine: Engine, directory: Path, at: float) -> tuple[int, str, bool]:
    """Validate the policy in ``directory`` and store it as the newest version (unless it is the newest already).
    Returns (version, digest, whether it is new). Raises ``InvalidSource`` for a policy that does not load."""
    policy = load_policy(directory)
    files = {f.name: f.read_bytes() for f in policy_files(Path(directory))}
    with sessions(engine).begin() as session:
        row, new = store_version(session, ConfigKind.POLICY, files, policy.digest, str(Path(directory).resolve()),
                                 moment(at))
        return row.version, row.digest, new


@dataclass
class StoreSteps:
    """The store's side of the sequences, for a master (``site_file``, ``policy_dir``) or a worker (``address``,
    ``port``). ``wait(seconds)`` and ``clock()`` pace the wait for workers (injected in tests)."""

    engine: Engine
    coordinator: Coordinator
    site_file: Path | None = None
    policy_dir: Path | None = None
    address: str = "127.0.0.1"
    port: int = 9465
    clock: Callable[[], float] = time.time
    wait: Callable[[float], object] = time.sleep
    poll: float = 0.5
    stopped: list[str] = field(default_factory=list)  # the workers that stopped while the master waited

    def _session(self):
        return sessions(self.engine).begin()

    def migrate(self) -> str:
        before, after = upgrade(self.engine)
        return f"store at revision {after}" + (f" (migrated from {before or 'empty'})" if before != after else "")

    def require_current(self) -> str:
        require_current(self.engine)
        return "store schema is current"

    def clear_stop_requests(self) -> str:
        with self._session() as session:
            store.clear_stop_requests(session)
        return "earlier stop requests forgotten"

    def publish_site(self) -> str:
        assert self.site_file is not None, "the master publishes its site file"
        content = self.site_file.read_bytes()
        with self._session() as session:
            row, new = store_version(session, ConfigKind.SITE, {"site.yaml": content}, site_digest(content),
                                     str(self.site_file.resolve()), moment(self.clock()))
            return f"site version {row.version}" + (" stored" if new else " kept (unchanged)")

    def publish_policy(self) -> str:
        if self.policy_dir is not None:
            version, digest, new = publish_policy(self.engine, self.policy_dir, self.clock())
            return f"policy version {version} ({digest})" + (" stored" if new else " kept (unchanged)")
        with self._session() as session:
            row = latest_version(session, ConfigKind.POLICY)
            if row is None:
                raise LookupError("no policy is stored and none was given: give --policy DIR, or run "
                                  "`usm policy apply DIR` first")
            return f"policy version {row.version} ({row.digest}) in force"

    def prepare_regions(self, regions: Sequence[str]) -> str:
        with self._session() as session:
            store.ensure_leases(session, regions, moment(self.clock()))
        return f"leases for {', '.join(regions)}"

    def register_worker(self, name: str, region: str) -> str:
        self.coordinator.register(region, self.address, self.port)
        return f"worker {name} registered for {region} at {self.address}:{self.port}"

    def request_workers_stop(self) -> str:
        with self._session() as session:
            store.request_stop(session, moment(self.clock()), reason="the master is stopping")
        return "every worker asked to stop"

    def await_workers(self, timeout: float) -> str:
        """Until every worker unregistered or fell silent past the countdown (one killed will never
        unregister), at most ``timeout`` seconds."""
        deadline = self.clock() + timeout
        while True:
            now = self.clock()
            with self._session() as session:
                left = [(w.name, w.heartbeat_at.timestamp() if w.heartbeat_at else None)
                        for w in session.scalars(select(Worker).order_by(Worker.name))]
            waiting = [name for name, heard in left
                       if heard is not None and now - heard <= self.coordinator.timing.countdown]
            if not waiting:
                silent = [name for name, _ in left]
                return "every worker stopped" + (f" (silent, not waited for: {', '.join(silent)})" if silent else "")
            if now >= deadline:
                raise TimeoutError(f"workers still running after {timeout:g}s: {', '.join(waiting)}; their regions "
                                   "are taken over")
            self.wait(self.poll)

    def take_over(self, regions: Sequence[str]) -> str:
        taken = []
        with self._session() as session:
            held = store.leases(session)
        for region in regions:
            lease = held.get(region)
            if lease is not None and lease.holder is not None:
                with self._session() as session:
                    store.hand_over(session, region, None, moment(self.clock()))
                taken.append(f"{region} from {lease.holder}")
        return "took over " + ", ".join(taken) if taken else "every region was the master's already"

    def unregister_worker(self, name: str) -> str:
        with self._session() as session:
            store.unregister_worker(session, name)
        return f"worker {name} unregistered; its region goes back to the master"

    def clear_runtime(self) -> str:
        with self._session() as session:
            store.clear_runtime(session)
        return "no worker, lease, assignment or stop request left in the store"


@dataclass
class RegionContainers:
    """Stops the usm-managed containers on the hosts of regions the runner holds, under their leases."""

    containers: DockerContainers
    site: Site
    coordinator: Coordinator

    def stop_managed(self, regions: Sequence[str]) -> str:
        held = self.coordinator.held()
        stopped, failed, skipped = [], [], []
        for region in regions:
            if region not in held:
                skipped.append(region)
                continue
            with self.coordinator.acting({region: held[region]}) as lost:
                if lost:
                    skipped.append(region)
                    continue
                for host in hosts_in(self.site, [region]):
                    try:
                        for container in self.containers.list(host):
                            self.containers.stop(host, container.name)
                            stopped.append(f"{container.name}@{host}")
                    except Exception as error:  # noqa: BLE001 - one host that fails does not stop the others
                        failed.append(f"{host} ({error})")
        if failed:
            raise RuntimeError(f"could not stop the containers of {', '.join(failed)}; stopped "
                               f"{', '.join(stopped) or 'none'}")
        note = f"; not held: {', '.join(skipped)}" if skipped else ""
        return f"stopped {len(stopped)} containers" + (f": {', '.join(stopped)}" if stopped else "") + note


@dataclass
class CloudSteps:
    """Elastic IPs and cloud instances through the EC2 actuator."""

    ec2: Ec2
    site: Site

    def allocate_elastic_ips(self, cloud_regions: Sequence[str]) -> str:
        addresses = [self.ec2.allocate_elastic_ip(region) for region in cloud_regions]
        return "elastic IPs " + ", ".join(f"{a.public_ip} ({a.region})" for a in addresses)

    def terminate_managed(self, regions: Sequence[str], cloud_regions: Sequence[str]) -> str:
        """Every managed instance of ``cloud_regions`` (the master); else the site's cloud hosts of ``regions``."""
        if cloud_regions:
            synced = self.ec2.sync()
            instances = [i for i in synced.instances if i.region in set(cloud_regions)]
        else:
            mine = set(hosts_in(self.site, regions))
            names = [h.name for h in self.site.hosts if h.kind is HostKind.CLOUD and h.name in mine]
            instances = [i for name in names if (i := self.ec2.named(name)) is not None]
        for instance in instances:
            self.ec2.terminate(instance.region, instance.instance_id, wait=False)
        return f"terminated {len(instances)} instances" + \
            (": " + ", ".join(f"{i.instance_id} ({i.region})" for i in instances) if instances else "")

    def release_elastic_ips(self, cloud_regions: Sequence[str]) -> str:
        for region in cloud_regions:
            self.ec2.release_elastic_ip(region)
        return f"elastic IPs of {', '.join(cloud_regions)} released"


__all__ = ["CloudSteps", "RegionContainers", "StoreSteps", "publish_policy", "site_digest"]

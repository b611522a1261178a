"""A store filled from a scenario, and kept equal to a simulated world: the hub's embedded defaults
(``usm serve`` shows a bundled scenario, so a newcomer has something to click through).

``seed_scenario`` writes a scenario's services (with their dependencies), apps, hosts, initial containers and
one swarm node per running host into an empty store. ``mirror_world`` then brings the store's hosts and
containers to what ``World.snapshot()`` shows, after the world acted or time passed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from usm.manager.store import App, CloudHost, Container, EdgeHost, Host, Node, Service, crud
from usm.placement.model import HostKind, HostState
from usm.simulator.scenario import HostDefinition, Scenario

SIMULATED_USER = "usm"


def seed_scenario(session: Session, scenario: Scenario) -> bool:
    """Fill an empty store from ``scenario``; ``False`` (and nothing written) when it already has services."""
    if session.scalar(select(Service.id).limit(1)) is not None:
        return False
    for name in reversed(scenario.service_order):  # each service after the services it depends on
        service = scenario.service_by_name[name]
        crud.create(session, Service, name=name, image=service.image, min_replicas=service.min_replicas,
                    max_replicas=service.max_replicas, expected_memory=int(service.memory),
                    dependencies=list(service.dependencies))
    for app in scenario.apps:
        crud.create(session, App, name=app.name, services=list(app.services))
    for host in scenario.hosts:
        _create_host(session, host.name, host.kind, host, host.state)
    for container in scenario.containers:
        crud.create(session, Container, name=container.name, service=container.service, host=container.host,
                    state="running")
    running = [h.name for h in scenario.hosts if h.state is not HostState.STOPPED]
    for index, host in enumerate(running):
        crud.create(session, Node, swarm_id=f"node-{host}", host=host, role="manager" if index == 0 else "worker")
    return True


def mirror_world(session: Session, snapshot: dict[str, Any], scenario: Scenario,
                 known: set[str] | None = None) -> list[str]:
    """Make the store's hosts and containers what the world's ``snapshot`` shows; the names of what changed.

    Only hosts the world knows (``known``: every host it has shown; default: the scenario's and the snapshot's)
    and their containers are touched: rows the operator stored for other hosts are not the world's to delete.
    """
    changed: list[str] = []
    hosts = {h["name"]: h for h in snapshot["hosts"]}
    known = (known or set()) | set(hosts) | {h.name for h in scenario.hosts}
    containers = {c["name"]: c for c in snapshot["containers"]}
    stored_hosts = {h.name: h for h in session.scalars(select(Host)) if h.name in known}
    for name, seen in hosts.items():
        row = stored_hosts.get(name)
        if row is None:
            _create_host(session, name, HostKind(seen["kind"]), _launched(scenario, seen), HostState(seen["state"]))
            changed.append(name)
        elif row.state.value != seen["state"]:
            row.state = HostState(seen["state"])
            changed.append(name)
    for row in session.scalars(select(Container).join(Container.host).where(Host.name.in_(known))):
        seen = containers.pop(row.name, None)
        if seen is None:
            if row.load_balancer is None and row.registration_server is None:
                session.delete(row)
            elif row.state.value != "down":
                crud.update(session, Container, row.name, state="down")
            changed.append(row.name)
        elif (row.state.value, row.host.name) != (seen["state"], seen["host"]):
            crud.update(session, Container, row.name, state=seen["state"], host=seen["host"])
            changed.append(row.name)
    for name, seen in containers.items():
        crud.create(session, Container, name=name, service=seen["service"], host=seen["host"], state=seen["state"])
        changed.append(name)
    session.flush()
    for name, row in stored_hosts.items():
        if name not in hosts and isinstance(row, CloudHost) and not row.containers:
            if row.node is not None:
                session.delete(row.node)
            session.delete(row)  # terminated
            changed.append(name)
    session.flush()
    return changed


def _launched(scenario: Scenario, seen: dict[str, Any]) -> HostDefinition:
    """The definition of a host the world launched: the scenario's launch instance type, where it stands."""
    from usm.geo.sphere import Coordinates

    kind = scenario.launch_type
    assert kind is not None, "the world launched a host without an instance type"
    return HostDefinition(seen["name"], HostKind.CLOUD, Coordinates(seen["latitude"], seen["longitude"]), kind.total,
                          region=seen["region"], cloud_region=seen["cloud_region"], instance_type=kind.name)


def _create_host(session: Session, name: str, kind: HostKind, host: HostDefinition, state: HostState) -> None:
    common = {"name": name, "latitude": host.location.latitude, "longitude": host.location.longitude,
              "cpu": host.total.cpu, "ram": int(host.total.ram), "disk": int(host.total.disk), "state": state.value}
    if host.region:
        common["region"] = host.region
    if kind is HostKind.CLOUD:
        crud.create(session, CloudHost, **common, instance_id=f"sim-{name}", instance_type=host.instance_type,
                    cloud_region=host.cloud_region)
    else:
        crud.create(session, EdgeHost, **common, username=SIMULATED_USER, public_dns_name=f"{name}.invalid")


__all__ = ["mirror_world", "seed_scenario"]

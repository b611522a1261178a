"""The stored inventory over the API: apps, services (with their dependencies, dependents and event
predictions), event predictions, containers, cloud and edge hosts, swarm nodes, regions, elastic IPs, load
balancers, registration servers, workers and host assignments (original-system §6.2)."""

from __future__ import annotations

from flask import Blueprint
from spectree import SpecTree
from sqlalchemy.orm import selectinload

from usm.manager.store import (
    App,
    AppService,
    CloudHost,
    Container,
    EdgeHost,
    ElasticIp,
    EventPrediction,
    HostAssignment,
    LoadBalancer,
    Node,
    Region,
    RegistrationServer,
    Service,
    Worker,
)
from usm.web.api.resources import Entity, Extra, add_routes


def _names(rows: list) -> list[str]:
    return [row.name for row in rows]


ENTITIES = (
    Entity("apps", App, loads=(lambda: selectinload(App.members).selectinload(AppService.service),)),
    Entity("services", Service, extras=(
        Extra("dependents", list[str], lambda s: _names(s.dependents), (lambda: selectinload(Service.dependents),)),
        Extra("predictions", list[str], lambda s: _names(s.predictions),
              (lambda: selectinload(Service.predictions),)),
        Extra("apps", list[str], lambda s: _names(s.apps), (lambda: selectinload(Service.apps),)),
    )),
    Entity("event-predictions", EventPrediction),
    Entity("containers", Container),
    Entity("cloud-hosts", CloudHost),
    Entity("edge-hosts", EdgeHost),
    Entity("nodes", Node),
    Entity("regions", Region),
    Entity("elastic-ips", ElasticIp),
    Entity("load-balancers", LoadBalancer),
    Entity("registration-servers", RegistrationServer),
    Entity("workers", Worker),
    Entity("host-assignments", HostAssignment),
)


def blueprint(spec: SpecTree) -> Blueprint:
    bp = Blueprint("inventory", __name__)
    for entity in ENTITIES:
        add_routes(bp, spec, entity)
    return bp


__all__ = ["ENTITIES", "blueprint"]

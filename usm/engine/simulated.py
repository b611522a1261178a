"""Simulated metrics (policy-spec §6 and §7.8).

For each entity and field, the most specific *active* simulated metric wins (containers:
named container > named service > named app > generic; hosts: named > generic; inside a level
the first loaded). Each cycle it draws a value uniformly in [min, max]. The draw is a pure
function of (seed, metric, entity, time), so the same policy and times always give the same
values, whatever the order in which entities are visited.
"""

from __future__ import annotations

import hashlib
import struct

import polars as pl

from usm.engine.inventory import Inventory
from usm.engine.policy import Policy, SimulatedMetric, container_level, host_level

SAMPLE_SCHEMA = {"ts": pl.Float64, "entity": pl.String, "field": pl.String, "value": pl.Float64}


def draw(metric: SimulatedMetric, seed: int, entity: str, at: float) -> float:
    """A value in [min, max], uniform and deterministic."""
    if metric.min == metric.max:
        return metric.min
    digest = hashlib.blake2b(f"{seed}|{metric.name}|{entity}|{at!r}".encode(), digest_size=8).digest()
    fraction = struct.unpack(">Q", digest)[0] / 2.0**64
    return metric.min + fraction * (metric.max - metric.min)


def winning_metrics(policy: Policy, inventory: Inventory) -> dict[tuple[str, str], SimulatedMetric]:
    """(entity, field) -> the simulated metric that applies to it."""
    active = [m for m in policy.simulated_metrics if m.active]
    if not active:
        return {}
    chosen: dict[tuple[str, str], tuple[int, int, SimulatedMetric]] = {}

    def offer(entity: str, level: int | None, metric: SimulatedMetric) -> None:
        if level is None:
            return
        key = (entity, metric.field)
        rank = (level, metric.order)
        if key not in chosen or rank < chosen[key][:2]:
            chosen[key] = (*rank, metric)

    apps_of = inventory.apps_of_service
    for metric in active:
        for host in inventory.hosts:
            offer(host.name, host_level(metric.scope, metric.targets, host.name), metric)
        for c in inventory.containers:
            offer(c.name, container_level(metric.scope, metric.targets, c.name, c.service,
                                          apps_of.get(c.service, ())), metric)
    return {key: metric for key, (_, _, metric) in chosen.items()}


def apply_simulated_metrics(policy: Policy, inventory: Inventory, at: float, batch: pl.DataFrame) -> pl.DataFrame:
    """``batch`` (ts, entity, field, value: this cycle's real samples) with simulated samples
    at ``at`` added: an overriding metric replaces the real sample of its entity and field, a
    non-overriding one fills in only where no real sample is current (t - period < ts <= t)."""
    winners = winning_metrics(policy, inventory)
    if not winners:
        return batch
    period = policy.settings.period
    current = batch.filter((pl.col("ts") > at - period) & (pl.col("ts") <= at) & pl.col("value").is_not_null())
    real = set(zip(current["entity"].to_list(), current["field"].to_list()))
    rows, replaced = [], []
    for (entity, field), metric in sorted(winners.items()):
        if metric.override:
            replaced.append((entity, field))
        elif (entity, field) in real:
            continue
        rows.append((float(at), entity, field, draw(metric, policy.settings.seed, entity, at)))
    simulated = pl.DataFrame(rows, schema=SAMPLE_SCHEMA, orient="row")
    if replaced:
        drop = pl.DataFrame(replaced, schema={"entity": pl.String, "field": pl.String}, orient="row")
        batch = batch.join(drop, on=["entity", "field"], how="anti")
    return pl.concat([batch.select(list(SAMPLE_SCHEMA)).cast(SAMPLE_SCHEMA), simulated])

"""The simulation report: KPIs (JSON and CSV), plots, a world map and an ``index.html`` that shows them together.

``write_report`` takes what a simulated run recorded, per tick, and writes into the output directory:

* ``kpis.json``: the run summary (``compute_kpis``), the same dict ``write_report`` returns;
* ``kpis.csv``: the timeline, one row per tick, sorted by time;
* ``replicas_hosts.png``, ``cost.png``, ``distance.png``, ``overloaded.png``, ``actions.png``: one figure per topic;
* ``map.png``: countries (vendored Natural Earth polygons), hosts, replicas per host and request sources;
* ``index.html``: one self-contained page (inline CSS, no scripts, no external URL) with the KPI tables, the images
  and links to ``decisions.jsonl`` (written by the control loop), ``kpis.json`` and ``kpis.csv``.

Time is integrated as the step plots draw it: each timeline row is the world sampled at its tick and holds until
the next tick, so the run lasts from the first tick to the last (the simulator samples ``0, tick, ..., duration``:
a one-hour scenario is a 3600 s run) and the last row weighs nothing in time integrals. With ticks of 15 s, two
overloaded containers during one tick count 0.5 container-minutes.

Same inputs give the same bytes: KPI floats are rounded to 6 decimals, mappings are ordered, the PNGs carry no
software or date metadata and are drawn with a fixed style. matplotlib and geopandas are imported only when a
report is drawn (geopandas alone takes most of a second).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from geopandas import GeoDataFrame
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ACTION_KINDS: tuple[str, ...] = ("replicate", "migrate", "stop", "overwork", "underwork")
"""Every action kind the engine emits, in the order tables and plots show them."""

TIMELINE_SCHEMA: dict[str, pl.DataType] = {
    "at": pl.Float64(),
    "hosts_running": pl.Int64(),
    "cloud_hosts_running": pl.Int64(),
    "edge_hosts_running": pl.Int64(),
    "containers_running": pl.Int64(),
    "containers_starting": pl.Int64(),
    "cost_per_hour_usd": pl.Float64(),
    "cost_usd": pl.Float64(),
    "requests_per_sec": pl.Float64(),
    "mean_distance_km": pl.Float64(),
    "p95_distance_km": pl.Float64(),
    "overloaded_containers": pl.Int64(),
}
"""The timeline columns ``write_report`` needs (one row per tick; ``cost_usd`` is cumulative)."""

REPLICAS_SCHEMA: dict[str, pl.DataType] = {"at": pl.Float64(), "service": pl.String(), "replicas": pl.Int64()}
ACTIONS_SCHEMA: dict[str, pl.DataType] = {
    "at": pl.Float64(),
    "action": pl.String(),
    "target": pl.String(),
    "container": pl.String(),
    "rule": pl.String(),
}

DECISION_LOG = "decisions.jsonl"
KPIS_JSON = "kpis.json"
KPIS_CSV = "kpis.csv"
MAP_PNG = "map.png"
INDEX_HTML = "index.html"
PLOTS: dict[str, str] = {
    "replicas_hosts.png": "Replicas per service and hosts over time",
    "cost.png": "Cost: cumulative and hourly rate",
    "distance.png": "Client-to-replica distance: mean and p95",
    "overloaded.png": "Overloaded containers",
    "actions.png": "Actions per hour by kind",
}
"""Plot file name -> caption, in page order."""

LIVE_CONTAINER_STATES = frozenset({"running", "starting"})
"""Container states drawn on the map as replicas on their host."""

WORLD_SHAPEFILE = "naturalearth_lowres/naturalearth_lowres.shp"
"""The vendored Natural Earth low-resolution countries, relative to ``usm/geo/data``."""

_ROUND = 6
_MAX_SERVICES_PLOTTED = 10
_ACTION_BIN_CHOICES_S = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_MAX_ACTION_BINS = 48
_MAP_RATIO = 1.6  # width / height of the map's plotting area
_KIND_COLOURS = {
    "replicate": "#2b8cbe",
    "migrate": "#8856a7",
    "stop": "#de2d26",
    "overwork": "#fd8d3c",
    "underwork": "#74c476",
}
_STATE_COLOURS = {"running": "#1a9850", "starting": "#fdae61", "stopping": "#f46d43", "stopped": "#878787"}
_SOURCE_COLOUR = "#e7298a"
_HOST_MARKERS = {"cloud": "s", "edge": "^"}
_STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "path.simplify": True,
}


# --- the entry point ----------------------------------------------------------------------------------------------


def write_report(out: Path, *, scenario_name: str, policy_digest: str, seed: int,
                 timeline: pl.DataFrame, replicas: pl.DataFrame, actions: pl.DataFrame,
                 snapshot: dict, initial_snapshot: dict | None = None) -> dict:
    """Write the report of one simulated run into ``out`` (created if needed) and return the KPI summary.

    ``timeline`` has one row per tick with the ``TIMELINE_SCHEMA`` columns (others are kept in ``kpis.csv``);
    ``replicas`` the running + starting replicas per service per tick (a missing row means 0); ``actions`` every
    action taken (``at, action, target, container, rule``); ``snapshot`` the final world (``hosts``,
    ``containers``, ``sources``) and ``initial_snapshot``, if given, the world at the start (drawn faintly on
    the map). The decision log ``decisions.jsonl`` is the control loop's: the page links it.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timeline = checked_frame(timeline, TIMELINE_SCHEMA, "timeline").sort("at", maintain_order=True)
    replicas = checked_frame(replicas, REPLICAS_SCHEMA, "replicas").sort("at", "service", maintain_order=True)
    actions = checked_frame(actions, ACTIONS_SCHEMA, "actions").sort("at", maintain_order=True)
    kpis = compute_kpis(timeline, replicas, actions, snapshot,
                        scenario_name=scenario_name, policy_digest=policy_digest, seed=seed)
    write_kpis_json(out / KPIS_JSON, kpis)
    write_kpis_csv(out / KPIS_CSV, timeline)
    plot_all(out, timeline, replicas, actions, kpis)
    plot_map(out / MAP_PNG, snapshot, initial_snapshot, title=f"{scenario_name}: hosts, replicas and request sources")
    (out / INDEX_HTML).write_text(render_index(kpis, has_decision_log=(out / DECISION_LOG).is_file()),
                                  encoding="utf-8")
    return kpis


def checked_frame(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], what: str) -> pl.DataFrame:
    """``frame`` with the ``schema`` columns cast to their types (extra columns kept, in place).

    Raises ``ValueError`` naming every missing column, or a column that does not cast without loss.
    """
    missing = [name for name in schema if name not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    try:
        return frame.with_columns(pl.col(name).cast(dtype, strict=True) for name, dtype in schema.items())
    except pl.exceptions.PolarsError as error:
        raise ValueError(f"{what}: a column has the wrong type ({error})") from error


# --- KPIs ---------------------------------------------------------------------------------------------------------


def tick_seconds(at: pl.Series) -> pl.Series:
    """How long each row's state holds: the gap to the next tick, 0 for the last (``at`` sorted)."""
    return (at.shift(-1) - at).fill_null(0.0).cast(pl.Float64).alias("tick_s")


def compute_kpis(timeline: pl.DataFrame, replicas: pl.DataFrame, actions: pl.DataFrame, snapshot: Mapping,
                 *, scenario_name: str, policy_digest: str, seed: int) -> dict[str, Any]:
    """The run summary written to ``kpis.json`` (pure; frames already checked and sorted by time).

    Means over time weigh each row by how long it holds (the end-state row: not at all). The distance mean is
    request-weighted and exact (each tick's mean weighted by its request count); the run's p95 cannot be rebuilt
    from per-tick p95s, so the summary gives their request-weighted mean and the worst tick instead.
    """
    ticks = tick_seconds(timeline["at"])
    duration_s = float(ticks.sum())
    hours = duration_s / 3600.0
    return {
        "scenario": scenario_name,
        "policy_digest": policy_digest,
        "seed": int(seed),
        "ticks": timeline.height,
        "tick_s": _number(ticks.head(-1).median()) if timeline.height > 1 else None,
        "start_s": _number(timeline["at"].min()) if timeline.height else None,
        "duration_s": _number(duration_s),
        "cost": {
            "total_usd": _number(timeline["cost_usd"].drop_nulls().tail(1).sum()) if timeline.height else 0.0,
            "mean_per_hour_usd": _number(weighted_mean(timeline["cost_per_hour_usd"], ticks)),
            "max_per_hour_usd": _number(timeline["cost_per_hour_usd"].max()),
        },
        "hosts": {
            "max_running": _integer(timeline["hosts_running"].max()),
            "mean_running": _number(weighted_mean(timeline["hosts_running"], ticks)),
            "max_cloud_running": _integer(timeline["cloud_hosts_running"].max()),
            "max_edge_running": _integer(timeline["edge_hosts_running"].max()),
        },
        "containers": {
            "max_running": _integer(timeline["containers_running"].max()),
            "mean_running": _number(weighted_mean(timeline["containers_running"], ticks)),
            "max_starting": _integer(timeline["containers_starting"].max()),
        },
        "replicas": replica_kpis(timeline["at"], ticks, replicas),
        "requests": {
            "total": _number((timeline["requests_per_sec"].fill_null(0.0) * ticks).sum()),
            "mean_per_sec": _number(weighted_mean(timeline["requests_per_sec"], ticks)),
            "max_per_sec": _number(timeline["requests_per_sec"].max()),
        },
        "distance_km": distance_kpis(timeline, ticks),
        "overloaded_container_minutes": _number((timeline["overloaded_containers"].fill_null(0) * ticks).sum() / 60.0),
        "actions": action_kpis(actions, hours),
        "final": final_kpis(snapshot),
    }


def weighted_mean(values: pl.Series, weights: pl.Series) -> float | None:
    """Mean of the non-null ``values`` weighted by ``weights``; equal weights if theirs sum to 0; None if empty."""
    frame = pl.DataFrame({"v": values.cast(pl.Float64), "w": weights.cast(pl.Float64)}).drop_nulls("v")
    if frame.height == 0:
        return None
    total = float(frame["w"].sum())
    if total <= 0.0:
        return float(frame["v"].mean())
    return float((frame["v"] * frame["w"]).sum()) / total


def replicas_wide(at: pl.Series, replicas: pl.DataFrame) -> pl.DataFrame:
    """One row per tick of ``at`` and one column per service (sorted by name), missing rows as 0 replicas."""
    ticks = pl.DataFrame({"at": at})
    if replicas.height == 0:
        return ticks
    wide = replicas.pivot(on="service", index="at", values="replicas", aggregate_function="sum")
    services = sorted(c for c in wide.columns if c != "at")
    return ticks.join(wide, on="at", how="left").select("at", *(pl.col(s).fill_null(0) for s in services))


def replica_kpis(at: pl.Series, ticks: pl.Series, replicas: pl.DataFrame) -> dict[str, Any]:
    """Total replicas (all services) max and time-weighted mean, and per service max, mean and final count."""
    wide = replicas_wide(at, replicas)
    services = [c for c in wide.columns if c != "at"]
    total = (wide.select(pl.sum_horizontal(services)).to_series() if services
             else pl.Series("total", [0] * wide.height, dtype=pl.Int64))
    return {
        "max_total": _integer(total.max()) if wide.height else 0,
        "mean_total": _number(weighted_mean(total, ticks)),
        "by_service": {
            service: {
                "max": _integer(wide[service].max()),
                "mean": _number(weighted_mean(wide[service], ticks)),
                "final": _integer(wide[service][-1]),
            }
            for service in services
        },
    }


def distance_kpis(timeline: pl.DataFrame, ticks: pl.Series) -> dict[str, Any]:
    """Client-to-replica distance over the run, weighted by each tick's request count (tick length if no rates)."""
    requests = timeline["requests_per_sec"].fill_null(0.0) * ticks
    weighted_by_requests = float(requests.filter(timeline["mean_distance_km"].is_not_null()).sum()) > 0.0
    weights = requests if weighted_by_requests else ticks
    return {
        "mean": _number(weighted_mean(timeline["mean_distance_km"], weights)),
        "p95_mean": _number(weighted_mean(timeline["p95_distance_km"], weights)),
        "p95_worst": _number(timeline["p95_distance_km"].max()),
        "weighted_by": "requests" if weighted_by_requests else "time",
    }


def action_kpis(actions: pl.DataFrame, hours: float) -> dict[str, Any]:
    """Action counts: in total, by kind (every known kind, then any other) and by rule; rates per hour of run."""
    counts = dict(actions.group_by("action").len().sort("action").iter_rows())
    kinds = [*ACTION_KINDS, *sorted(k for k in counts if k not in ACTION_KINDS)]
    by_kind = {kind: int(counts.get(kind, 0)) for kind in kinds}
    rules = actions.with_columns(pl.col("rule").fill_null("")).group_by("rule").len().sort("rule")
    return {
        "total": actions.height,
        "per_hour": _number(actions.height / hours) if hours > 0 else None,
        "by_kind": by_kind,
        "per_hour_by_kind": {kind: (_number(n / hours) if hours > 0 else None) for kind, n in by_kind.items()},
        "by_rule": {str(rule): int(n) for rule, n in rules.iter_rows()},
    }


def final_kpis(snapshot: Mapping) -> dict[str, Any]:
    """Counts of the final world: hosts by kind and state, containers by state and service, request sources."""
    hosts = list(snapshot.get("hosts", ()))
    containers = list(snapshot.get("containers", ()))
    by_kind: dict[str, dict[str, int]] = {}
    for host in hosts:
        states = by_kind.setdefault(str(host.get("kind")), {})
        states[str(host.get("state"))] = states.get(str(host.get("state")), 0) + 1
    return {
        "hosts": len(hosts),
        "hosts_by_kind": {kind: dict(sorted(states.items())) for kind, states in sorted(by_kind.items())},
        "containers": len(containers),
        "containers_by_state": _counts(str(c.get("state")) for c in containers),
        "containers_by_service": _counts(str(c.get("service")) for c in containers),
        "sources": len(list(snapshot.get("sources", ()))),
    }


def _counts(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def _number(value: Any) -> float | None:
    """A JSON-safe float rounded to 6 decimals (None for null, NaN or infinity)."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    return round(number, _ROUND) + 0.0  # + 0.0 turns -0.0 into 0.0


def _integer(value: Any) -> int | None:
    return None if value is None else int(value)


def write_kpis_json(path: Path, kpis: Mapping[str, Any]) -> None:
    """The KPI summary as indented JSON (strict: no NaN), ending with a newline."""
    path.write_text(json.dumps(kpis, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def write_kpis_csv(path: Path, timeline: pl.DataFrame) -> None:
    """The timeline, one row per tick; nulls as empty fields, floats in their shortest round-trip form."""
    timeline.write_csv(path, null_value="")


# --- plots --------------------------------------------------------------------------------------------------------


def _time_scale(duration_s: float) -> tuple[float, str]:
    """Divisor and axis label for elapsed time: minutes up to 3 hours, hours beyond."""
    return (60.0, "elapsed time (min)") if duration_s <= 3 * 3600 else (3600.0, "elapsed time (h)")


def _new_figure(rows: int = 1, height: float = 3.2, *, sharex: bool = True) -> tuple[Figure, list[Axes]]:
    """A figure (no pyplot, no global state) with ``rows`` stacked axes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10.0, height * rows), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
    return figure, list(axes)


def _save(figure: Figure, path: Path) -> None:
    """PNG without software or date metadata, so the same figure gives the same bytes."""
    figure.savefig(path, format="png", metadata={"Software": None})


def _no_data(ax: Axes, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777777")


def plot_all(out: Path, timeline: pl.DataFrame, replicas: pl.DataFrame, actions: pl.DataFrame,
             kpis: Mapping[str, Any]) -> None:
    """Every ``PLOTS`` figure into ``out``, with the fixed report style."""
    import matplotlib

    start = float(timeline["at"].min()) if timeline.height else 0.0
    duration = float(kpis["duration_s"] or 0.0)
    with matplotlib.rc_context(_STYLE):
        _save(plot_replicas_hosts(timeline, replicas, start, duration), out / "replicas_hosts.png")
        _save(plot_cost(timeline, start, duration), out / "cost.png")
        _save(plot_distance(timeline, start, duration), out / "distance.png")
        _save(plot_overloaded(timeline, start, duration, kpis["overloaded_container_minutes"]), out / "overloaded.png")
        _save(plot_actions(actions, start, duration), out / "actions.png")


def plot_replicas_hosts(timeline: pl.DataFrame, replicas: pl.DataFrame, start: float, duration: float) -> Figure:
    """Top: replicas per service (the largest few, the rest summed as "other"); bottom: hosts running by kind."""
    divisor, label = _time_scale(duration)
    figure, (top, bottom) = _new_figure(2)
    wide = replicas_wide(timeline["at"], replicas)
    x = ((wide["at"] - start) / divisor).to_numpy()
    services = sorted((c for c in wide.columns if c != "at"), key=lambda s: (-int(wide[s].max() or 0), s))
    shown, rest = services[:_MAX_SERVICES_PLOTTED], services[_MAX_SERVICES_PLOTTED:]
    for service in shown:
        top.step(x, wide[service].to_numpy(), where="post", label=service)
    if rest:
        other = wide.select(pl.sum_horizontal(rest)).to_series().to_numpy()
        top.step(x, other, where="post", label=f"other ({len(rest)} services)", color="#999999")
    if shown:
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    else:
        _no_data(top, "no replicas")
    top.set_ylabel("replicas (running + starting)")
    top.set_title("Replicas per service")
    top.set_ylim(bottom=0)
    hx = ((timeline["at"] - start) / divisor).to_numpy()
    for column, name, colour in (("hosts_running", "all hosts", "#333333"),
                                 ("cloud_hosts_running", "cloud", "#2b8cbe"),
                                 ("edge_hosts_running", "edge", "#31a354")):
        bottom.step(hx, timeline[column].cast(pl.Float64).to_numpy(), where="post", label=name, color=colour)
    if timeline.height == 0:
        _no_data(bottom)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    bottom.set_ylabel("hosts running")
    bottom.set_title("Hosts")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel(label)
    return figure


def plot_cost(timeline: pl.DataFrame, start: float, duration: float) -> Figure:
    """Top: cumulative cost in USD; bottom: the cost rate in USD per hour."""
    divisor, label = _time_scale(duration)
    figure, (top, bottom) = _new_figure(2)
    x = ((timeline["at"] - start) / divisor).to_numpy()
    top.plot(x, timeline["cost_usd"].to_numpy(), color="#08519c")
    top.set_ylabel("USD")
    top.set_title("Cumulative cost")
    bottom.step(x, timeline["cost_per_hour_usd"].to_numpy(), where="post", color="#6baed6")
    bottom.set_ylabel("USD per hour")
    bottom.set_title("Cost rate")
    bottom.set_xlabel(label)
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
        if timeline.height == 0:
            _no_data(ax)
    return figure


def plot_distance(timeline: pl.DataFrame, start: float, duration: float) -> Figure:
    """Top: mean and p95 client-to-replica distance per tick (gaps where no requests); bottom: requests/s."""
    divisor, label = _time_scale(duration)
    figure, (top, bottom) = _new_figure(2)
    x = ((timeline["at"] - start) / divisor).to_numpy()
    top.plot(x, timeline["mean_distance_km"].fill_null(float("nan")).to_numpy(), label="mean", color="#238b45")
    top.plot(x, timeline["p95_distance_km"].fill_null(float("nan")).to_numpy(), label="p95", color="#cb181d")
    top.set_ylabel("km")
    top.set_title("Client-to-replica distance")
    top.set_ylim(bottom=0)
    if timeline["mean_distance_km"].drop_nulls().len() or timeline["p95_distance_km"].drop_nulls().len():
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        _no_data(top, "no requests")
    rate = timeline["requests_per_sec"].fill_null(0.0).to_numpy()
    bottom.fill_between(x, rate, step="post", color="#d9d9d9", linewidth=0)
    bottom.step(x, rate, where="post", color="#737373", linewidth=0.8)
    bottom.set_ylabel("requests/s")
    bottom.set_title("Request rate")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel(label)
    return figure


def plot_overloaded(timeline: pl.DataFrame, start: float, duration: float, minutes: float | None) -> Figure:
    """Overloaded containers per tick, with the run's container-minutes in the title."""
    divisor, label = _time_scale(duration)
    figure, (ax,) = _new_figure(1, height=3.6)
    x = ((timeline["at"] - start) / divisor).to_numpy()
    y = timeline["overloaded_containers"].fill_null(0).cast(pl.Float64).to_numpy()
    ax.fill_between(x, y, step="post", color="#fc9272", alpha=0.8, linewidth=0)
    ax.step(x, y, where="post", color="#de2d26")
    ax.set_ylabel("overloaded containers")
    ax.set_xlabel(label)
    ax.set_ylim(bottom=0)
    ax.set_title(f"Overloaded containers ({minutes or 0:g} container-minutes in total)")
    if timeline.height == 0:
        _no_data(ax)
    return figure


def action_bin_seconds(duration_s: float) -> int:
    """The smallest round bin width that splits the run into at most 48 bars."""
    for width in _ACTION_BIN_CHOICES_S:
        if duration_s / width <= _MAX_ACTION_BINS:
            return width
    return math.ceil(duration_s / _MAX_ACTION_BINS)


def action_rates(actions: pl.DataFrame, start: float, duration: float) -> tuple[int, pl.DataFrame]:
    """Bin width and per-bin action rates (actions per hour) by kind: columns ``bin``, ``bin_start_s``, one per kind.

    Bins cover the run from ``start``; the last bin may be shorter and its rate uses its real length. Actions after
    the end of the run fall into the last bin.
    """
    width = action_bin_seconds(duration)
    count = max(1, math.ceil(duration / width)) if duration > 0 else 1
    lengths = [min(width, duration - i * width) if duration > 0 else float(width) for i in range(count)]
    kinds = [*ACTION_KINDS, *sorted(set(actions["action"].drop_nulls()) - set(ACTION_KINDS))]
    binned = (actions.with_columns(((pl.col("at") - start) // width).cast(pl.Int64).clip(0, count - 1).alias("bin"))
              .group_by("bin", "action").len())
    frame = pl.DataFrame({"bin": list(range(count)), "bin_start_s": [float(i * width) for i in range(count)],
                          "hours": [length / 3600.0 for length in lengths]})
    for kind in kinds:
        counts = binned.filter(pl.col("action") == kind).select("bin", pl.col("len").alias(kind))
        frame = frame.join(counts, on="bin", how="left").with_columns(
            (pl.col(kind).fill_null(0) / pl.col("hours")).alias(kind))
    return width, frame.drop("hours")


def plot_actions(actions: pl.DataFrame, start: float, duration: float) -> Figure:
    """Stacked bars: actions per hour by kind, in round time bins."""
    divisor, label = _time_scale(duration)
    width, rates = action_rates(actions, start, duration)
    figure, (ax,) = _new_figure(1, height=3.6)
    x = (rates["bin_start_s"] / divisor).to_numpy()
    base = [0.0] * rates.height
    for kind in (c for c in rates.columns if c not in ("bin", "bin_start_s")):
        heights = rates[kind].to_list()
        if not any(heights):
            continue
        ax.bar(x, heights, width=width / divisor, bottom=base, align="edge", label=kind,
               color=_KIND_COLOURS.get(kind, "#999999"), edgecolor="white", linewidth=0.5)
        base = [b + h for b, h in zip(base, heights, strict=True)]
    if actions.height:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        _no_data(ax, "no actions")
    ax.set_ylabel("actions per hour")
    ax.set_xlabel(label)
    ax.set_title(f"Actions per hour by kind ({_duration_text(width)} bins)")
    return figure


def _duration_text(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds // 60:g} min"
    return f"{seconds:g} s"


# --- the world map ------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def world_countries() -> GeoDataFrame:
    """The vendored Natural Earth low-resolution countries (177 polygons, EPSG:4326); geopandas imported here."""
    import geopandas

    path = files("usm.geo").joinpath("data", *WORLD_SHAPEFILE.split("/"))
    return geopandas.read_file(str(path))


def _located(items: Iterable[Mapping]) -> list[Mapping]:
    """The items that have both coordinates."""
    return [i for i in items if i.get("latitude") is not None and i.get("longitude") is not None]


def replicas_per_host(snapshot: Mapping) -> list[tuple[Mapping, int]]:
    """Each located host with its live (running or starting) container count, hosts without any left out."""
    counts = _counts(str(c.get("host")) for c in snapshot.get("containers", ())
                     if c.get("state") in LIVE_CONTAINER_STATES)
    return [(h, counts[str(h.get("name"))]) for h in _located(snapshot.get("hosts", ()))
            if counts.get(str(h.get("name")), 0) > 0]


def map_aspect(south: float, north: float) -> float:
    """The y/x scale of an equirectangular map that keeps shapes right at its middle latitude."""
    middle = max(-70.0, min(70.0, (south + north) / 2.0))
    return 1.0 / math.cos(math.radians(middle))


def map_extent(points: Sequence[tuple[float, float]], margin: float = 10.0,
               ratio: float = _MAP_RATIO) -> tuple[float, float, float, float]:
    """(west, east, south, north) around ``(lon, lat)`` points with a margin, at least 40 degrees of longitude,
    grown to a ``ratio`` width/height on screen (``map_aspect``) and kept inside the world; the inhabited world
    when there are no points."""
    if not points:
        return -180.0, 180.0, -58.0, 84.0
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    west, east = _widened(min(lons) - margin, max(lons) + margin, 40.0, -180.0, 180.0)
    south, north = _widened(min(lats) - margin, max(lats) + margin, 0.0, -90.0, 90.0)
    screen_height = (north - south) * map_aspect(south, north)
    if (east - west) < ratio * screen_height:
        west, east = _widened(west, east, ratio * screen_height, -180.0, 180.0)
    else:
        south, north = _widened(south, north, (east - west) / ratio / map_aspect(south, north), -90.0, 90.0)
    return west, east, south, north


def _widened(low: float, high: float, span: float, lowest: float, highest: float) -> tuple[float, float]:
    """``[low, high]`` grown around its middle to at least ``span``, then shifted and clipped into the bounds."""
    if high - low < span:
        middle = (low + high) / 2.0
        low, high = middle - span / 2.0, middle + span / 2.0
    if low < lowest:
        low, high = lowest, min(highest, high + (lowest - low))
    if high > highest:
        low, high = max(lowest, low - (high - highest)), highest
    return low, high


def _marker_size(value: float, largest: float, smallest: float = 20.0, biggest: float = 400.0) -> float:
    """Marker area in points² proportional to ``value`` (relative to ``largest``), never below ``smallest``."""
    if largest <= 0:
        return smallest
    return smallest + (biggest - smallest) * max(0.0, value) / largest


def _draw_world(ax: Axes, snapshot: Mapping, *, faint: bool) -> None:
    """Request sources, replicas per host and hosts of one snapshot; faint for the initial state."""
    alpha = 0.25 if faint else 1.0
    zorder = 2 if faint else 4
    sources = _located(snapshot.get("sources", ()))
    largest_rate = max((float(s.get("rate") or 0.0) for s in sources), default=0.0)
    if sources and not faint:
        ax.scatter([s["longitude"] for s in sources], [s["latitude"] for s in sources],
                   s=[_marker_size(float(s.get("rate") or 0.0), largest_rate, 10.0, 300.0) for s in sources],
                   marker="o", color=_SOURCE_COLOUR, alpha=0.4, linewidths=0, zorder=zorder)
    placed = replicas_per_host(snapshot)
    largest_count = max((n for _, n in placed), default=0)
    if placed:
        ax.scatter([h["longitude"] for h, _ in placed], [h["latitude"] for h, _ in placed],
                   s=[_marker_size(n, largest_count, 60.0, 900.0) for _, n in placed],
                   marker="o", facecolor="#6baed6", edgecolor="#08519c", linewidths=0.8,
                   alpha=0.15 if faint else 0.45, zorder=zorder)
    for host in _located(snapshot.get("hosts", ())):
        kind, state = str(host.get("kind")), str(host.get("state"))
        ax.scatter([host["longitude"]], [host["latitude"]], s=36, marker=_HOST_MARKERS.get(kind, "o"),
                   color="#bbbbbb" if faint else _STATE_COLOURS.get(state, "#000000"),
                   edgecolor="#333333", linewidths=0.5, alpha=alpha, zorder=zorder + 1)
    if not faint:
        for host, count in placed:
            ax.annotate(str(count), (host["longitude"], host["latitude"]), xytext=(5, 5),
                        textcoords="offset points", fontsize=7, color="#08306b", zorder=zorder + 2)


def _map_legend(ax: Axes, snapshot: Mapping, initial: bool) -> None:
    """Legend entries for what the map actually shows."""
    from matplotlib.lines import Line2D

    def entry(label: str, **style: Any) -> Line2D:
        return Line2D([], [], linestyle="none", label=label, **style)

    hosts = snapshot.get("hosts", ())
    handles = [entry(f"{kind} host", marker=_HOST_MARKERS[kind], color="#ffffff", markeredgecolor="#333333",
                     markersize=7) for kind in _HOST_MARKERS if any(h.get("kind") == kind for h in hosts)]
    states = sorted({str(h.get("state")) for h in hosts})
    handles += [entry(f"host {state}", marker="o", color=_STATE_COLOURS.get(state, "#000000"), markersize=6)
                for state in states]
    handles.append(entry("replicas on a host (size ~ count)", marker="o", color="#6baed6",
                         markeredgecolor="#08519c", alpha=0.6, markersize=11))
    handles.append(entry("request source (size ~ rate)", marker="o", color=_SOURCE_COLOUR, alpha=0.5, markersize=9))
    if initial:
        handles.append(entry("initial hosts and replicas", marker="s", color="#bbbbbb", alpha=0.5, markersize=7))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def plot_map(path: Path, snapshot: Mapping, initial_snapshot: Mapping | None = None, *, title: str = "") -> None:
    """The world map PNG: countries, then (faint) the initial world, then the final request sources, replicas per
    host (size ~ count, with the count) and hosts (marker by kind, colour by state)."""
    import matplotlib

    snapshots = [s for s in (initial_snapshot, snapshot) if s is not None]
    points = [(float(i["longitude"]), float(i["latitude"])) for s in snapshots
              for key in ("hosts", "sources") for i in _located(s.get(key, ()))]
    west, east, south, north = map_extent(points)
    with matplotlib.rc_context({**_STYLE, "axes.grid": False, "axes.spines.top": True, "axes.spines.right": True}):
        figure, (ax,) = _new_figure(1, height=6.0, sharex=False)
        world_countries().plot(ax=ax, color="#eeeeee", edgecolor="#aaaaaa", linewidth=0.4, zorder=1)
        if initial_snapshot is not None:
            _draw_world(ax, initial_snapshot, faint=True)
        _draw_world(ax, snapshot, faint=False)
        _map_legend(ax, snapshot, initial_snapshot is not None)
        ax.set_xlim(west, east)
        ax.set_ylim(south, north)
        ax.set_aspect(map_aspect(south, north))
        ax.set_facecolor("#f4f9fc")
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.set_title(title or "Hosts, replicas and request sources")
        _save(figure, path)


# --- the page -----------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
table { border-collapse: collapse; margin: .5rem 0; } th, td { padding: .25rem .7rem; border-bottom: 1px solid #ddd; }
th { text-align: left; font-weight: 500; } thead th { background: #f3f3f3; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; } .missing { color: #a00; }
"""


def _cell(value: Any) -> str:
    """A table cell: numbers right-aligned, None as an em dash."""
    if value is None:
        return "<td class=n>&mdash;</td>"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape(str(value))}</td>"
    return f"<td class=n>{value:,.6g}</td>" if isinstance(value, float) else f"<td class=n>{value:,}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table whose first column labels each row (``<th>``) and whose other cells are values."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join(f"<tr><th>{html.escape(str(label))}</th>{''.join(_cell(v) for v in values)}</tr>"
                     for label, *values in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def kpi_rows(kpis: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The headline KPIs as (label, value) rows for the page."""
    cost, hosts, containers = kpis["cost"], kpis["hosts"], kpis["containers"]
    replicas, requests, distance, actions = kpis["replicas"], kpis["requests"], kpis["distance_km"], kpis["actions"]
    final = kpis["final"]
    return [
        ("Duration (s)", kpis["duration_s"]),
        ("Ticks", kpis["ticks"]),
        ("Tick (s)", kpis["tick_s"]),
        ("Total cost (USD)", cost["total_usd"]),
        ("Mean cost rate (USD/h)", cost["mean_per_hour_usd"]),
        ("Peak cost rate (USD/h)", cost["max_per_hour_usd"]),
        ("Hosts running: max", hosts["max_running"]),
        ("Hosts running: mean", hosts["mean_running"]),
        ("Cloud hosts running: max", hosts["max_cloud_running"]),
        ("Edge hosts running: max", hosts["max_edge_running"]),
        ("Replicas (all services): max", replicas["max_total"]),
        ("Replicas (all services): mean", replicas["mean_total"]),
        ("Containers starting: max", containers["max_starting"]),
        ("Requests: total", requests["total"]),
        ("Requests per second: mean", requests["mean_per_sec"]),
        (f"Distance (km): mean, weighted by {distance['weighted_by']}", distance["mean"]),
        (f"Distance (km): p95, mean of ticks weighted by {distance['weighted_by']}", distance["p95_mean"]),
        ("Distance (km): p95, worst tick", distance["p95_worst"]),
        ("Overloaded container-minutes", kpis["overloaded_container_minutes"]),
        ("Actions: total", actions["total"]),
        ("Actions per hour", actions["per_hour"]),
        ("Final hosts", final["hosts"]),
        ("Final hosts by kind and state", "; ".join(
            f"{kind}: " + ", ".join(f"{n} {state}" for state, n in states.items())
            for kind, states in final["hosts_by_kind"].items()) or None),
        ("Final containers", final["containers"]),
    ]


def render_index(kpis: Mapping[str, Any], *, has_decision_log: bool = True) -> str:
    """The report page: run identity, links, KPI tables, plots and map, all relative to the report directory."""
    e = html.escape
    decision_note = "" if has_decision_log else ' <span class="missing">(not written by this run)</span>'
    links = [
        (DECISION_LOG, "decision log: every decision with its explanation (JSON Lines)" + decision_note),
        (KPIS_JSON, "KPI summary (JSON)"),
        (KPIS_CSV, "timeline, one row per tick (CSV)"),
    ]
    services = kpis["replicas"]["by_service"]
    actions = kpis["actions"]
    map_caption = ("World map: hosts (marker by kind, colour by state), replicas per host and request sources; "
                   "faint markers show the initial world")
    figures = [*PLOTS.items(), (MAP_PNG, map_caption)]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>usm simulation report: {e(kpis['scenario'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Simulation report: {e(kpis['scenario'])}</h1>",
        '<dl class="meta">',
        f"<dt>Scenario</dt><dd>{e(kpis['scenario'])}</dd>",
        f"<dt>Policy digest</dt><dd>{e(kpis['policy_digest'])}</dd>",
        f"<dt>Seed</dt><dd>{kpis['seed']}</dd>",
        "</dl>",
        "<h2>Files</h2><ul>",
        *(f'<li><a href="{e(href)}">{e(href)}</a>: {text}</li>' for href, text in links),
        "</ul>",
        "<h2>Key figures</h2>",
        _table(("KPI", "value"), kpi_rows(kpis)),
        "<h2>Replicas by service</h2>",
        _table(("service", "max", "mean", "final"),
               [(name, v["max"], v["mean"], v["final"]) for name, v in services.items()]) if services
        else "<p>No replicas.</p>",
        "<h2>Actions by kind</h2>",
        _table(("kind", "count", "per hour"),
               [(kind, n, actions["per_hour_by_kind"][kind]) for kind, n in actions["by_kind"].items()]),
        "<h2>Plots</h2>",
        *(f'<figure><img src="{e(name)}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'
          for name, caption in figures),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)

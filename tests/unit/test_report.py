"""The simulation report: hand-computed KPIs on a tiny run, every file written and readable, determinism."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from usm.simulator.report import (
    ACTIONS_SCHEMA,
    MAP_PNG,
    PLOTS,
    REPLICAS_SCHEMA,
    TIMELINE_SCHEMA,
    action_bin_seconds,
    action_rates,
    map_extent,
    render_index,
    tick_seconds,
    world_countries,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGES = [*PLOTS, MAP_PNG]
LINKS = ["decisions.jsonl", "kpis.json", "kpis.csv"]

# A tiny run: 5 ticks of 15 s (0..60 s, so 60 s long; the last row is the end state and holds for no time).
#   cost rate 3.6, 7.2, 7.2, 3.6 USD/h for 15 s each: 0.015 + 0.03 + 0.03 + 0.015 = 0.09 USD (cumulative column)
#   overloaded 0, 2, 2, 0 during 15 s each: 60 container-seconds = 1.0 container-minute
#   requests 10, 30, 0, 20 req/s -> 150, 450, 0, 300 requests; distances weighted by them (tick 3 has none)
TIMELINE = pl.DataFrame(
    {
        "at": [0.0, 15.0, 30.0, 45.0, 60.0],
        "hosts_running": [1, 2, 2, 1, 1],
        "cloud_hosts_running": [0, 1, 1, 0, 0],
        "edge_hosts_running": [1, 1, 1, 1, 1],
        "containers_running": [2, 3, 4, 2, 2],
        "containers_starting": [1, 1, 0, 0, 0],
        "cost_per_hour_usd": [3.6, 7.2, 7.2, 3.6, 3.6],
        "cost_usd": [0.0, 0.015, 0.045, 0.075, 0.09],
        "requests_per_sec": [10.0, 30.0, 0.0, 20.0, 40.0],
        "mean_distance_km": [100.0, 200.0, None, 50.0, 999.0],
        "p95_distance_km": [150.0, 400.0, None, 80.0, 999.0],
        "overloaded_containers": [0, 2, 2, 0, 0],
    },
    schema=TIMELINE_SCHEMA,
)
# "api" 1, 2, 2, 1, 1 and "web" 2, 2, 2, 2, (no row: 0) -> totals 3, 4, 4, 3, 1
REPLICAS = pl.DataFrame(
    [(at, "api", n) for at, n in zip([0.0, 15.0, 30.0, 45.0, 60.0], [1, 2, 2, 1, 1], strict=True)]
    + [(at, "web", 2) for at in (0.0, 15.0, 30.0, 45.0)],
    schema=REPLICAS_SCHEMA,
    orient="row",
)
# 3 replicate, 1 migrate, 1 stop in a 60 s run: 300 actions per hour (180, 60, 60)
ACTIONS = pl.DataFrame(
    [
        (15.0, "replicate", "api", None, "scale-up"),
        (15.0, "replicate", "web", None, "scale-up"),
        (30.0, "migrate", "web", "web-1", "follow-clients"),
        (45.0, "stop", "api", "api-2", "idle"),
        (60.0, "replicate", "api", None, "scale-up"),
    ],
    schema=ACTIONS_SCHEMA,
    orient="row",
)
SNAPSHOT: dict[str, Any] = {
    "hosts": [
        {"name": "edge-lisbon", "kind": "edge", "state": "running", "latitude": 38.72, "longitude": -9.14,
         "region": "europe"},
        {"name": "cloud-london", "kind": "cloud", "state": "stopped", "latitude": 51.51, "longitude": -0.13,
         "region": "europe"},
    ],
    "containers": [
        {"name": "api-1", "service": "api", "host": "edge-lisbon", "state": "running"},
        {"name": "web-1", "service": "web", "host": "edge-lisbon", "state": "starting"},
    ],
    "sources": [
        {"name": "porto", "service": "api", "latitude": 41.15, "longitude": -8.61, "rate": 30.0},
        {"name": "madrid", "service": "web", "latitude": 40.42, "longitude": -3.70, "rate": 10.0},
    ],
}
INITIAL: dict[str, Any] = {
    "hosts": [dict(SNAPSHOT["hosts"][0]), dict(SNAPSHOT["hosts"][1], state="running")],
    "containers": [{"name": "web-0", "service": "web", "host": "cloud-london", "state": "running"}],
    "sources": [],
}


def report(out: Path, **changes: Any) -> dict:
    """``write_report`` on the tiny run, with keyword ``changes``."""
    arguments: dict[str, Any] = {
        "scenario_name": "tiny <iberia>", "policy_digest": "sha256:abc123", "seed": 7, "timeline": TIMELINE,
        "replicas": REPLICAS, "actions": ACTIONS, "snapshot": SNAPSHOT, "initial_snapshot": INITIAL,
    }
    return write_report(out, **{**arguments, **changes})


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One report of the tiny run (drawing takes a few seconds: shared by the tests that only read it)."""
    out = tmp_path_factory.mktemp("report")
    (out / "decisions.jsonl").write_text('{"type": "action"}\n', encoding="utf-8")
    return out, report(out)


# --- KPIs: hand-computed ------------------------------------------------------------------------------------------


def test_the_returned_kpis_are_the_json_file(written: tuple[Path, dict]) -> None:
    out, kpis = written
    assert json.loads((out / "kpis.json").read_text(encoding="utf-8")) == kpis


def test_run_identity_and_time(written: tuple[Path, dict]) -> None:
    _, kpis = written
    assert (kpis["scenario"], kpis["policy_digest"], kpis["seed"]) == ("tiny <iberia>", "sha256:abc123", 7)
    assert (kpis["ticks"], kpis["tick_s"], kpis["start_s"], kpis["duration_s"]) == (5, 15.0, 0.0, 60.0)


def test_overloaded_container_minutes(written: tuple[Path, dict]) -> None:
    assert written[1]["overloaded_container_minutes"] == 1.0


def test_cost(written: tuple[Path, dict]) -> None:
    assert written[1]["cost"] == {"total_usd": 0.09, "mean_per_hour_usd": 5.4, "max_per_hour_usd": 7.2}


def test_hosts_containers_and_replicas(written: tuple[Path, dict]) -> None:
    _, kpis = written
    assert kpis["hosts"] == {"max_running": 2, "mean_running": 1.5, "max_cloud_running": 1, "max_edge_running": 1}
    assert kpis["containers"] == {"max_running": 4, "mean_running": 2.75, "max_starting": 1}
    assert kpis["replicas"] == {
        "max_total": 4,
        "mean_total": 3.5,  # (3 + 4 + 4 + 3) / 4: the end state holds for no time
        "by_service": {"api": {"max": 2, "mean": 1.5, "final": 1}, "web": {"max": 2, "mean": 2.0, "final": 0}},
    }


def test_requests_and_request_weighted_distances(written: tuple[Path, dict]) -> None:
    _, kpis = written
    assert kpis["requests"] == {"total": 900.0, "mean_per_sec": 15.0, "max_per_sec": 40.0}
    # (150*100 + 450*200 + 300*50) / 900 and (150*150 + 450*400 + 300*80) / 900; the worst tick includes the end
    assert kpis["distance_km"] == {"mean": 133.333333, "p95_mean": 251.666667, "p95_worst": 999.0,
                                   "weighted_by": "requests"}


def test_actions_by_kind_rule_and_per_hour(written: tuple[Path, dict]) -> None:
    assert written[1]["actions"] == {
        "total": 5,
        "per_hour": 300.0,
        "by_kind": {"replicate": 3, "migrate": 1, "stop": 1, "overwork": 0, "underwork": 0},
        "per_hour_by_kind": {"replicate": 180.0, "migrate": 60.0, "stop": 60.0, "overwork": 0.0, "underwork": 0.0},
        "by_rule": {"follow-clients": 1, "idle": 1, "scale-up": 3},
    }


def test_final_world(written: tuple[Path, dict]) -> None:
    assert written[1]["final"] == {
        "hosts": 2,
        "hosts_by_kind": {"cloud": {"stopped": 1}, "edge": {"running": 1}},
        "containers": 2,
        "containers_by_state": {"running": 1, "starting": 1},
        "containers_by_service": {"api": 1, "web": 1},
        "sources": 2,
    }


def test_the_four_tick_example_gives_one_container_minute() -> None:
    ticks = tick_seconds(pl.Series([0.0, 15.0, 30.0, 45.0]))
    assert ticks.to_list() == [15.0, 15.0, 15.0, 0.0]
    assert float((pl.Series([0, 2, 2, 0]) * ticks).sum()) / 60.0 == 1.0


def test_unsorted_inputs_give_the_same_kpis(tmp_path: Path, written: tuple[Path, dict]) -> None:
    shuffled = report(tmp_path, timeline=TIMELINE.reverse(), replicas=REPLICAS.reverse(), actions=ACTIONS.reverse())
    assert shuffled == written[1]


def test_a_run_without_requests_actions_or_replicas(tmp_path: Path) -> None:
    quiet = TIMELINE.with_columns(pl.lit(0.0).alias("requests_per_sec"),
                                  pl.lit(None, pl.Float64).alias("mean_distance_km"),
                                  pl.lit(None, pl.Float64).alias("p95_distance_km"))
    kpis = report(tmp_path, timeline=quiet, actions=ACTIONS.clear(), replicas=REPLICAS.clear(),
                  snapshot={"hosts": [], "containers": [], "sources": []}, initial_snapshot=None)
    assert kpis["distance_km"] == {"mean": None, "p95_mean": None, "p95_worst": None, "weighted_by": "time"}
    assert kpis["actions"]["total"] == 0 and kpis["actions"]["per_hour"] == 0.0
    assert kpis["replicas"] == {"max_total": 0, "mean_total": 0.0, "by_service": {}}
    assert "NaN" not in (tmp_path / "kpis.json").read_text(encoding="utf-8")
    assert all((tmp_path / name).stat().st_size > 0 for name in IMAGES)


def test_a_single_tick_run_has_no_length(tmp_path: Path) -> None:
    kpis = report(tmp_path, timeline=TIMELINE.head(1), actions=ACTIONS.head(0))
    assert (kpis["ticks"], kpis["tick_s"], kpis["duration_s"]) == (1, None, 0.0)
    assert kpis["actions"]["per_hour"] is None
    assert kpis["cost"]["mean_per_hour_usd"] == 3.6  # no time weights: the plain mean


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeline: missing columns cost_usd, overloaded_containers"):
        report(tmp_path, timeline=TIMELINE.drop("cost_usd", "overloaded_containers"))


# --- files --------------------------------------------------------------------------------------------------------


def test_every_file_is_written_and_not_empty(written: tuple[Path, dict]) -> None:
    out, _ = written
    for name in [*IMAGES, "kpis.json", "kpis.csv", "index.html"]:
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name


def test_kpis_csv_round_trips_to_the_timeline(written: tuple[Path, dict]) -> None:
    out, _ = written
    read = pl.read_csv(out / "kpis.csv", schema=TIMELINE.schema)
    assert read.equals(TIMELINE, null_equal=True)
    assert (out / "kpis.csv").read_text(encoding="utf-8").splitlines()[0] == ",".join(TIMELINE.columns)


@pytest.mark.parametrize("name", IMAGES)
def test_images_are_pngs_matplotlib_reads_back(written: tuple[Path, dict], name: str) -> None:
    from matplotlib import image

    path = written[0] / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert 300 <= height <= 2000 and 800 <= width <= 2000
    assert float(pixels[..., :3].std()) > 0.01  # not a blank canvas


def test_index_shows_every_image_and_links_every_file(written: tuple[Path, dict]) -> None:
    page = (written[0] / "index.html").read_text(encoding="utf-8")
    assert set(re.findall(r'<img src="([^"]+)"', page)) == set(IMAGES)
    assert set(re.findall(r'<a href="([^"]+)"', page)) == set(LINKS)
    assert "<script" not in page.lower()
    assert not re.search(r"https?://|//cdn|src=\"//", page, flags=re.IGNORECASE)


def test_index_shows_the_run_and_escapes_text(written: tuple[Path, dict]) -> None:
    page = (written[0] / "index.html").read_text(encoding="utf-8")
    assert "tiny &lt;iberia&gt;" in page and "<iberia>" not in page
    assert "sha256:abc123" in page
    assert "<dt>Seed</dt><dd>7</dd>" in page
    assert "<th>Overloaded container-minutes</th><td class=n>1</td>" in page
    assert "<th>Total cost (USD)</th><td class=n>0.09</td>" in page


def test_index_says_when_the_decision_log_is_missing(written: tuple[Path, dict]) -> None:
    assert "not written by this run" not in (written[0] / "index.html").read_text(encoding="utf-8")
    page = render_index(written[1], has_decision_log=False)
    assert '<a href="decisions.jsonl">' in page and "not written by this run" in page


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path, written: tuple[Path, dict]) -> None:
    first, _ = written
    second = tmp_path / "again"
    second.mkdir()
    (second / "decisions.jsonl").write_bytes((first / "decisions.jsonl").read_bytes())
    report(second)
    for name in ["kpis.json", "kpis.csv", "index.html", *IMAGES]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


# --- pieces -------------------------------------------------------------------------------------------------------


def test_the_vendored_world_has_177_countries() -> None:
    world = world_countries()
    assert len(world) == 177
    assert world.crs.to_epsg() == 4326
    assert {"Portugal", "Kenya", "Australia"} <= set(world["name"])


@pytest.mark.parametrize(
    ("duration", "width"),
    [(60.0, 60), (3600.0, 300), (4 * 3600.0, 300), (8 * 3600.0, 600), (48 * 3600.0, 3600), (100 * 86400.0, 180000)],
)
def test_action_bins_are_round_and_at_most_48(duration: float, width: int) -> None:
    assert action_bin_seconds(duration) == width


def test_action_rates_use_the_real_length_of_the_last_bin() -> None:
    # a 90 s run in 60 s bins: [0, 60) holds 4 actions (240/h), [60, 90) one (the end-state action): 1 per 30 s
    width, rates = action_rates(ACTIONS.with_columns(pl.col("at") + 30.0), 30.0, 90.0)
    assert width == 60
    assert rates["bin_start_s"].to_list() == [0.0, 60.0]
    assert rates["replicate"].to_list() == [120.0, 120.0]
    assert rates["migrate"].to_list() == [60.0, 0.0]
    assert rates["stop"].to_list() == [60.0, 0.0]


def test_map_extent_keeps_every_point_and_stays_in_the_world() -> None:
    points = [(-9.14, 38.72), (13.4, 52.52), (-77.4, 38.9)]
    west, east, south, north = map_extent(points)
    assert all(west < lon < east and south < lat < north for lon, lat in points)
    assert -180 <= west and east <= 180 and -90 <= south and north <= 90
    assert map_extent([]) == (-180.0, 180.0, -58.0, 84.0)
    assert map_extent([(179.0, 89.0)])[1:4:2] == (180.0, 90.0)

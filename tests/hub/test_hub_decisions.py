"""The decision log over the API: the store's index, filtered and paged newest first, and whole records read
back from the log."""

from __future__ import annotations

import io

import pytest

from tests.hub.conftest import state_of
from usm.manager.decisionlog import DecisionLog
from usm.manager.store import index_log

RECORDS = [
    {"type": "cycle", "at": 100.0, "policy": "abc", "judged": 3},
    {"type": "evaluation", "at": 100.0, "entity": "carts-1", "decision": "replicate", "rule": "replicate-on-rx",
     "policy": "abc", "terms": {"rx_bytes_per_sec": 600000.0}},
    {"type": "action", "at": 100.0, "action": "replicate", "target": "carts", "entity": "carts-1",
     "rule": "replicate-on-rx", "policy": "abc"},
    {"type": "cycle", "at": 115.0, "policy": "abc", "judged": 3},
    {"type": "evaluation", "at": 115.0, "entity": "leiria", "decision": "overwork",
     "rule": "host-cpu-and-ram-over-90", "policy": "abc"},
]


@pytest.fixture
def log(app, tmp_path):
    path = tmp_path / "decisions.jsonl"
    stream = io.StringIO()
    DecisionLog(stream).write(iter(RECORDS))
    path.write_text(stream.getvalue())
    with app.app_context(), state_of(app).sessions.begin() as session:
        assert index_log(session, path) == len(RECORDS)
    return path


def test_decisions_are_listed_newest_first_and_filtered(admin, log):
    every = admin.get("/api/decisions").get_json()
    assert every["total"] == 5
    assert [r["at"] for r in every["items"]] == sorted((r["at"] for r in RECORDS), reverse=True)
    carts = admin.get("/api/decisions?entity=carts-1").get_json()["items"]
    assert {r["kind"] for r in carts} == {"evaluation", "action"}
    assert all(r["rule"] == "replicate-on-rx" for r in carts)
    actions = admin.get("/api/decisions?kind=action&target=carts").get_json()["items"]
    assert [(r["decision"], r["entity"]) for r in actions] == [("replicate", "carts-1")]
    window = admin.get("/api/decisions?since=110&until=120").get_json()
    assert window["total"] == 2 and {r["at"] for r in window["items"]} == {115.0}
    page = admin.get("/api/decisions?limit=2&offset=1").get_json()
    assert [r["id"] for r in page["items"]] == [r["id"] for r in every["items"][1:3]]


def test_a_record_is_read_back_whole(admin, log):
    listed = admin.get("/api/decisions?entity=carts-1&kind=evaluation").get_json()["items"][0]
    record = admin.get(f"/api/decisions/{listed['id']}").get_json()
    assert record["record"] == RECORDS[1]


def test_bad_decision_queries_and_unknown_records(admin, log):
    assert admin.get("/api/decisions/99999").status_code == 404
    assert admin.get("/api/decisions?kind=guess").status_code == 422
    backwards = admin.get("/api/decisions?since=120&until=110")
    assert backwards.status_code == 422 and "until" in backwards.get_json()["errors"]
    assert admin.get("/api/decisions?since=soon").status_code == 422
    log.unlink()
    first = admin.get("/api/decisions").get_json()["items"][0]["id"]
    gone = admin.get(f"/api/decisions/{first}")
    assert gone.status_code == 404 and "cannot be read" in gone.get_json()["message"]

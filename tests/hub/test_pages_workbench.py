"""The policy-testing UI: drafts edited or uploaded as text and checked with each problem at its line, their
policy tests run by the real runner, dry runs of a bundled scenario in worker processes (progress, then KPIs,
plots and explained decisions), two policies compared on the same run, and the bounds on all of it."""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import pytest

from tests.hub.conftest import ROOT
from tests.hub.pages import flashes, post_form, soup
from usm.policytest.runner import run_file
from usm.web.jobs import Jobs
from usm.web.pages.workbench import close, workbench

TESTS = ("default_policy_test.yaml",)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """The shipped policy with two of its own tests (the app's live policy here)."""
    target = tmp_path / "policies"
    (target / "tests").mkdir(parents=True)
    for file in (ROOT / "policies").glob("*.yaml"):
        shutil.copyfile(file, target / file.name)
    for name in TESTS:
        shutil.copyfile(ROOT / "policies" / "tests" / name, target / "tests" / name)
    shutil.copyfile(ROOT / "policies" / "tests" / "priority_test.yaml", target / "tests" / "priority_test.yaml")
    return target


@pytest.fixture(autouse=True)
def stop_jobs(app):
    yield
    close(app)


def finished(admin, url: str, seconds: float = 120) -> object:
    """The page at ``url`` once it no longer polls (its job ended)."""
    deadline = time.monotonic() + seconds
    while True:
        page = soup(admin.get(url))
        if not page.select("[data-poll]") or time.monotonic() > deadline:
            return page
        time.sleep(0.3)


def make_draft(admin, name: str = "busy") -> None:
    answer = post_form(admin, "/workbench/drafts", {"name": name, "source": "live"})
    assert answer.status_code == 302 and answer.headers["Location"] == f"/workbench/drafts/{name}"


def test_a_draft_copies_the_live_policy_and_its_own_tests(admin, policy_dir):
    make_draft(admin)
    page = soup(admin.get("/workbench/drafts/busy"))
    files = [a.get_text() for a in page.select("tbody th a")]
    assert files == ["00-settings.yaml", "hosts.yaml", "services.yaml", *(f"tests/{t}" for t in TESTS)]
    assert "loads" in page.select_one(".badge").get_text()  # priority_test names another policy: not copied
    assert post_form(admin, "/workbench/drafts", {"name": "busy", "source": "live"}).status_code == 302
    assert "exists already" in flashes(soup(admin.get("/workbench")))[0]


def test_a_draft_saved_with_an_error_shows_it_at_its_line_and_the_live_policy_is_untouched(admin, policy_dir):
    make_draft(admin)
    live = (policy_dir / "services.yaml").read_bytes()
    text = soup(admin.get("/workbench/drafts/busy/files/services.yaml")).select_one("#text").get_text()
    answer = post_form(admin, "/workbench/drafts/busy/files/services.yaml",
                       {"text": text.replace("rx_bytes_per_sec > 500k", "rx_bytes_per_sc > 500k")})
    page = soup(admin.get(answer.headers["Location"]))
    assert flashes(page) == ["Saved services.yaml. The policy does not load: 1 problem, shown at their lines."]
    marked = page.select("ol.source li.marked")
    assert len(marked) == 1 and "when: rx_bytes_per_sc > 500k" in marked[0].code.get_text()
    problem = marked[0].select_one(".line-problem").get_text()
    line = int(marked[0]["id"].removeprefix("line-"))
    assert problem.startswith(f"line {line}, column 11: bad expression") and "unknown field" in problem
    assert page.select_one("#problems a")["href"] == f"#line-{line}"
    assert "rx_bytes_per_sc" in page.select_one("#text").get_text()  # kept as typed: a draft may not load
    assert (policy_dir / "services.yaml").read_bytes() == live
    assert "1 problem" in soup(admin.get("/workbench")).get_text()


def test_a_policy_file_is_uploaded_as_a_new_draft(admin):
    policy = (ROOT / "policies" / "hosts.yaml").read_bytes()
    answer = post_form(admin, "/workbench/drafts", {"name": "hosts-only", "source": "upload",
                                                    "file": (io.BytesIO(policy), "hosts.yaml")},
                       content_type="multipart/form-data")
    assert answer.status_code == 302
    page = soup(admin.get("/workbench/drafts/hosts-only"))
    assert [a.get_text() for a in page.select("tbody th a")] == ["hosts.yaml"]
    assert workbench_text(admin, "hosts-only", "hosts.yaml") == policy.decode()
    for name, content, reason in (("Bad Name", policy, "not a draft name"),
                                  ("binary", b"\xff\xfe\x00", "not UTF-8"),
                                  ("huge", b"#" * 300_000, "at most")):
        post_form(admin, "/workbench/drafts", {"name": name, "source": "upload",
                                               "file": (io.BytesIO(content), "x.yaml")},
                  content_type="multipart/form-data")
        assert reason in flashes(soup(admin.get("/workbench")))[0]
    assert "Bad Name" not in soup(admin.get("/workbench")).get_text()


def workbench_text(admin, draft: str, file: str) -> str:
    return soup(admin.get(f"/workbench/drafts/{draft}/files/{file}")).select_one("#text").get_text()


def test_the_policy_tests_of_a_draft_give_what_the_runner_gives(admin, policy_dir, tmp_path):
    make_draft(admin)
    answer = post_form(admin, "/workbench/drafts/busy/tests")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/workbench/jobs/")
    page = finished(admin, answer.headers["Location"])
    expected = [run_file(str(policy_dir / "tests" / name)) for name in TESTS]
    passed = sum(r.passed for f in expected for r in f.results)
    assert page.select_one("[role=status] .badge").get_text().strip() == f"{passed} passed, 0 failed"
    assert [h.get_text() for h in page.select(".test-file h2")] == [f"tests/{t}" for t in TESTS]
    assert len(page.select(".checks li")) == passed


def test_a_failing_and_an_invalid_test_are_shown_with_their_reasons(admin, policy_dir):
    make_draft(admin)
    text = workbench_text(admin, "busy", "00-settings.yaml")
    post_form(admin, "/workbench/drafts/busy/files/00-settings.yaml", {"text": text.replace("replicate: 2", "replicate: 9")})
    stranger = (ROOT / "policies" / "tests" / "priority_test.yaml").read_bytes()
    post_form(admin, "/workbench/drafts/busy/new-file", {"kind": "test", "file": (io.BytesIO(stranger),
                                                                                  "priority_test.yaml")},
              content_type="multipart/form-data")
    page = finished(admin, post_form(admin, "/workbench/drafts/busy/tests").headers["Location"])
    summary = page.select_one("[role=status] .badge").get_text()
    assert "failed" in summary and "1 invalid file" in summary
    failures = [li for li in page.select(".checks li") if "FAIL" in li.select_one(".badge").get_text()]
    assert failures and failures[0].select_one("pre").get_text()
    invalid = next(s for s in page.select(".test-file") if "priority_test" in s.h2.get_text())
    assert "a test of the workbench tests the policy it belongs to" in invalid.get_text()
    assert invalid.select("ol.source li.marked")  # at the line that names the other policy


def test_a_dry_run_shows_progress_then_kpis_plots_and_explained_decisions(admin, policy_dir):
    answer = post_form(admin, "/workbench/runs", {"policy": "live", "scenario": "edge-flash-crowd", "minutes": "5",
                                                  "seed": "7"})
    url = answer.headers["Location"]
    first = soup(admin.get(url))
    assert first.select("[data-poll]") or first.select("table.rows")  # a progress view, unless already done
    page = finished(admin, url)
    job = workbench_job(admin, url)
    assert job.state == "done", job.error
    kpis = {tr.th.get_text(): tr.td.get_text() for tr in page.select("h2 + table tbody tr")}
    assert kpis["Duration (s)"] == str(job.result["kpis"]["duration_s"]) == "300.0"
    assert job.result["seed"] == 7
    plot = admin.get(page.select_one(".plots img")["src"])
    assert plot.mimetype == "image/png" and plot.data[:4] == b"\x89PNG"
    download = admin.get(f"{url}/files/kpis.json")
    assert json.loads(download.data) == job.result["kpis"]
    assert admin.get(f"{url}/files/job.json").status_code == 404
    rows = page.select("table.records > tbody > tr")
    assert rows and all(r.find_all("td", recursive=False)[1].get_text() in ("evaluation", "action", "suppressed", "step") for r in rows)
    actions = soup(admin.get(f"{url}?kind=action")).select("table.records > tbody > tr")
    assert actions and "The engine chose to" in actions[0].get_text()


def workbench_job(admin, url: str):
    with admin.client.application.app_context():
        return workbench().jobs.get(url.rsplit("/", 1)[1])


def test_two_policies_are_compared_side_by_side_on_the_same_run(admin, policy_dir):
    make_draft(admin)
    text = workbench_text(admin, "busy", "hosts.yaml")
    assert "then: underwork" in text
    post_form(admin, "/workbench/drafts/busy/files/hosts.yaml",
              {"text": text.replace("then: underwork", "then: none")})  # idle hosts are left running
    same = post_form(admin, "/workbench/compare", {"first": "live", "second": "live", "scenario": "sock-shop"})
    assert same.headers["Location"] == "/workbench"
    assert "two different policies" in flashes(soup(admin.get("/workbench")))[0]
    answer = post_form(admin, "/workbench/compare", {"first": "live", "second": "draft:busy",
                                                     "scenario": "edge-flash-crowd", "minutes": "2"})
    page = finished(admin, answer.headers["Location"], 180)
    header = [th.get_text() for th in page.select("table.rows thead th")]
    assert header == ["KPI", "The live policy", "Draft busy", "Difference"]
    rows = {tr.th.get_text(): [td.get_text().strip() for td in tr.select("td")]
            for tr in page.select("table.rows tbody tr")}
    assert rows["Duration (s)"] == ["120.0", "120.0", "same"]
    live, draft = (int(v) for v in rows["Actions: total"][:2])
    assert (live, draft) == (3, 0) and rows["Actions: total"][2] == "-3"  # the three idle hosts drained, or not
    assert float(rows["Hosts running: mean"][1]) > float(rows["Hosts running: mean"][0])
    assert len(page.select(".side-by-side.plots figure")) == 2 * 6


def test_a_viewer_reads_the_workbench_but_starts_nothing(viewer):
    page = soup(viewer.get("/workbench"))
    assert page.find("h1").get_text() == "Policy workbench" and not page.select("#dry-run")
    assert post_form(viewer, "/workbench/runs", {"policy": "live", "scenario": "sock-shop"}).status_code == 403
    assert post_form(viewer, "/workbench/drafts", {"name": "x", "source": "live"}).status_code == 403


def test_jobs_are_bounded_in_number_time_and_what_is_kept(tmp_path, policy_dir, clock):
    from usm.web.drafts import copy_policy
    from usm.web.jobs import JobRefused

    jobs = Jobs(tmp_path / "jobs", workers=1, waiting=1, keep=1, time_limit=1.0)
    try:
        def submit():
            return jobs.submit("simulation", {"scenario": "sock-shop", "policy": "live"},
                               lambda target: copy_policy(policy_dir, target), "ada", clock())

        first, second = submit(), submit()  # the first runs, the second waits
        with pytest.raises(JobRefused, match="1 jobs are waiting"):
            submit()
        deadline = time.monotonic() + 60
        while not (jobs.get(first).finished and jobs.get(second).finished) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs.get(first).error.startswith("stopped after the time limit of 1 s")
        submit()
        assert jobs.get(first) is None  # only the newest finished job is kept
    finally:
        jobs.close()

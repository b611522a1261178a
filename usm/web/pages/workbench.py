"""The policy-testing UI (the workbench): drafts of a policy edited or uploaded as text and validated with each
problem at its line; their policy tests (``usm.policytest.runner``); dry runs of a bundled scenario under the
live policy or a draft (``usm.simulator.run.simulate`` and ``usm.simulator.report``) in background worker
processes with a progress view, then their KPIs, plots and decisions; and two policies compared side by side on
the same scenario, seed and duration.

Drafts live in ``usm.web.drafts``, jobs in ``usm.web.jobs`` (bounded: a few at a time, each with a time limit,
the newest kept); both sit in the hub's instance folder, under ``workbench/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from usm.engine import Problem
from usm.engine.policy import Location
from usm.simulator.report import DECISION_LOG, KPIS_CSV, KPIS_JSON, MAP_PNG, PLOTS, kpi_rows
from usm.simulator.scenario import bundled_scenarios, load_scenario
from usm.web.drafts import DraftError, Drafts, NoDraft, copy_policy, text_of
from usm.web.hub import now, state
from usm.web.jobs import Job, JobRefused, Jobs
from usm.web.pages import admin_only
from usm.web.security import login_required

EXTENSION = "usm.workbench"
LIVE = "live"
DRAFT_PREFIX = "draft:"
DECISIONS_SHOWN = 50
DOWNLOADS = (*PLOTS, MAP_PNG, KPIS_JSON, KPIS_CSV, DECISION_LOG)
RECORD_KINDS = ("evaluation", "action", "suppressed", "step", "support", "cycle", "inventory")
DECISION_KINDS = ("evaluation", "action", "suppressed", "step")
"""What a run's page lists unless asked for other records (one ``cycle`` record per tick would drown them)."""

bp = Blueprint("workbench", __name__, url_prefix="/workbench")


@dataclass
class Workbench:
    drafts: Drafts
    jobs: Jobs


def workbench() -> Workbench:
    """The app's workbench, made on first use in its instance folder."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get(EXTENSION)
    if found is None:
        root = Path(app.instance_path) / "workbench"
        config = app.config
        found = Workbench(Drafts(root / "drafts"), Jobs(
            root / "jobs", workers=int(config.get("USM_WORKBENCH_WORKERS", 1)),
            waiting=int(config.get("USM_WORKBENCH_WAITING", 4)), keep=int(config.get("USM_WORKBENCH_KEEP", 20)),
            time_limit=float(config.get("USM_WORKBENCH_TIME_LIMIT", 900))))
        app.extensions[EXTENSION] = found
    return found


@dataclass(frozen=True)
class ScenarioChoice:
    name: str
    duration: float
    description: str


@cache
def scenarios() -> tuple[ScenarioChoice, ...]:
    """The bundled scenarios a run can use (read once per process: they ship with usm)."""
    found = []
    for name in bundled_scenarios():
        scenario = load_scenario(name)
        found.append(ScenarioChoice(name, scenario.duration, scenario.description.strip().splitlines()[0]
                                    if scenario.description.strip() else ""))
    return tuple(found)


def policy_source(choice: str) -> tuple[Path, str]:
    """The folder of the policy named by a form (``live`` or ``draft:NAME``) and how pages name it."""
    if choice == LIVE:
        return state().policy.directory, "the live policy"
    if choice.startswith(DRAFT_PREFIX):
        name = choice.removeprefix(DRAFT_PREFIX)
        return workbench().drafts.folder(name), f"draft {name}"
    raise DraftError(f"{choice!r} is not a policy: choose the live policy or a draft")


def _submit_run(scenario: str, minutes: str, seed: str, choice: str) -> str:
    """A dry-run job; ``DraftError`` or ``JobRefused`` saying what is wrong."""
    known = {s.name: s for s in scenarios()}
    if scenario not in known:
        raise DraftError(f"there is no bundled scenario {scenario!r}; choose one of {', '.join(known)}")
    spec: dict[str, Any] = {"scenario": scenario}
    if minutes.strip():
        try:
            duration = float(minutes) * 60
        except ValueError:
            raise DraftError(f"the duration {minutes!r} is not a number of minutes") from None
        if not 0 < duration:
            raise DraftError("the duration must be more than 0 minutes")
        spec["duration"] = min(duration, known[scenario].duration)
    if seed.strip():
        if not seed.strip().isdigit():
            raise DraftError(f"the seed {seed!r} is not a whole number of 0 or more")
        spec["seed"] = int(seed)
    folder, label = policy_source(choice)
    spec["policy"] = label
    return workbench().jobs.submit("simulation", spec, lambda target: copy_policy(folder, target),
                                   g.identity.name, now())


@bp.get("")
@login_required
def index() -> Any:
    bench = workbench()
    drafts = [(name, *bench.drafts.check(name), len(bench.drafts.files(name))) for name in bench.drafts.names()]
    return render_template("workbench/index.html", drafts=drafts, jobs=bench.jobs.newest(), scenarios=scenarios(),
                           chosen=request.args.get("policy", LIVE))


@bp.post("/drafts")
@login_required
@admin_only
def create_draft() -> Any:
    name = request.form.get("name", "").strip()
    upload = request.files.get("file")
    try:
        if request.form.get("source") == "upload":
            if upload is None or not upload.filename:
                raise DraftError("choose a policy file to upload, or start from a copy of the live policy")
            workbench().drafts.create_from(name, Path(upload.filename).name, upload.read())
        else:
            workbench().drafts.create(name, state().policy.directory)
    except DraftError as refused:
        flash(f"No draft made: {refused}", "error")
        return redirect(url_for("workbench.index"))
    flash(f"Made draft {name}.", "ok")
    return redirect(url_for("workbench.draft", name=name))


def _problems_by_file(problems: tuple[Problem, ...]) -> dict[str, list[Problem]]:
    found: dict[str, list[Problem]] = {}
    for problem in problems:
        found.setdefault(problem.location.file, []).append(problem)
    return found


@bp.get("/drafts/<name>")
@login_required
def draft(name: str) -> Any:
    bench = workbench()
    try:
        files = bench.drafts.files(name)
        policy, problems = bench.drafts.check(name)
    except NoDraft as missing:
        return render_template("message.html", title="No such draft", message=str(missing)), 404
    return render_template("workbench/draft.html", name=name, files=files, policy=policy, problems=problems,
                           by_file=_problems_by_file(problems))


@bp.get("/drafts/<name>/files/<path:file>")
@login_required
def edit_file(name: str, file: str) -> Any:
    bench = workbench()
    try:
        text = bench.drafts.read(name, file)
        policy, problems = bench.drafts.check(name)
    except DraftError as missing:
        return render_template("message.html", title="No such draft file", message=str(missing)), 404
    return _editor(name, file, text, policy, problems)


def _editor(name: str, file: str, text: str, policy: Any, problems: tuple[Problem, ...], status: int = 200) -> Any:
    here = [p for p in problems if p.location.file == file]
    marks: dict[int, list[Problem]] = {}
    for problem in here:
        marks.setdefault(problem.location.line, []).append(problem)
    return render_template("workbench/file.html", name=name, file=file, text=text, policy=policy, problems=problems,
                           in_file=here, marks=marks, lines=text.splitlines(),
                           rows=min(40, max(12, text.count("\n") + 3))), status


@bp.post("/drafts/<name>/files/<path:file>")
@login_required
@admin_only
def save_file(name: str, file: str) -> Any:
    bench = workbench()
    text = request.form.get("text", "")
    try:
        bench.drafts.write(name, file, text)
        policy, problems = bench.drafts.check(name)
    except DraftError as refused:
        flash(f"Not saved: {refused}", "error")
        return _editor(name, file, text, None, (), 422)
    if problems:
        count = len(problems)
        flash(f"Saved {file}. The policy does not load: {count} problem{'s' if count != 1 else ''}, shown at "
              "their lines.", "error")
    else:
        flash(f"Saved {file}. The policy loads: version {policy.digest}, {len(policy.rules)} rules.", "ok")
    return redirect(url_for("workbench.edit_file", name=name, file=file))


@bp.post("/drafts/<name>/new-file")
@login_required
@admin_only
def new_file(name: str) -> Any:
    bench = workbench()
    upload = request.files.get("file")
    kind = request.form.get("kind", "policy")
    try:
        if upload is not None and upload.filename:
            file, text = Path(upload.filename).name, text_of(upload.read())
        else:
            file, text = request.form.get("file", "").strip(), ""
        file = f"tests/{file}" if kind == "test" else file
        if any(f.name == file for f in bench.drafts.files(name)) and not (upload and upload.filename):
            raise DraftError(f"draft {name} has a file {file} already; open it to edit it")
        bench.drafts.write(name, file, text)
    except DraftError as refused:
        flash(f"No file added: {refused}", "error")
        return redirect(url_for("workbench.draft", name=name))
    flash(f"{'Uploaded' if upload and upload.filename else 'Added'} {file}.", "ok")
    return redirect(url_for("workbench.edit_file", name=name, file=file))


@bp.post("/drafts/<name>/files/<path:file>/delete")
@login_required
@admin_only
def delete_file(name: str, file: str) -> Any:
    try:
        workbench().drafts.remove_file(name, file)
    except DraftError as refused:
        flash(str(refused), "error")
    else:
        flash(f"Deleted {file} from draft {name}.", "ok")
    return redirect(url_for("workbench.draft", name=name))


@bp.post("/drafts/<name>/delete")
@login_required
@admin_only
def delete_draft(name: str) -> Any:
    if request.form.get("confirm") != "yes":
        flash(f"Tick the box to confirm that draft {name} is to be deleted.", "error")
        return redirect(url_for("workbench.draft", name=name))
    try:
        workbench().drafts.remove(name)
    except DraftError as refused:
        flash(str(refused), "error")
    else:
        flash(f"Deleted draft {name}.", "ok")
    return redirect(url_for("workbench.index"))


@bp.post("/drafts/<name>/tests")
@login_required
@admin_only
def run_tests(name: str) -> Any:
    bench = workbench()
    try:
        folder = bench.drafts.folder(name)
        job = bench.jobs.submit("tests", {"policy": f"draft {name}", "draft": name},
                                lambda target: copy_policy_and_tests(folder, target), g.identity.name, now())
    except (DraftError, JobRefused) as refused:
        flash(str(refused), "error")
        return redirect(url_for("workbench.draft", name=name))
    return redirect(url_for("workbench.job", job_id=job))


def copy_policy_and_tests(folder: Path, target: Path) -> None:
    """A draft as it is, every test included (a test naming another policy is reported as such by the run)."""
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns(".*"))


@bp.post("/runs")
@login_required
@admin_only
def run() -> Any:
    form = request.form
    try:
        job = _submit_run(form.get("scenario", ""), form.get("minutes", ""), form.get("seed", ""),
                          form.get("policy", LIVE))
    except (DraftError, JobRefused) as refused:
        flash(f"No dry run started: {refused}", "error")
        return redirect(url_for("workbench.index"))
    return redirect(url_for("workbench.job", job_id=job))


@bp.post("/compare")
@login_required
@admin_only
def compare() -> Any:
    form = request.form
    first, second = form.get("first", LIVE), form.get("second", LIVE)
    try:
        if first == second:
            raise DraftError("choose two different policies to compare")
        a = _submit_run(form.get("scenario", ""), form.get("minutes", ""), form.get("seed", ""), first)
        b = _submit_run(form.get("scenario", ""), form.get("minutes", ""), form.get("seed", ""), second)
    except (DraftError, JobRefused) as refused:
        flash(f"No comparison started: {refused}", "error")
        return redirect(url_for("workbench.index"))
    return redirect(url_for("workbench.comparison", first=a, second=b))


def _job_or_404(job_id: str) -> Job:
    job = workbench().jobs.get(job_id)
    if job is None:
        abort(404)
    return job


def decisions_of(job: Job, kind: str, entity: str, rule: str, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of the run's decision log records that match, and how many match in all. ``kind`` is a record
    type, "all", or "" for decisions, actions and steps."""
    log = job.directory / "report" / DECISION_LOG
    if not log.is_file():
        return [], 0
    kinds = set(RECORD_KINDS) if kind == "all" else {kind} if kind else set(DECISION_KINDS)
    shown, total = [], 0
    for record in _records(log):
        if record.get("type") not in kinds or (entity and entity not in (record.get("entity"),
                                                                               record.get("target"))) \
                or (rule and record.get("rule") != rule):
            continue
        if offset <= total < offset + DECISIONS_SHOWN:
            shown.append(record)
        total += 1
    return shown, total


def _records(log: Path) -> Iterator[dict[str, Any]]:
    with log.open(encoding="utf-8") as stream:
        for line in stream:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def test_listing(job: Job, file: str, problems: list[dict[str, Any]]) -> tuple[list[str], dict[int, list[Problem]]]:
    """The lines of a file of a test run's snapshot, with the problems found in it."""
    path = (job.directory / "policy" / file).resolve()
    if not path.is_relative_to((job.directory / "policy").resolve()) or not path.is_file():
        return [], {}
    marks: dict[int, list[Problem]] = {}
    for p in problems:
        if p["file"] == file:
            marks.setdefault(p["line"], []).append(Problem(Location(file, p["line"], p["column"]), p["message"],
                                                           p.get("hint", "")))
    return path.read_text(encoding="utf-8").splitlines(), marks


@bp.get("/jobs/<job_id>")
@login_required
def job(job_id: str) -> Any:
    found = _job_or_404(job_id)
    kind, entity, rule = (request.args.get(k, "").strip() for k in ("kind", "entity", "rule"))
    number = max(1, request.args.get("page", 1, type=int) or 1)
    records, total = ([], 0)
    if found.kind == "simulation" and found.state == "done":
        records, total = decisions_of(found, kind, entity, rule, (number - 1) * DECISIONS_SHOWN)
    return render_template("workbench/job.html", job=found, kpis=kpi_rows(found.result["kpis"])
                           if found.kind == "simulation" and found.result else [], plots=PLOTS, map_png=MAP_PNG,
                           records=records, total=total, number=number, size=DECISIONS_SHOWN,
                           filters={"kind": kind, "entity": entity, "rule": rule}, kinds=RECORD_KINDS,
                           listing=test_listing)


@bp.get("/jobs/<job_id>/files/<name>")
@login_required
def job_file(job_id: str, name: str) -> Any:
    found = _job_or_404(job_id)
    if name not in DOWNLOADS:
        abort(404)
    return send_from_directory(found.directory / "report", name, as_attachment=not name.endswith(".png"))


@bp.get("/compare/<first>/<second>")
@login_required
def comparison(first: str, second: str) -> Any:
    a, b = _job_or_404(first), _job_or_404(second)
    rows = []
    if a.state == b.state == "done" and a.result and b.result:
        for (label, left), (_, right) in zip(kpi_rows(a.result["kpis"]), kpi_rows(b.result["kpis"]), strict=True):
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
            rows.append((label, left, right, round(right - left, 6) if numbers else None))
    return render_template("workbench/compare.html", a=a, b=b, rows=rows, plots=PLOTS, map_png=MAP_PNG)


def close(app: Flask) -> None:
    """Stop the app's running jobs (tests and ``usm serve`` call it when they end)."""
    found = app.extensions.get(EXTENSION)
    if found is not None:
        found.jobs.close()


__all__ = ["EXTENSION", "Workbench", "bp", "close", "decisions_of", "workbench"]

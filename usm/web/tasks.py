"""What the workbench's worker processes run (``usm.web.jobs.work`` calls them by kind): a dry-run simulation of a
bundled scenario under a policy, with its report, and a policy's tests. Each takes the job's spec, the policy
snapshot, its output folder and a ``progress(done, total)`` callback, and returns what the job's page shows, as
JSON values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from usm.engine import InvalidSource, Problem, load_policy
from usm.engine.policy import Location
from usm.policytest import report as test_report
from usm.policytest.runner import FileResult, run_file
from usm.simulator.report import write_report
from usm.simulator.run import simulate
from usm.simulator.scenario import load_scenario
from usm.web.drafts import policy_named

Progress = Callable[[int, int], None]
TESTS_DIR = "tests"


def simulation(spec: dict[str, Any], policy_dir: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """Simulate ``spec["scenario"]`` (for at most ``spec["duration"]`` seconds) under the policy; the report goes
    to ``out`` (KPIs, plots, map, the decision log)."""
    scenario = load_scenario(spec["scenario"])
    if spec.get("duration"):
        scenario = dataclasses.replace(scenario, duration=min(scenario.duration, float(spec["duration"])))
    policy = load_policy(policy_dir)
    run = simulate(scenario, policy, seed=spec.get("seed"), out=out, progress=progress)
    kpis = write_report(out, scenario_name=scenario.name, policy_digest=policy.digest, seed=run.seed,
                        timeline=run.timeline, replicas=run.replicas, actions=run.actions, snapshot=run.final,
                        initial_snapshot=run.initial)
    return {"kpis": kpis, "scenario": scenario.name, "duration": scenario.duration, "ticks": run.ticks,
            "seed": run.seed, "digest": policy.digest, "steps": run.steps, "actions": run.actions.height}


def policy_tests(spec: dict[str, Any], policy_dir: Path, out: Path, progress: Progress) -> dict[str, Any]:
    """Run every test file in the policy's ``tests/`` folder; a test must test this policy (``policy: ..``)."""
    files = sorted((policy_dir / TESTS_DIR).glob("*.y*ml"))
    results: list[FileResult] = []
    for number, file in enumerate(files, start=1):
        results.append(_own_policy_problem(file, policy_dir) or run_file(str(file)))
        progress(number, len(files))
    passed, failed = test_report.counts(results)
    unmatched = [rule for rules in test_report.coverage(results).values() for rule in rules]
    return {"files": [_file_result(r, policy_dir) for r in results], "passed": passed, "failed": failed,
            "invalid": sum(1 for r in results if r.invalid), "unmatched": unmatched}


def _own_policy_problem(file: Path, policy_dir: Path) -> FileResult | None:
    """A result saying why ``file`` cannot run here when it names a policy other than the one under test."""
    named = policy_named(file)
    if named is None or (file.parent / named).resolve() == policy_dir.resolve():
        return None
    line = next((n for n, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1)
                 if text.startswith("policy:")), 1)
    problem = Problem(Location(file.name, line, 1), f"this test names policy {named!r}; a test of the workbench "
                      "tests the policy it belongs to", "write policy: .. (the folder above tests/)")
    return FileResult(str(file), invalid=InvalidSource([problem]))


def _file_result(result: FileResult, policy_dir: Path) -> dict[str, Any]:
    name = _relative(result.path, policy_dir)
    return {
        "file": name,
        "invalid": [{"file": _relative(p.location.file, policy_dir), "line": p.location.line,
                     "column": p.location.column, "message": p.message, "hint": p.hint}
                    for p in result.invalid.problems] if result.invalid else None,
        "checks": [{"at": r.check.at, "line": r.check.location.line, "passed": r.passed,
                    "failures": list(r.failures)} for r in result.results],
    }


def _relative(path: str, policy_dir: Path) -> str:
    """A file named as the workbench shows it: ``tests/x_test.yaml`` or ``services.yaml``."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = (policy_dir / TESTS_DIR / candidate) if (policy_dir / TESTS_DIR / candidate).exists() \
            else policy_dir / candidate
    try:
        return str(candidate.resolve().relative_to(policy_dir.resolve()))
    except ValueError:
        return candidate.name


TASKS: dict[str, Callable[[dict[str, Any], Path, Path, Progress], dict[str, Any]]] = {
    "simulation": simulation,
    "tests": policy_tests,
}

__all__ = ["TASKS", "policy_tests", "simulation"]

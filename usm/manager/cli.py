"""The ``usm`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from usm.engine import InvalidSource, load_policy

STYLES = {"ok": "green", "fail": "red bold", "detail": "", "error": "red"}


@click.group()
@click.version_option(package_name="usm")
def main() -> None:
    """usm: keeps microservices in the right place across cloud and edge hosts."""


@main.group()
def policy() -> None:
    """Check and test policies."""


@policy.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def policy_check(path: Path) -> None:
    """Validate the policy directory (or file) PATH: exit 0 when valid, 2 with every problem."""
    console = Console(highlight=False)
    try:
        loaded = load_policy(path)
    except InvalidSource as invalid:
        for problem in invalid.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(invalid.problems)} problem{'s' if len(invalid.problems) != 1 else ''}: "
                   "the policy was not loaded", err=True)
        sys.exit(2)
    table = Table("rule", "scope", "target", "priority", "when", "then", title=f"{path} (version {loaded.digest})")
    for rule in loaded.rules:
        table.add_row(rule.name, rule.scope.value, ", ".join(rule.targets) if rule.targets else "*",
                      str(rule.priority), rule.when_text, rule.then.value)
    console.print(table)
    console.print(f"ok: {len(loaded.rules)} rules, {len(loaded.simulated_metrics)} simulated metrics, "
                  f"period {loaded.settings.period:g}s")


@policy.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--junit", type=click.Path(path_type=Path), help="Also write the results as JUnit XML.")
@click.option("--coverage", is_flag=True, help="List the rules that matched in no test.")
def policy_test(files: tuple[Path, ...], junit: Path | None, coverage: bool) -> None:
    """Run policy test FILES: exit 0 all passed, 1 some failed, 2 a file is invalid."""
    from usm.policytest import report, run_file

    console = Console(highlight=False, soft_wrap=True)
    results = []
    for file in files:
        result = run_file(str(file))
        results.append(result)
        for style, line in report.text_lines([result]):
            console.print(line, style=STYLES[style] or None, markup=False)
    if coverage:
        for source, unmatched in report.coverage(results).items():
            if unmatched:
                console.print(f"coverage: {source}: never matched: {', '.join(unmatched)}", markup=False)
            else:
                console.print(f"coverage: {source}: every rule matched", markup=False)
    if junit:
        junit.write_bytes(report.junit_xml(results))
    console.print(report.summary(results), markup=False)
    sys.exit(report.exit_status(results))

"""The ``usm`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from usm.engine.yamldoc import InvalidSource

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
        from usm.engine import load_policy

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


@main.group()
def db() -> None:
    """The inventory store: a SQLite file, or PostgreSQL for a master and its workers."""


@db.command("upgrade")
@click.option("--db", "target", envvar="USM_DATABASE", default="usm.db", show_default=True,
              help="A SQLite file, or a PostgreSQL URL such as postgresql://usm@127.0.0.1/usm (the password comes "
                   "from PGPASSWORD or ~/.pgpass). Also $USM_DATABASE.")
@click.option("--revision", default="head", show_default=True, help="The schema revision to migrate to.")
def db_upgrade(target: str, revision: str) -> None:
    """Create or migrate the store's schema; a store already at the revision is left as it is."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from usm.manager.store import StoreError
    from usm.manager.store.database import open_engine, upgrade

    try:
        engine = open_engine(target)
    except StoreError as refused:
        click.echo(f"usm db upgrade: {refused}", err=True)
        sys.exit(2)
    where = engine.url.render_as_string(hide_password=True)
    try:
        before, after = upgrade(engine, revision)
    except (SQLAlchemyError, CommandError) as failed:
        click.echo(f"usm db upgrade: {where}: {getattr(failed, 'orig', None) or failed}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    done = f"already at revision {after}" if before == after else f"migrated from {before or 'empty'} to {after}"
    click.echo(f"{where}: {done}")


@main.group()
def catalog() -> None:
    """The demo app catalogue: Sock Shop, Online Boutique, Hotel Reservation, Media and Social Network."""


@catalog.command("list")
def catalog_list() -> None:
    """The catalogue's apps: services, launch waves and expected memory."""
    from usm.catalog import catalog as apps

    table = Table("app", "services", "waves", "expected memory", "title")
    for app in apps():
        memory = sum(s.memory * max(1, s.min_replicas) for s in app.services) / 2**30
        table.add_row(app.name, str(len(app.services)), str(len(app.launch_plan().waves)), f"{memory:.2f} GiB",
                      app.title)
    Console().print(table)


@catalog.command("import")
@click.option("--db", "target", envvar="USM_DATABASE", default="usm.db", show_default=True,
              help="A SQLite file, or a PostgreSQL URL such as postgresql://usm@127.0.0.1/usm (the password comes "
                   "from PGPASSWORD or ~/.pgpass). Also $USM_DATABASE.")
@click.option("--app", "names", multiple=True, help="Import only this app (repeatable; default: every app).")
def catalog_import(target: str, names: tuple[str, ...]) -> None:
    """Put the catalogue's apps and their services into the store. What is stored under their names already is
    kept as it is, so importing again changes nothing."""
    from sqlalchemy.exc import SQLAlchemyError

    from usm.catalog import catalog_app, catalog_names
    from usm.manager.catalogimport import import_app
    from usm.manager.store import StoreError
    from usm.manager.store.database import open_engine, require_current, sessions

    unknown = [n for n in names if n not in catalog_names()]
    if unknown:
        raise click.BadParameter(f"no app {', '.join(unknown)} in the catalogue (there are: "
                                 f"{', '.join(catalog_names())})", param_hint="--app")
    try:
        engine = open_engine(target)
        require_current(engine)
    except StoreError as refused:
        click.echo(f"usm catalog import: {refused}", err=True)
        sys.exit(2)
    try:
        with sessions(engine).begin() as session:
            done = [import_app(session, catalog_app(name)) for name in names or catalog_names()]
    except (StoreError, SQLAlchemyError) as failed:
        click.echo(f"usm catalog import: nothing was imported: {getattr(failed, 'orig', None) or failed}", err=True)
        sys.exit(1)
    finally:
        engine.dispose()
    for imported in done:
        kept = f", {len(imported.kept)} kept as stored" if imported.kept else ""
        app = "created" if imported.app_created else "kept as stored"
        click.echo(f"{imported.app}: app {app}; {len(imported.created)} services created{kept}")


@main.command()
@click.argument("scenario")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path),
              help="The policy directory (default: the scenario's, else ./policies).")
@click.option("--seed", type=int, help="Override the scenario's seed.")
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the report (default: out/<scenario>).")
def simulate(scenario: str, policy_path: Path | None, seed: int | None, out: Path | None) -> None:
    """Run SCENARIO (a file, or a bundled name such as sock-shop) in the dry-run simulator:
    the real engine, placement and control loop on a simulated world and a virtual clock."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from usm.simulator.report import write_report
    from usm.simulator.run import simulate as run_simulation
    from usm.simulator.scenario import load_scenario

    console = Console(highlight=False)
    try:
        loaded = load_scenario(scenario)
        path = policy_path or loaded.policy or Path("policies")
        from usm.engine import load_policy

        policy_ = load_policy(path, period=loaded.tick)
    except InvalidSource as invalid:
        for problem in invalid.problems:
            click.echo(str(problem), err=True)
        sys.exit(2)
    out = out or Path("out") / loaded.name
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} ticks"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"simulating {loaded.name}", total=loaded.ticks)
        result = run_simulation(loaded, policy_, seed=seed, out=out,
                                progress=lambda done, total: progress.update(task, completed=done))
    summary = write_report(out, scenario_name=loaded.name, policy_digest=policy_.digest, seed=result.seed,
                           timeline=result.timeline, replicas=result.replicas, actions=result.actions,
                           snapshot=result.final, initial_snapshot=result.initial)
    console.print(summary_table(summary, f"{loaded.name}: policy {policy_.digest}, seed {result.seed}"))
    console.print(f"report: {out / 'index.html'}")


SUMMARY = (
    ("simulated time", ("duration_s",), "{:,.0f} s"),
    ("cloud cost", ("cost", "total_usd"), "{:,.2f} USD"),
    ("replicas (mean, max)", (("replicas", "mean_total"), ("replicas", "max_total")), "{:,.1f}, {:,.0f}"),
    ("client-to-replica distance (mean, p95)", (("distance_km", "mean"), ("distance_km", "p95_mean")),
     "{:,.0f} km, {:,.0f} km"),
    ("overloaded container-minutes", ("overloaded_container_minutes",), "{:,.1f}"),
    ("actions (total, per hour)", (("actions", "total"), ("actions", "per_hour")), "{:,.0f}, {:,.1f}"),
    ("hosts, containers at the end", (("final", "hosts"), ("final", "containers")), "{:,.0f}, {:,.0f}"),
)


def summary_table(summary: dict, title: str) -> Table:
    """The few KPIs a newcomer looks at first; kpis.json has all of them."""
    def get(path: tuple[str, ...]) -> float:
        value: object = summary
        for key in path:
            value = value.get(key, {}) if isinstance(value, dict) else {}
        return float(value) if isinstance(value, (int, float)) else float("nan")

    table = Table("KPI", "value", title=title)
    for label, paths, template in SUMMARY:
        paths = paths if isinstance(paths[0], tuple) else (paths,)
        table.add_row(label, template.format(*(get(p) for p in paths)))
    return table


@main.command("location-monitor")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=1919, show_default=True, help="The port to listen on.")
@click.option("--retention", default="15m", show_default=True,
              help="How long counts are kept (90s, 15m, 1h); also the longest window a GET may ask for.")
@click.option("--max-points", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="At most this many (service, location) points; when all are taken, a new location is merged "
                   "into its service's nearest point.")
@click.option("--resolution", default="5s", show_default=True, help="The width of a time bucket: windows are "
              "exact to one bucket.")
@click.option("--precision", type=click.IntRange(0, 6), default=2, show_default=True,
              help="Decimals locations are rounded to (2: about 1 km).")
def location_monitor(host: str, port: int, retention: str, max_points: int, resolution: str, precision: int) -> None:
    """Serve the request-location monitor: POST /metrics, GET /metrics?interval=SECONDS, GET /health."""
    from usm.engine.expressions import parse_duration
    from usm.locationmonitor.counts import LocationCounts
    from usm.locationmonitor.server import serve

    try:
        counts = LocationCounts(parse_duration(retention), max_points, parse_duration(resolution), precision)
    except ValueError as invalid:
        raise click.BadParameter(str(invalid)) from None
    serve(host, port, counts, announce=lambda line: click.echo(line, err=True))


def _problems_exit(invalid: InvalidSource, what: str) -> None:
    for problem in invalid.problems:
        click.echo(str(problem), err=True)
    click.echo(f"{len(invalid.problems)} problem{'s' if len(invalid.problems) != 1 else ''}: {what}", err=True)
    sys.exit(2)


@main.command("run")
@click.option("--policy", "policy_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The policy directory; edits are validated and take effect between cycles.")
@click.option("--site", "site_file", required=True, type=click.Path(path_type=Path),
              help="The site file: hosts, apps, services, Prometheus and location monitors.")
@click.option("--dry-run", is_flag=True, help="Decide and record the plan; touch nothing.")
@click.option("--live", is_flag=True, help="Decide and act on the hosts.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=Path("usm-data"),
              show_default=True, help="Where the history (history.duckdb) and decision log (decisions.jsonl) go.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9464, show_default=True,
              help="Serve the manager's metrics for Prometheus on 127.0.0.1 at this port (0: do not).")
@click.option("--cycles", type=click.IntRange(min=1), help="Stop after this many cycles (default: run until stopped).")
def run(policy_dir: Path, site_file: Path, dry_run: bool, live: bool, data: Path, metrics_port: int,
        cycles: int | None) -> None:
    """Run the control loop on the wall clock against the hosts of a site, at the policy's period."""
    import logging
    import signal
    from contextlib import ExitStack

    from usm.manager.metrics import serve
    from usm.manager.site import load_site
    from usm.manager.wiring import DataFiles, live_runner

    if dry_run == live:
        raise click.UsageError("choose one of --dry-run (decide and record, touch nothing) and --live (act)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        site = load_site(site_file)
    except InvalidSource as invalid:
        _problems_exit(invalid, "the site file was not loaded")
    with ExitStack() as stack:
        try:
            runner = live_runner(site, policy_dir, DataFiles(data), dry_run, stack)
        except InvalidSource as invalid:
            _problems_exit(invalid, "the policy was not loaded")
        if metrics_port:
            serve(runner.metrics, metrics_port)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: runner.scheduler.stop())
        mode = "dry run: nothing is touched" if dry_run else "live: plans are carried out"
        click.echo(f"usm run ({mode}): {len(site.hosts)} hosts, policy {runner.loop.engine.policy.digest[:12]}, "
                   f"every {runner.scheduler.period:g}s; records in {data}", err=True)
        ran = runner.run(cycles)
        click.echo(f"stopped after {ran} cycle{'s' if ran != 1 else ''}", err=True)


LAB_DIR = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("lab"),
                       show_default=True, help="The lab's directory: its processes' PIDs, logs, keys and files.")


@main.group()
def lab() -> None:
    """A local lab: pseudo-hosts on this machine (dockerd, sshd, node_exporter each) for usm run."""


@lab.command("up")
@click.option("--hosts", "count", type=click.IntRange(min=1), default=2, show_default=True,
              help="How many pseudo-hosts (each at its own place on the map).")
@click.option("--cores", type=float, help="Cores each pseudo-host declares (default: this machine's). They all "
                                          "report this machine's load: declare more on a machine kept busy.")
@LAB_DIR
def lab_up(count: int, cores: float | None, directory: Path) -> None:
    """Start the lab and write its site file, env file and demo policy into its directory."""
    from usm.lab.state import LabError, LabFiles
    from usm.lab.up import up

    try:
        state = up(directory, count, cores, announce=lambda line: click.echo(line, err=True))
    except LabError as error:
        click.echo(f"usm lab up: {error}", err=True)
        sys.exit(1)
    files = LabFiles(directory.absolute())
    table = Table("host", "docker", "node exporter", title=f"lab in {files.directory}")
    for host in state.hosts:
        table.add_row(host["name"], host["docker"], host["node_exporter"])
    Console(highlight=False).print(table)
    for name, url in state.urls.items():
        click.echo(f"{name}: {url}")
    click.echo(f"\nnext: . {files.env}\n      usm run --dry-run --site {files.site} --policy {files.policy} "
               f"--data {files.directory / 'dry-run'}\n      usm lab down --dir {directory}")


@lab.command("status")
@LAB_DIR
def lab_status(directory: Path) -> None:
    """Show the lab's processes: exit 0 when all run, 1 when some stopped, 2 when there is no lab."""
    from usm.lab.state import LabError, status

    try:
        state, processes = status(directory)
    except LabError as error:
        click.echo(f"usm lab status: {error}", err=True)
        sys.exit(2)
    table = Table("process", "pid", "state", title=f"lab in {directory.absolute()}")
    for record, running in processes:
        table.add_row(record.name, str(record.pid), "running" if running else "[red]stopped[/red]")
    Console(highlight=False).print(table)
    for host in state.hosts:
        click.echo(f"{host['name']}: docker {host['docker']}, node exporter {host['node_exporter']}")
    for name, url in state.urls.items():
        click.echo(f"{name}: {url}")
    sys.exit(0 if all(running for _, running in processes) else 1)


@lab.command("down")
@LAB_DIR
@click.option("--keep", is_flag=True, help="Keep the lab's files (logs, site file) after stopping it.")
def lab_down(directory: Path, keep: bool) -> None:
    """Stop every process of the lab by PID, unmount what its engines left, and remove its directory."""
    from usm.lab.state import LabError, down

    try:
        stopped = down(directory, keep)
    except LabError as error:
        click.echo(f"usm lab down: {error}", err=True)
        sys.exit(2)
    click.echo(f"stopped {len(stopped.processes)} processes" + ("" if keep else f"; removed {directory}"))
    if stopped.leftovers:
        click.echo(f"also stopped {len(stopped.leftovers)} processes left behind:\n  " + "\n  ".join(stopped.leftovers))


def _moment(text: str) -> float:
    """Seconds since the epoch, from a number or an ISO 8601 time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither seconds since the epoch nor an ISO 8601 time "
                                 "such as 2026-11-26T14:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@policy.command("backtest")
@click.option("--policy", "policy_dir", required=True, type=click.Path(path_type=Path),
              help="The candidate policy (a directory or file).")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=Path("usm-data"),
              show_default=True, help="The records of a run (history.duckdb and decisions.jsonl).")
@click.option("--from", "start", help="First cycle compared (ISO 8601 or epoch seconds; default: the first).")
@click.option("--to", "end", help="Last cycle compared (default: the last).")
@click.option("--warmup", help="Cycles replayed before --from without comparing (default: the candidate's "
                               "longest streak times its period, or its longest cooldown).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Show at most this many differing decisions.")
def policy_backtest(policy_dir: Path, data: Path, start: str | None, end: str | None, warmup: str | None,
                    limit: int) -> None:
    """Replay a recorded run through a candidate policy and show, entity by entity, where it decides otherwise.

    Exit 0 when it decides as recorded, 1 when it differs, 2 on bad input. Run it on the records of a stopped
    run, or on a copy: DuckDB lets one process at a time open the history."""
    from datetime import UTC, datetime

    from usm.engine.expressions import parse_duration
    from usm.manager.backtest import backtest
    from usm.manager.wiring import DataFiles

    files = DataFiles(data)
    for path in (files.decisions, files.history):
        if not path.is_file():
            raise click.BadParameter(f"{path} does not exist: give --data the directory of a run's records")
    try:
        from usm.engine import load_policy

        candidate = load_policy(policy_dir)
    except InvalidSource as invalid:
        _problems_exit(invalid, "the candidate policy was not loaded")
    try:
        lead = None if warmup is None else parse_duration(warmup)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--warmup") from None
    result = backtest(candidate, files.decisions, files.history,
                      _moment(start) if start else float("-inf"), _moment(end) if end else float("inf"), lead)

    def when(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at > 10**8 else f"{at:g}s"

    console = Console(highlight=False)
    if result.differences:
        table = Table("at", "entity", "decided", "candidate", title=f"{len(result.differences)} differing decisions")
        for d in result.differences[:limit]:
            table.add_row(when(d.at), d.entity, str(d.recorded), str(d.candidate))
        console.print(table)
    if result.action_differences:
        table = Table("at", "acted", "candidate would act", title="cycles whose actions differ")
        for a in result.action_differences[:limit]:
            table.add_row(when(a.at), "\n".join(a.recorded) or "-", "\n".join(a.candidate) or "-")
        console.print(table)
    entities = len({d.entity for d in result.differences})
    console.print(f"{result.compared} cycles compared ({result.replayed - result.compared} of warm-up), "
                  f"{result.judged} decisions: {len(result.differences)} differ on {entities} entities, "
                  f"{len(result.action_differences)} cycles act differently")
    sys.exit(0 if result.same else 1)


def _endpoints(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


@main.command("registration-client")
@click.option("--etcd", "etcd_endpoints", envvar="USM_ETCD_ENDPOINTS", default="http://127.0.0.1:2379",
              show_default=True, help="The registry's etcd members, comma-separated, this region's first. "
                                      "Also $USM_ETCD_ENDPOINTS.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address the sidecar's API listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=1906, show_default=True,
              help="The port the sidecar's API listens on.")
@click.option("--service", help="The service of the instance this sidecar registers (leave out to only look up).")
@click.option("--hostname", default="127.0.0.1", show_default=True, help="The address callers reach it at.")
@click.option("--service-port", type=click.IntRange(1, 65535), help="The port callers reach it at.")
@click.option("--latitude", type=click.FloatRange(-90, 90), required=True, help="Where the instance runs.")
@click.option("--longitude", type=click.FloatRange(-180, 180), required=True, help="Where the instance runs.")
@click.option("--region", default="", help="The instance's region (e.g. europe).")
@click.option("--ttl", type=click.IntRange(1, 3600), default=10, show_default=True,
              help="Seconds an instance stays registered after its sidecar stops renewing the lease.")
@click.option("--monitor", default="http://127.0.0.1:1919", show_default=True,
              help="The request-location monitor that receives request locations ('' to send none).")
@click.option("--interval", default="5s", show_default=True, help="How often request locations are sent.")
@click.option("--seed", type=int, help="Seed of the random choices (number=, range=); default: from the OS.")
def registration_client(etcd_endpoints: str, host: str, port: int, service: str | None, hostname: str,
                        service_port: int | None, latitude: float, longitude: float, region: str, ttl: int,
                        monitor: str, interval: str, seed: int | None) -> None:
    """Serve the registration sidecar: POST /register, GET /services/SERVICE/endpoint[?number=X|?range=KM],
    GET /services/SERVICE/endpoints, POST /metrics, GET /health."""
    import logging
    import random

    from usm.engine.expressions import parse_duration
    from usm.geo.sphere import Coordinates
    from usm.registration.etcd import Etcd
    from usm.registration.instance import InvalidInstance
    from usm.registration.registry import Registration, Registry
    from usm.registration.sidecar import Sidecar, own_instance, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        every = parse_duration(interval)
        etcd = Etcd(_endpoints(etcd_endpoints))
        place = Coordinates(latitude, longitude)
        instance = own_instance(service, hostname, service_port, place, region)
    except (ValueError, InvalidInstance) as invalid:
        raise click.BadParameter(str(invalid)) from None
    registry = Registry(etcd)
    sidecar = Sidecar(registry, place, Registration(etcd, instance, ttl) if instance else None,
                      monitor or None, every, random.Random(seed))
    serve(host, port, sidecar, announce=lambda line: click.echo(line, err=True))


STORE_OPTION = click.option(
    "--db", "target", envvar="USM_DATABASE", default="usm.db", show_default=True,
    help="The store: a SQLite file, or a PostgreSQL URL (password from PGPASSWORD or ~/.pgpass). Also $USM_DATABASE.")


@main.group()
def user() -> None:
    """The hub's users (there is no default user or password)."""


@user.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May change things and manage users (the first user should be one).")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the password from this file's first line instead of asking for it.")
@STORE_OPTION
def user_create(name: str, admin: bool, password_file: Path | None, target: str) -> None:
    """Create the user NAME in the store (migrated first if needed)."""
    from datetime import UTC, datetime

    from usm.manager import accounts
    from usm.manager.store import StoreError
    from usm.manager.store.database import open_engine, sessions, upgrade

    try:
        password = accounts.read_password_file(password_file) if password_file else click.prompt(
            f"password for {name}", hide_input=True, confirmation_prompt=True)
        accounts.check_password(password)
        engine = open_engine(target)
        upgrade(engine)
        with sessions(engine).begin() as session:
            accounts.create_user(session, name, password, datetime.now(UTC), admin=admin)
    except StoreError as refused:
        click.echo(f"usm user create: {refused}", err=True)
        sys.exit(2)
    click.echo(f"created {'admin' if admin else 'user'} {name} in {engine.url.render_as_string(hide_password=True)}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="The port to listen on.")
@click.option("--db", "target", envvar="USM_DATABASE", default="usm-hub/usm.db", show_default=True,
              help="The store (a SQLite file or a PostgreSQL URL); seeded from the scenario when it has no services.")
@click.option("--instance", type=click.Path(file_okay=False, path_type=Path), default=Path("usm-hub"),
              show_default=True, help="Where the hub keeps its session key (made on first start, mode 0600).")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), default=Path("policies"),
              show_default=True, help="The policy directory whose rules the API reads and edits.")
@click.option("--scenario", default="sock-shop", show_default=True,
              help="The scenario of the simulated world the hub's actions act on (a file or a bundled name).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True, help="waitress's threads.")
def serve(host: str, port: int, target: str, instance: Path, policy_dir: Path, scenario: str, threads: int) -> None:
    """Serve the hub (pages and REST API) with waitress, on a simulated world seeded from SCENARIO.

    Sign in with a user made by `usm user create --admin NAME --db ...`, or set USM_ADMIN_NAME and
    USM_ADMIN_PASSWORD_FILE to have the first admin made at startup."""
    import os
    import signal

    import waitress

    from usm.manager.seed import seed_scenario
    from usm.manager.store import StoreError
    from usm.simulator.scenario import load_scenario
    from usm.simulator.world import World
    from usm.web import create_app
    from usm.web.hub import state
    from usm.web.pages.workbench import close
    from usm.web.settings import SettingsError
    from usm.web.simulated import SimulatedActions

    try:
        loaded = load_scenario(scenario)
    except InvalidSource as invalid:
        _problems_exit(invalid, "the scenario was not loaded")
    if "://" not in target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    world = World(loaded)
    try:
        app = create_app({"INSTANCE_PATH": str(instance.resolve()), "USM_DATABASE": target,
                          "USM_POLICY": str(policy_dir)})
    except (SettingsError, StoreError) as refused:
        click.echo(f"usm serve: {refused}", err=True)
        sys.exit(2)
    with app.app_context():
        hub = state()
        with hub.sessions.begin() as session:
            seeded = seed_scenario(session, loaded)
        hub.actions = SimulatedActions(world, hub.sessions, hub.clock)
        hub.actions.sync("all")
    if seeded:
        click.echo(f"usm serve: the store was empty: seeded it from scenario {loaded.name}", err=True)
    if not os.environ.get("USM_ADMIN_NAME"):
        click.echo(f"usm serve: sign in with a user made by `usm user create --admin NAME --db {target}`", err=True)
    click.echo(f"usm serve: http://{host}:{port}/login (API at /api, described at /api/openapi.json)", err=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as on Ctrl-C, the workbench's runs with it
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="usm")
    finally:
        close(app)


@main.command("lb-api")
@click.option("--prefix", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="nginx's directory: its configuration, logs, temporary files and the saved servers.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="Where nginx balances (address:port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address the API listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=1906, show_default=True,
              help="The port the API listens on.")
@click.option("--region", default="", help="The region this load balancer serves (named in the configuration).")
@click.option("--workers", default="auto", show_default=True, help="nginx worker processes.")
@click.option("--api-htpasswd", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also expose the API through nginx at /_/api/, behind basic auth with this htpasswd file.")
@click.option("--no-start", is_flag=True, help="nginx runs already (under its own supervision): only reload it.")
def lb_api(prefix: Path, listen: str, host: str, port: int, region: str, workers: str, api_htpasswd: Path | None,
           no_start: bool) -> None:
    """Serve the load balancer's API (GET /api/servers, POST|PUT|DELETE /api/SERVICE/servers[/SERVER]) and
    keep nginx's configuration in step: every change is checked with nginx -t and applied by a graceful reload."""
    import logging

    from usm.actuators.nginx import Nginx, NginxError
    from usm.loadbalancer.api import LoadBalancer, load_table, serve
    from usm.loadbalancer.config import ApiRoute, Settings
    from usm.loadbalancer.servers import InvalidServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        route = ApiRoute(f"http://{host}:{port}", str(api_htpasswd.resolve())) if api_htpasswd else None
        settings = Settings(listen, region, int(workers) if workers.isdigit() else workers, api=route)
        nginx = Nginx(prefix)
        state = nginx.prefix / "servers.json"
        balancer = LoadBalancer(nginx, settings, state, load_table(state))
        serve(host, port, balancer, start_nginx=not no_start, announce=lambda line: click.echo(line, err=True))
    except InvalidServer as invalid:
        raise click.BadParameter(str(invalid)) from None
    except NginxError as failed:
        click.echo(f"usm lb-api: {failed}", err=True)
        sys.exit(1)


@main.group("docker-proxy")
def docker_proxy() -> None:
    """The Docker Engine API behind nginx with TLS and basic auth, for hosts that must expose it over TCP."""


@docker_proxy.command("setup")
@click.option("--prefix", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="nginx's directory for the proxy: configuration, htpasswd, logs.")
@click.option("--listen", default="0.0.0.0:2375", show_default=True, help="Where the proxy listens (TLS only).")
@click.option("--docker-socket", default="/var/run/docker.sock", show_default=True, type=click.Path(),
              help="The Docker Engine's socket.")
@click.option("--certificate", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The proxy's TLS certificate chain (PEM).")
@click.option("--key", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Its private key (PEM).")
@click.option("--client-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also require client certificates signed by this CA (mutual TLS).")
@click.option("--user", "user_name", default="usm", show_default=True, help="The basic-auth user.")
@click.option("--password-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file (mode 600) whose first line is the password; else $USM_DOCKER_PROXY_PASSWORD.")
@click.option("--worker-user", default="nobody", show_default=True, help="nginx's worker processes run as this "
              "user (when nginx starts as root) ...")
@click.option("--worker-group", default="docker", show_default=True, help="... and group, which must be allowed "
              "to use the Docker socket and read the htpasswd.")
def docker_proxy_setup(prefix: Path, listen: str, docker_socket: str, certificate: Path, key: Path,
                       client_ca: Path | None, user_name: str, password_file: Path | None, worker_user: str,
                       worker_group: str) -> None:
    """Write the proxy's htpasswd (bcrypt hash of the password) and nginx configuration, checked by nginx -t."""
    from usm.actuators.dockerproxy import read_secret, set_up
    from usm.actuators.nginx import Nginx, NginxError
    from usm.dockerproxy.config import InvalidProxy, ProxySettings

    try:
        nginx = Nginx(prefix)
        settings = ProxySettings(listen, str(Path(docker_socket).resolve()), str(certificate.resolve()),
                                 str(key.resolve()), str(nginx.prefix / "htpasswd"),
                                 str(client_ca.resolve()) if client_ca else None, worker_user, worker_group)
        set_up(nginx, settings, user_name, read_secret(password_file))
    except InvalidProxy as invalid:
        raise click.BadParameter(str(invalid)) from None
    except NginxError as failed:
        click.echo(f"usm docker-proxy setup: {failed}", err=True)
        sys.exit(1)
    click.echo(f"{nginx.config}: checked. Run: {' '.join(nginx.argv(nginx.config))} (add -s reload if it runs)")


# Federation: a master and regional workers sharing one PostgreSQL store (usm.manager.federation).

FEDERATION_STORE = click.option(
    "--db", "target", envvar="USM_DATABASE", required=True,
    help="The store the master and its workers share: a PostgreSQL URL such as postgresql://usm@db/usm (the password "
         "from PGPASSWORD or ~/.pgpass). Also $USM_DATABASE.")


def _federation_options(command):
    """The options ``usm master`` and ``usm worker`` share."""
    options = [
        click.option("--dry-run", is_flag=True, help="Decide and record the plan; touch nothing."),
        click.option("--live", is_flag=True, help="Decide and act on the hosts."),
        click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=Path("usm-data"),
                     show_default=True, help="Where this manager's records go (a subdirectory named after it)."),
        click.option("--heartbeat", default="15s", show_default=True, envvar="USM_HEARTBEAT",
                     help="How often a worker beats and the master supervises. Also $USM_HEARTBEAT."),
        click.option("--countdown", default="60s", show_default=True, envvar="USM_COUNTDOWN",
                     help="The silence after which the master counts a worker down and takes its region over. "
                          "Also $USM_COUNTDOWN."),
        click.option("--cloud-region", "cloud_regions", multiple=True, envvar="USM_CLOUD_REGIONS",
                     help="An EC2 region usm launches hosts in (repeatable; none: no cloud). Credentials and "
                          "endpoint come from boto3's standard chain (AWS_*). Also $USM_CLOUD_REGIONS, spaced."),
        click.option("--address", default="127.0.0.1", show_default=True,
                     help="The address the manager's metrics are served on (and a worker is registered at)."),
        click.option("--metrics-port", type=click.IntRange(0, 65535), default=0, show_default=True,
                     help="Serve the manager's metrics at this port (0: do not)."),
        click.option("--cycles", type=click.IntRange(min=1), help="Stop after this many cycles."),
        FEDERATION_STORE,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _federation(target: str, dry_run: bool, live: bool, data: Path, heartbeat: str, countdown: str,
                cloud_regions: tuple[str, ...], address: str, metrics_port: int, cycles: int | None, **extra):
    import logging

    from usm.engine.expressions import parse_duration
    from usm.manager.federation.roles import Options
    from usm.manager.federation.supervision import Timing

    if dry_run == live:
        raise click.UsageError("choose one of --dry-run (decide and record, touch nothing) and --live (act)")
    try:
        timing = Timing(parse_duration(heartbeat), parse_duration(countdown))
    except ValueError as invalid:
        raise click.BadParameter(str(invalid), param_hint="--heartbeat/--countdown") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    regions = tuple(r for item in cloud_regions for r in item.split())
    return Options(target, data, dry_run, timing, metrics_port, address, cycles, regions, **extra)


def _federation_exit(run, what: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from usm.manager.federation.roles import StartFailed
    from usm.manager.store import StoreError

    try:
        sys.exit(run())
    except InvalidSource as invalid:
        _problems_exit(invalid, f"{what} did not start")
    except (StartFailed, StoreError, LookupError) as failed:
        click.echo(f"usm {what}: {failed}", err=True)
        sys.exit(1)
    except SQLAlchemyError as failed:
        click.echo(f"usm {what}: the store: {getattr(failed, 'orig', None) or failed}", err=True)
        sys.exit(1)


@main.command()
@click.option("--site", "site_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The site file: hosts (with their regions), apps, services; stored for the workers.")
@click.option("--policy", "policy_dir", type=click.Path(exists=True, path_type=Path),
              help="A policy to apply at start (default: the one stored last, by usm policy apply).")
@click.option("--await-workers", default="60s", show_default=True,
              help="How long a stopping master waits for its workers to stop.")
@_federation_options
def master(site_file: Path, policy_dir: Path | None, await_workers: str, **options) -> None:
    """Run the master: prepare the store, publish the site and policy, manage every region no live worker holds,
    count silent workers down and hand regions back; on SIGTERM stop the workers and everything usm started."""
    from usm.engine.expressions import parse_duration
    from usm.manager.federation.roles import run_master

    settings = _federation(**options, await_workers=parse_duration(await_workers))
    _federation_exit(lambda: run_master(settings, site_file, policy_dir, announce=lambda s: click.echo(s, err=True)),
                     "master")


@main.command()
@click.option("--region", required=True, help="The region this worker manages (a region of the store: europe ...).")
@click.option("--name", help="The worker's name (default: worker-REGION-HOSTNAME); one name per running worker.")
@click.option("--wait", default="5m", show_default=True,
              help="How long to wait at start for the master to prepare the store.")
@_federation_options
def worker(region: str, name: str | None, wait: str, **options) -> None:
    """Run a regional worker: collectors, history and control loop for the hosts and services of REGION, taken from
    the store, with heartbeats; it stops on a stop request from the master or on SIGTERM, stopping its region."""
    from usm.engine.expressions import parse_duration
    from usm.manager.federation.roles import run_worker

    settings = _federation(**options, wait=parse_duration(wait))
    _federation_exit(lambda: run_worker(settings, region, name, announce=lambda s: click.echo(s, err=True)),
                     "worker")


@policy.command("apply")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@FEDERATION_STORE
def policy_apply(path: Path, target: str) -> None:
    """Validate the policy at PATH and store it as the newest version: every manager of the federation loads it
    before its next cycle. Exit 2 (and store nothing) when it is invalid."""
    import time

    from sqlalchemy.exc import SQLAlchemyError

    from usm.manager.federation.ports import publish_policy
    from usm.manager.store import StoreError
    from usm.manager.store.database import open_engine, require_current

    try:
        engine = open_engine(target)
        require_current(engine)
        version, digest, new = publish_policy(engine, path, time.time())
    except InvalidSource as invalid:
        _problems_exit(invalid, "the policy was not stored")
    except (StoreError, SQLAlchemyError) as failed:
        click.echo(f"usm policy apply: {getattr(failed, 'orig', None) or failed}", err=True)
        sys.exit(1)
    click.echo(f"policy {digest}: " + (f"stored as version {version}" if new else f"already version {version}"))

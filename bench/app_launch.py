"""Launch the demo apps in the simulator, in parallel waves and one service at a time, and print both launch times
and their ratio (no assertion; the numbers go to docs/benchmarks.md).

Each app of the catalogue (Sock Shop first) is launched into an empty simulated world, one edge host in Frankfurt
with room for everything, by the launcher live mode uses (``usm.manager.launcher``) on the world's virtual clock:
each service's minimum replicas (one each), near Frankfurt, a wave starting once the one before is ready. The
launch time is virtual: it follows from the catalogue's start-up times per service, not from this machine. The
wall-clock column is what simulating the launch cost here.

    PYTHONPATH=. .venv/bin/python bench/app_launch.py
    PYTHONPATH=. .venv/bin/python bench/app_launch.py --app sock-shop --poll 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from usm.catalog import catalog_names
from usm.geo.sphere import Coordinates
from usm.manager.launcher import LaunchReport, launch_app
from usm.simulator.launches import WorldClock, launch_plan, launch_specs
from usm.simulator.scenario import load_scenario
from usm.simulator.world import World

FRANKFURT = Coordinates(50.11, 8.68)
WORLD = """\
name: bench-{app}
duration: 1h
tick: 15s
hosts:
  - {{name: frankfurt, kind: edge, latitude: 50.11, longitude: 8.68, cpu: 64, ram: 256Gi, disk: 2000Gi}}
apps:
  - {{catalog: {app}}}
workloads: []
"""


def launch(app: str, one_by_one: bool, poll: float, folder: Path) -> tuple[LaunchReport, float]:
    file = folder / f"{app}.yaml"
    file.write_text(WORLD.format(app=app))
    world = World(load_scenario(file))
    plan = launch_plan(world.scenario, app, set())
    if one_by_one:
        plan = plan.one_by_one()
    began = time.perf_counter()
    report = launch_app(plan, launch_specs(world), world, lambda _: world.cluster(), FRANKFURT, WorldClock(world),
                        poll=poll)
    return report, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", action="append", choices=catalog_names(), help="only this app (repeatable)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between looks at a wave (default 1)")
    args = parser.parse_args()
    apps = args.app or sorted(catalog_names(), key=lambda name: (name != "sock-shop", name))
    print(f"{'app':<18} {'services':>8} {'waves':>5} {'parallel':>9} {'one by one':>10} {'ratio':>6} "
          f"{'wall (both)':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for app in apps:
            waves, wall_waves = launch(app, False, args.poll, Path(folder))
            single, wall_single = launch(app, True, args.poll, Path(folder))
            assert waves.ok and single.ok, (waves.summary(), single.summary())
            print(f"{app:<18} {len(waves.services):>8} {len(waves.waves):>5} {waves.duration:>8.0f}s "
                  f"{single.duration:>9.0f}s {single.duration / waves.duration:>5.2f}x "
                  f"{(wall_waves + wall_single) * 1000:>10.0f}ms")
            if app == "sock-shop":
                ready = ", ".join(f"{at - waves.started_at:.0f}s" for at in waves.wave_ready_at)
                print(f"  sock-shop waves ready at {ready}: "
                      + " | ".join(" ".join(s.removeprefix("sock-shop-") for s in wave) for wave in waves.waves))


if __name__ == "__main__":
    main()

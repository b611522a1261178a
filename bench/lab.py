"""Time ``usm lab up`` and ``usm lab down`` for labs of several sizes, and print the timings (no assertion).

Each run brings a lab up in a fresh directory under /tmp (``usm.lab.up.up``, in-process: the times leave out
the ``usm`` command's own start-up), reads ``usm lab status``'s answer (``usm.lab.state.status``), and takes the
lab down again. ``up`` is timed in its phases, from the lines it announces.

    PYTHONPATH=. .venv/bin/python bench/lab.py [--hosts 1 2 4] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from usm.lab.dockerhost import short_tempdir
from usm.lab.state import down, status
from usm.lab.up import up


def one_run(hosts: int) -> dict[str, float]:
    root = short_tempdir("usm-bench-lab-")
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    try:
        up(root / "lab", hosts, announce=lambda line: marks.append((line, time.perf_counter())))
        ready = time.perf_counter()
        before = time.perf_counter()
        _, processes = status(root / "lab")
        assert all(running for _, running in processes)
        checked = time.perf_counter()
        down(root / "lab")
        stopped = time.perf_counter()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    phases = [t for _, t in marks] + [ready]
    return {"processes": phases[1] - phases[0], "demo app": phases[2] - phases[1], "up": ready - start,
            "status": checked - before, "down": stopped - checked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'hosts':>5} {'start processes':>16} {'demo+scrape':>12} {'up':>7} {'status':>7} {'down':>7}   (median s)")
    for hosts in args.hosts:
        runs = [one_run(hosts) for _ in range(args.runs)]
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"{hosts:>5} {median['processes']:>16.2f} {median['demo app']:>12.2f} {median['up']:>7.2f} "
              f"{median['status']:>7.3f} {median['down']:>7.2f}")


if __name__ == "__main__":
    main()

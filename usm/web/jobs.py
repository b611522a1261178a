"""The workbench's background jobs (dry-run simulations and policy test runs), each in its own worker process so a
long simulation never holds the hub's threads or its interpreter lock.

A job is a directory under the hub's instance folder: ``job.json`` (what to run, for whom, on which policy), a
snapshot of the policy taken when it was submitted (``policy/``, so later edits do not change a run), then, as
the worker writes them, ``progress.json``, ``result.json`` or ``error.txt``, and the run's own files
(``report/``). The hub reads the state back from these files, so a page shows a job the same way whichever
thread or restart asks.

Bounded in size: at most ``workers`` jobs run at once and ``waiting`` wait (more are refused, saying so), a job
is stopped after ``time_limit`` seconds, and only the newest ``keep`` finished jobs are kept on disk. Workers are
forked from a ``forkserver`` that has imported the simulator once, so a job starts in milliseconds rather than
after seconds of imports, from a clean process (never a fork of the hub's threads); they are daemonic, and
``close`` stops the running ones by their process.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

JOB_FILE, PROGRESS_FILE, RESULT_FILE, ERROR_FILE = "job.json", "progress.json", "result.json", "error.txt"
POLICY_DIR, REPORT_DIR = "policy", "report"
PRELOAD = ["usm.web.tasks", "matplotlib.pyplot", "geopandas"]
"""What the forkserver imports once for every worker: the simulator, the report, the policy test runner, and
what the report imports only when it draws (together ~5 s of imports on this machine, ~20 s when it is busy)."""


class JobRefused(Exception):
    """The job cannot be taken now (too many waiting); the message says why."""


@dataclass(frozen=True)
class Job:
    """A job as its directory shows it."""

    id: str
    kind: str
    spec: dict[str, Any]
    created: str
    user: str
    state: str  # queued (waiting for a worker), starting, running, done, failed
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: str = ""
    directory: Path = field(default=Path("."))

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(value, stream)
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_job(directory: Path, busy: str = "") -> Job | None:
    """The job in ``directory`` (``None`` if it is not one); ``busy`` says whether it is "queued" or "running" in
    this hub now ("" for neither)."""
    spec = read_json(directory / JOB_FILE)
    if not isinstance(spec, dict):
        return None
    progress = read_json(directory / PROGRESS_FILE) or {}
    result = read_json(directory / RESULT_FILE)
    error = (directory / ERROR_FILE).read_text(encoding="utf-8") if (directory / ERROR_FILE).is_file() else ""
    if result is not None:
        state = "done"
    elif error:
        state = "failed"
    elif busy == "queued":
        state = "queued"
    elif busy == "running":
        state = "running" if progress else "starting"
    else:
        state, error = "failed", "the hub stopped before this job finished; run it again"
    return Job(directory.name, spec["kind"], spec["spec"], spec["created"], spec.get("user", ""), state,
               int(progress.get("done", 0)), int(progress.get("total", 0)), result, error, directory)


def work(directory: str) -> None:
    """A worker's whole life: run the job in ``directory``, leaving its result or its error there."""
    from usm.web import tasks

    folder = Path(directory)
    job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
    written = {"done": -1}

    def progress(done: int, total: int) -> None:
        if done == total or done - written["done"] >= max(1, total // 100):
            written["done"] = done
            write_json(folder / PROGRESS_FILE, {"done": done, "total": total})

    progress(0, 1)
    try:
        result = tasks.TASKS[job["kind"]](job["spec"], folder / POLICY_DIR, folder / REPORT_DIR, progress)
    except Exception as failed:  # noqa: BLE001 - whatever went wrong is the job's outcome, shown on its page
        (folder / ERROR_FILE).write_text(f"{type(failed).__name__}: {failed}", encoding="utf-8")
        return
    write_json(folder / RESULT_FILE, result)


class Jobs:
    """The jobs under ``root``: submitted, run by at most ``workers`` processes, read back from their files."""

    def __init__(self, root: Path, workers: int = 1, waiting: int = 4, keep: int = 20,
                 time_limit: float = 900.0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.workers, self.waiting, self.keep, self.time_limit = workers, waiting, keep, time_limit
        self._lock = threading.Lock()
        self._running: dict[str, Any] = {}  # job id -> its process
        self._queue: list[str] = []
        self._closed = False

    def submit(self, kind: str, spec: dict[str, Any], policy: Callable[[Path], None], user: str,
               created: datetime) -> str:
        """A new job of ``kind``; ``policy(directory)`` copies the policy to run into its folder."""
        with self._lock:
            if len(self._queue) >= self.waiting:
                raise JobRefused(f"{len(self._queue)} jobs are waiting already; submit this one when one of them "
                                 "has started")
            number = max((int(p.name) for p in self.root.iterdir() if p.name.isdigit()), default=0) + 1
            directory = self.root / f"{number:05d}"
            directory.mkdir()
            (directory / REPORT_DIR).mkdir()
            policy(directory / POLICY_DIR)
            write_json(directory / JOB_FILE, {"kind": kind, "spec": spec, "created": created.isoformat(),
                                              "user": user})
            self._queue.append(directory.name)
            self._forget_old()
            self._start_waiting()
            return directory.name

    def get(self, job_id: str) -> Job | None:
        if not job_id.isdigit():
            return None
        with self._lock:
            busy = self._busy()
        directory = self.root / job_id
        return read_job(directory, busy.get(job_id, "")) if directory.is_dir() else None

    def newest(self, limit: int = 50) -> list[Job]:
        with self._lock:
            busy = self._busy()
        folders = sorted((p for p in self.root.iterdir() if p.name.isdigit()), reverse=True)[:limit]
        return [job for p in folders if (job := read_job(p, busy.get(p.name, ""))) is not None]

    def _busy(self) -> dict[str, str]:
        """Job id -> "queued" or "running", for the jobs this hub has not finished (the lock is held)."""
        return {**{job_id: "queued" for job_id in self._queue}, **{job_id: "running" for job_id in self._running}}

    def close(self) -> None:
        """Stop the running workers (by their process) and forget the waiting jobs."""
        with self._lock:
            self._closed = True
            self._queue.clear()
            processes = list(self._running.values())
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(5)

    def _start_waiting(self) -> None:
        """Start waiting jobs while fewer than ``workers`` run (the lock is held)."""
        while self._queue and len(self._running) < self.workers and not self._closed:
            job_id = self._queue.pop(0)
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            process = context.Process(target=work, args=(str(self.root / job_id),), name=f"usm-job-{job_id}",
                                      daemon=True)
            process.start()
            self._running[job_id] = process
            threading.Thread(target=self._watch, args=(job_id, process), name=f"usm-job-{job_id}-watch",
                             daemon=True).start()

    def _watch(self, job_id: str, process: Any) -> None:
        process.join(self.time_limit)
        directory = self.root / job_id
        if process.is_alive():
            process.terminate()
            process.join(5)
            (directory / ERROR_FILE).write_text(f"stopped after the time limit of {self.time_limit:g} s; choose "
                                                "a shorter run", encoding="utf-8")
        elif not (directory / RESULT_FILE).exists() and not (directory / ERROR_FILE).exists():
            (directory / ERROR_FILE).write_text(f"the worker ended without a result (exit code {process.exitcode})",
                                                encoding="utf-8")
        with self._lock:
            self._running.pop(job_id, None)
            self._start_waiting()

    def _forget_old(self) -> None:
        """Delete the oldest finished jobs beyond ``keep`` (the lock is held)."""
        busy = set(self._running) | set(self._queue)
        finished = sorted(p for p in self.root.iterdir() if p.name.isdigit() and p.name not in busy)
        for folder in finished[:max(0, len(finished) - self.keep)]:
            shutil.rmtree(folder, ignore_errors=True)


__all__ = ["Job", "JobRefused", "Jobs", "read_job", "work"]

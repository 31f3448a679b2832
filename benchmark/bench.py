"""``bench``: run the missing cells of a suite in parallel, resumable at any moment.

A cell is done when its record exists, validates, and matches the current split hash, method config hash,
seed and code version (the package version; the git commit is provenance only). Records are written
atomically by the runner, so a run killed at any point leaves complete records or none, and a restart runs
exactly the cells without one. Failed records count as done unless ``retry_failed``.

Cells go to workers in chunks of one task (seed first, then task, as ``suite.cells`` orders them), so a
worker loads and encodes a task once for all the methods of that chunk. The artifacts are built and hashed
here once; workers load them by the hash they are given. Jobs x threads never exceeds the CPUs.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from benchmark.executors import make_executor
from benchmark.records import Code, RecordError, load_record, record_path
from benchmark.registry import load_method
from benchmark.seeding import available_cpus, threads_per_worker
from benchmark.suite import Cell, Suite, cells
from tasks import artifact
from tasks.spec import get_spec


@dataclass(frozen=True)
class CellJob:
    cell: Cell
    data_dir: Path
    results: Path
    tasks_dir: Path
    split_hash: str | None = None  # known: the worker loads the artifact without rebuilding or re-hashing
    threads: int | None = None
    code: Code | None = None  # the bench's code info, so workers run no git per cell


@dataclass(frozen=True)
class CellDone:
    """One cell's outcome: its record's status, or ``crashed`` when no record was written."""

    status: str
    seconds: float
    error: str = ""  # the first line of the record's error, or the crash


def run_job(job: CellJob) -> tuple[str, float, str]:
    """Run one cell; returns (status, seconds, first error line)."""
    from benchmark.runner import run_cell

    start = time.perf_counter()
    result = run_cell(
        job.cell.task,
        job.cell.method,
        job.cell.seed,
        job.data_dir,
        job.results,
        tasks_dir=job.tasks_dir,
        threads=job.threads,
        command=f"coldbench bench (cell {job.cell.task} {job.cell.method} seed {job.cell.seed})",
        split_hash=job.split_hash,
        code=job.code,
    )
    error = (result.record.error or "").splitlines()[0] if result.record.error else ""
    return result.record.status, time.perf_counter() - start, error


def run_chunk(chunk: tuple[CellJob, ...]) -> list[CellDone]:
    """Worker entry point: the cells of one chunk in order; an exception costs only its own cell."""
    out = []
    for job in chunk:
        start = time.perf_counter()
        try:
            out.append(CellDone(*run_job(job)))
        except Exception as exc:  # no record: reported as crashed, re-run next time
            out.append(CellDone("crashed", time.perf_counter() - start, f"{type(exc).__name__}: {exc}"))
    return out


def chunked(jobs_list: list[CellJob], workers: int) -> list[tuple[CellJob, ...]]:
    """Consecutive cells of one (seed, task), split further only while there are under 2 chunks a worker."""
    if workers <= 1:  # in this process: the task cache serves every cell, and progress shows per cell
        return [(job,) for job in jobs_list]
    groups = [list(g) for _, g in itertools.groupby(jobs_list, lambda j: (j.cell.seed, j.cell.task))]
    if len(groups) >= 2 * workers:
        return [tuple(g) for g in groups]
    size = max(1, math.ceil(len(jobs_list) / (2 * workers)))
    return [tuple(g[i : i + size]) for g in groups for i in range(0, len(g), size)]


class DoneCheck:
    """``is_done`` for many cells: the code version and each method's config hash computed once."""

    def __init__(self, results: Path, code: Code, retry_failed: bool) -> None:
        self.results, self.code, self.retry_failed = results, code, retry_failed
        self._config_hashes: dict[tuple[str, str], str] = {}

    def config_hash(self, method: str, family: str) -> str:
        from benchmark.runner import config_hash, resolve_config

        key = (method, family)
        if key not in self._config_hashes:
            self._config_hashes[key] = config_hash(resolve_config(load_method(method), family, {}))
        return self._config_hashes[key]

    def __call__(self, cell: Cell, split_hash: str) -> bool:
        path = record_path(self.results, cell.task, cell.method, cell.seed)
        if not path.is_file():
            return False
        try:
            record = load_record(path)
        except RecordError:
            return False
        return (
            record.task.split_hash == split_hash
            and record.method.config_hash == self.config_hash(cell.method, record.task.family)
            and record.seed == cell.seed
            and record.code.version == self.code.version
            and not (self.retry_failed and record.status == "failed")
        )


def is_done(cell: Cell, results: Path, split_hash: str, retry_failed: bool) -> bool:
    from benchmark.runner import code_info

    return DoneCheck(results, code_info(), retry_failed)(cell, split_hash)


def clean_partial_files(results: Path) -> int:
    """Remove temporary files that a killed writer left behind (never complete records)."""
    removed = 0
    for tmp in results.glob("**/.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


@dataclass
class BenchSummary:
    total: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    crashed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    method_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cell_seconds: dict[Cell, float] = field(default_factory=dict)
    jobs: int = 1
    threads: int = 1


def _after_crash(
    chunk: tuple[CellJob, ...], since: float, exc: BaseException
) -> tuple[list[tuple[CellJob, CellDone]], tuple[CellJob, ...]]:
    """A chunk whose worker died: cells with a record written since ``since`` finished, the first without
    one is the crash, and the rest go back to the queue."""
    finished: list[tuple[CellJob, CellDone]] = []
    for i, job in enumerate(chunk):
        path = record_path(job.results, job.cell.task, job.cell.method, job.cell.seed)
        try:
            record = load_record(path) if path.stat().st_mtime >= since else None
        except (OSError, RecordError):
            record = None
        if record is None:
            crash = CellDone("crashed", 0.0, f"{type(exc).__name__}: {exc}")
            return [*finished, (job, crash)], chunk[i + 1 :]
        finished.append((job, CellDone(record.status, record.budget.wall_seconds_used)))
    return finished, ()


def run_suite(
    suite: Suite,
    data_dir: Path,
    results: Path,
    tasks_dir: Path,
    methods: list[str] | None = None,
    jobs: int = 1,
    retry_failed: bool = False,
    on_record: Callable[[Path], object] | None = None,
) -> BenchSummary:
    from benchmark.runner import code_info

    start, since = time.perf_counter(), time.time() - 1
    results.mkdir(parents=True, exist_ok=True)
    clean_partial_files(results)
    grid = cells(suite, methods)
    hashes = {
        t: artifact.build(get_spec(t), data_dir, tasks_dir)["split_hash"]
        for t in sorted({c.task for c in grid})
    }
    code = code_info()
    done = DoneCheck(results, code, retry_failed)
    todo = [c for c in grid if not done(c, hashes[c.task])]
    jobs = max(1, min(jobs, available_cpus(), len(todo) or 1))
    threads = threads_per_worker(jobs)
    summary = BenchSummary(total=len(grid), skipped=len(grid) - len(todo), jobs=jobs, threads=threads)
    jobs_list = [CellJob(c, data_dir, results, tasks_dir, hashes[c.task], threads, code) for c in todo]
    bar = tqdm(
        total=len(grid),
        initial=summary.skipped,
        desc=f"bench {suite.name}",
        unit="cell",
        disable=os.environ.get("COLDBENCH_NO_PROGRESS") == "1",
    )
    chunks = chunked(jobs_list, jobs)
    while chunks:
        requeued: list[tuple[CellJob, ...]] = []
        for chunk, outcome in make_executor(jobs, threads).run(run_chunk, chunks):
            if isinstance(outcome, BaseException):
                finished, rest = _after_crash(chunk, since, outcome)
                if rest:
                    requeued.append(rest)
            else:
                finished = list(zip(chunk, outcome, strict=True))
            for job, cell_done in finished:
                _count(summary, job.cell, cell_done, results, on_record)
                bad = sum(v for k, v in summary.statuses.items() if k != "ok")
                bar.set_postfix(failed=bad, refresh=False)
                bar.update(1)
        chunks = requeued
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _count(
    summary: BenchSummary,
    cell: Cell,
    done: CellDone,
    results: Path,
    on_record: Callable[[Path], object] | None,
) -> None:
    summary.statuses[done.status] += 1
    if done.status == "crashed":
        summary.crashed.append(f"{cell.task} {cell.method} seed {cell.seed}: {done.error}")
        return
    summary.method_seconds[cell.method] += done.seconds
    summary.cell_seconds[cell] = done.seconds
    if on_record is not None:
        on_record(record_path(results, cell.task, cell.method, cell.seed))

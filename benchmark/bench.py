"""``bench``: run the missing cells of a suite in parallel, resumable at any moment.

A cell is done when its record exists, validates, and matches the current split hash, method config hash,
seed and code version (the package version; the git commit is provenance only). Records are written
atomically by the runner, so a run killed at any point leaves complete records or none, and a restart runs
exactly the cells without one. Failed records count as done unless ``retry_failed``.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from benchmark.executors import make_executor
from benchmark.records import RecordError, load_record, record_path
from benchmark.registry import load_method
from benchmark.suite import Cell, Suite, cells
from tasks import artifact
from tasks.spec import get_spec


@dataclass(frozen=True)
class CellJob:
    cell: Cell
    data_dir: Path
    results: Path
    tasks_dir: Path


def run_job(job: CellJob) -> tuple[str, float, str]:
    """Worker entry point: run one cell; returns (status, seconds, first error line)."""
    from benchmark.runner import run_cell

    start = time.perf_counter()
    result = run_cell(
        job.cell.task,
        job.cell.method,
        job.cell.seed,
        job.data_dir,
        job.results,
        tasks_dir=job.tasks_dir,
        command=f"coldbench bench (cell {job.cell.task} {job.cell.method} seed {job.cell.seed})",
    )
    error = (result.record.error or "").splitlines()[0] if result.record.error else ""
    return result.record.status, time.perf_counter() - start, error


def is_done(cell: Cell, results: Path, split_hash: str, retry_failed: bool) -> bool:
    from benchmark.runner import code_info, config_hash, resolve_config

    path = record_path(results, cell.task, cell.method, cell.seed)
    if not path.is_file():
        return False
    try:
        record = load_record(path)
    except RecordError:
        return False
    cls = load_method(cell.method)
    expected_config = config_hash(resolve_config(cls, record.task.family, {}))
    return (
        record.task.split_hash == split_hash
        and record.method.config_hash == expected_config
        and record.seed == cell.seed
        and record.code.version == code_info().version
        and not (retry_failed and record.status == "failed")
    )


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


def run_suite(
    suite: Suite,
    data_dir: Path,
    results: Path,
    tasks_dir: Path,
    methods: list[str] | None = None,
    jobs: int = 1,
    retry_failed: bool = False,
    on_record=None,
) -> BenchSummary:
    start = time.perf_counter()
    results.mkdir(parents=True, exist_ok=True)
    clean_partial_files(results)
    grid = cells(suite, methods)
    hashes = {
        t: artifact.build(get_spec(t), data_dir, tasks_dir)["split_hash"]
        for t in sorted({c.task for c in grid})
    }
    todo = [c for c in grid if not is_done(c, results, hashes[c.task], retry_failed)]
    summary = BenchSummary(total=len(grid), skipped=len(grid) - len(todo))
    jobs_list = [CellJob(c, data_dir, results, tasks_dir) for c in todo]
    bar = tqdm(
        total=len(grid),
        initial=summary.skipped,
        desc=f"bench {suite.name}",
        unit="cell",
        disable=os.environ.get("COLDBENCH_NO_PROGRESS") == "1",
    )
    for job, outcome in make_executor(jobs).run(run_job, jobs_list):
        cell = job.cell
        if isinstance(outcome, BaseException):
            summary.crashed.append(
                f"{cell.task} {cell.method} seed {cell.seed}: {type(outcome).__name__}: {outcome}"
            )
            summary.statuses["crashed"] += 1
        else:
            status, seconds, _ = outcome
            summary.statuses[status] += 1
            summary.method_seconds[cell.method] += seconds
            if on_record is not None:
                on_record(record_path(results, cell.task, cell.method, cell.seed))
        bad = sum(v for k, v in summary.statuses.items() if k != "ok")
        bar.set_postfix(failed=bad, refresh=False)
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    return summary

"""Fixed cost per cell: a sub-suite through the bench machinery, seconds per phase, peak memory.

The sub-suite is one task per family (R-books2movies-b20-k3, L-beauty-k3, C-cloth), every registered method
(or ``--methods``), seed 0, run by ``benchmark.bench.run_suite`` in one process (``--jobs 1``: the process is
the warm worker) into a temporary results folder. Phases are exclusive seconds per cell, measured by
wrapping the functions both old and new code call: ``load`` (artifact build/verify and load), ``encode``,
``seed``, ``fit`` (view, method set-up, fit, validation), ``predict`` and ``evaluate`` (test users), ``write``
(record and per-user file), ``code_info`` (git), ``other`` (the rest of the cell). Also measured, each in a
fresh process: ``process_start`` (interpreter, imports and the first seeding: what every worker and
``coldbench run`` pays once) and ``cold_run`` (a whole ``coldbench run`` of each family's floor cell: wall
seconds and peak RSS). ``floor_warm`` is the fixed overhead per cell: the median total of the floor cell
(item-mean on R, popularity on L and C) over seeds 1-5 run by bench in the already warm process.

With ``--baseline REF`` the same measurement runs on that commit too (a ``git worktree`` in a temporary
folder, this venv, ``PYTHONPATH`` at the worktree) and ``ratios`` gives baseline / current.

    python benchmarks/suite_speed.py --baseline HEAD --out benchmarks/results/suite_speed.json
    python benchmarks/suite_speed.py --methods item-mean,popularity,mf-target   # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TASKS = {"R": "R-books2movies-b20-k3", "L": "L-beauty-k3", "C": "C-cloth"}
FLOORS = {"R": "item-mean", "L": "popularity", "C": "popularity"}
FLOOR_SEEDS = (1, 2, 3, 4, 5)


class Phases:
    """Exclusive seconds per phase of the current cell: entering a phase pauses the one it interrupts."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.totals: dict[str, float] = defaultdict(float)
        self.mark = 0.0

    def _charge(self) -> None:
        now = time.perf_counter()
        self.totals[self.stack[-1]] += now - self.mark
        self.mark = now

    @contextlib.contextmanager
    def cell(self) -> Iterator[dict[str, float]]:
        self.stack, self.totals, self.mark = ["other"], defaultdict(float), time.perf_counter()
        try:
            yield self.totals
        finally:
            self._charge()
            self.stack = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.stack:  # outside a cell (bench set-up): not split
            yield
            return
        self._charge()
        self.stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self.stack.pop()


def instrument(phases: Phases) -> None:
    """Wrap the functions that old and new runner code call through module attributes."""
    from benchmark import harness, runner
    from tasks import artifact

    def wrap(module: Any, name: str, phase: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with phases.phase(phase):
                return original(*args, **kwargs)

        setattr(module, name, timed)

    for module, name, phase in [
        (artifact, "build", "load"),
        (artifact, "load", "load"),
        (harness, "encode", "encode"),
        (runner, "seed_everything", "seed"),
        (runner, "execute", "fit"),
        (runner, "write_record", "write"),
        (runner, "write_parquet_atomic", "write"),
        (runner, "code_info", "code_info"),
    ]:
        wrap(module, name, phase)

    evaluate = harness.evaluate

    @functools.wraps(evaluate)
    def timed_evaluate(
        enc: Any, view: Any, predict: Callable, support: str, *args: Any, **kwargs: Any
    ) -> Any:
        if support != "support":  # validation, inside fit
            return evaluate(enc, view, predict, support, *args, **kwargs)

        def timed_predict(batch: Any) -> Any:
            with phases.phase("predict"):
                return predict(batch)

        with phases.phase("evaluate"):
            return evaluate(enc, view, timed_predict, support, *args, **kwargs)

    harness.evaluate = timed_evaluate


CELLS_ENV = "SUITE_SPEED_CELLS"  # the file a bench worker appends each cell's phases to (one JSON per line)
_WORKER: dict[str, Any] = {}


def timed_job(job: Any, *args: Any, **kwargs: Any) -> Any:
    """``bench.run_job`` with the cell's phases timed, in the bench worker that runs it.

    Module-level, so bench's spawned workers can unpickle it; the phase wrappers are installed in the worker
    on its first cell (a spawned process does not inherit the parent's patches), and each cell's phases go
    to the file named by ``$SUITE_SPEED_CELLS``, which the measuring process reads back.
    """
    from benchmark import bench

    if not _WORKER:
        _WORKER["phases"] = Phases()
        _WORKER["run_job"] = bench.run_job if bench.run_job is not timed_job else None
        instrument(_WORKER["phases"])
    run_job = _WORKER["run_job"] or bench.__dict__["_original_run_job"]
    with _WORKER["phases"].cell() as totals:
        out = run_job(job, *args, **kwargs)
    row = {"task": job.cell.task, "method": job.cell.method, "seed": job.cell.seed, **_cell(totals)}
    with open(os.environ[CELLS_ENV], "a") as handle:
        handle.write(json.dumps(row) + "\n")
    return out


def read_cells(path: Path) -> list[dict[str, Any]]:
    """The cells the workers wrote since ``path`` was last emptied, then empty it."""
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    path.write_text("")
    return rows


def _cell(totals: dict[str, float]) -> dict[str, Any]:
    return {
        "total_s": round(sum(totals.values()), 4),
        "phases_s": {k: round(v, 4) for k, v in totals.items()},
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """In a child process whose ``PYTHONPATH`` is the tree under test: the suite, then warm floor cells."""
    start = time.perf_counter()
    from benchmark.bench import run_suite
    from benchmark.records import load_record, record_path
    from benchmark.registry import available
    from benchmark.suite import Suite
    from tasks.catalog import resolve_data_dir

    imported = time.perf_counter() - start
    from benchmark import bench

    cells_file = Path(args.results).parent / "cells.jsonl"
    cells_file.parent.mkdir(parents=True, exist_ok=True)
    os.environ[CELLS_ENV] = str(cells_file)  # inherited by bench's workers
    bench._original_run_job = bench.run_job  # type: ignore[attr-defined]
    bench.run_job = timed_job
    data_dir = resolve_data_dir(args.data_dir)
    wanted = args.methods.split(",") if args.methods else sorted(available())
    methods = [m for m in wanted if m in available()]
    results, tasks_dir = Path(args.results), Path(args.tasks_dir)
    suite = Suite("suite-speed", (0,), tuple(TASKS.values()), tuple(methods))
    summary = run_suite(suite, data_dir, results, tasks_dir, jobs=1)
    suite_cells = read_cells(cells_file)
    for family, task in TASKS.items():  # one task at a time: after its first cell the process is warm for it
        floor = Suite("floors", FLOOR_SEEDS, (task,), (FLOORS[family],))
        run_suite(floor, data_dir, results, tasks_dir, jobs=1)
    floor_cells = read_cells(cells_file)
    for cell in [*suite_cells, *floor_cells]:
        record = load_record(record_path(results, cell["task"], cell["method"], cell["seed"]))
        cell.update(status=record.status, peak_rss_mb=record.peak_rss_mb, threads=record.env.threads)
    phase_sums: dict[str, float] = defaultdict(float)
    for cell in suite_cells:
        for name, seconds in cell["phases_s"].items():
            phase_sums[name] += seconds
    floor_warm = {}
    for family, task in TASKS.items():
        runs = [c for c in floor_cells if c["task"] == task]
        names = sorted({n for c in runs for n in c["phases_s"]})
        floor_warm[family] = {
            "task": task,
            "method": FLOORS[family],
            "median_total_s": round(statistics.median(c["total_s"] for c in runs), 4),
            "median_phases_s": {
                n: round(statistics.median(c["phases_s"].get(n, 0.0) for c in runs), 4) for n in names
            },
            "peak_rss_mb": max(c["peak_rss_mb"] for c in runs),
        }
    cell_seconds = sum(c["total_s"] for c in suite_cells)
    return {
        "methods": methods,
        "methods_missing": [m for m in wanted if m not in methods],
        "import_s": round(imported, 3),
        "suite": {
            "cells": len(suite_cells),
            "statuses": dict(summary.statuses),
            "seconds": round(summary.seconds, 3),
            "setup_s": round(summary.seconds - cell_seconds, 3),
            "phases_s": {k: round(v, 3) for k, v in sorted(phase_sums.items())},
            "per_cell": suite_cells,
        },
        "floor_warm": floor_warm,
        "peak_rss_mb": {
            "max_cell": max((c["peak_rss_mb"] for c in suite_cells), default=0.0),
            "by_family": {
                f: max((c["peak_rss_mb"] for c in suite_cells if c["task"] == t), default=0.0)
                for f, t in TASKS.items()
            },
            "process": _maxrss_mb(),
        },
    }


def _maxrss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Run ``cmd``; its wall seconds, its own peak RSS (MB, from wait4) and its stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {proc.returncode}:\n{err.read()[-3000:]}")
        return wall, round(usage.ru_maxrss / 1024, 1), out.read()


def run_tree(tree: Path, label: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every measurement of one source tree, each in fresh processes that import from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "COLDBENCH_NO_PROGRESS": "1"}
    py = sys.executable
    cache = Path(os.environ.get("COLDBENCH_CACHE") or Path.home() / ".cache" / "coldbench")
    tasks_dir = cache / "tasks" if label == "current" else cache / "suite_speed" / label / "tasks"
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    print(f"[{label}] {tree}", file=sys.stderr)
    start_code = (
        "import benchmark.runner, benchmark.bench\n"
        "from benchmark.seeding import seed_everything\n"
        "seed_everything(0)\n"
    )
    starts = [_child([py, "-c", start_code], env, tree)[0] for _ in range(3)]
    out: dict[str, Any] = {"tree": str(tree), "process_start_s": round(statistics.median(starts), 3)}
    results = work / label / "results"
    cmd = [py, str(Path(__file__).resolve()), "--measure", "--results", str(results)]
    cmd += ["--tasks-dir", str(tasks_dir), *data] + (["--methods", args.methods] if args.methods else [])
    wall, rss, text = _child(cmd, env, tree)
    out |= json.loads(text.strip().splitlines()[-1])
    out["measure_wall_s"] = round(wall, 3)
    out["cold_run"] = {}
    for family, task in TASKS.items():  # the artifacts exist by now: this is a cell's cost from a cold start
        run = [py, "-m", "benchmark.cli", "run", "--method", FLOORS[family], "--task", task, "--seed", "0"]
        run += ["--out", str(work / label / "cold"), "--tasks-dir", str(tasks_dir), *data]
        wall, rss, _ = _child(run, env, tree)
        out["cold_run"][family] = {
            "task": task,
            "method": FLOORS[family],
            "wall_s": round(wall, 3),
            "max_rss_mb": rss,
        }
    return out


def ratios(base: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    """baseline / current for every headline figure (above 1: the current tree is faster or smaller)."""

    def r(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    out: dict[str, Any] = {
        "process_start": r(base["process_start_s"], cur["process_start_s"]),
        "suite_seconds": r(base["suite"]["seconds"], cur["suite"]["seconds"]),
        "suite_phases": {
            k: r(base["suite"]["phases_s"].get(k, 0.0), v) for k, v in cur["suite"]["phases_s"].items()
        },
    }
    for family in TASKS:
        out[f"floor_warm_{family}"] = r(
            base["floor_warm"][family]["median_total_s"], cur["floor_warm"][family]["median_total_s"]
        )
        out[f"cold_run_{family}_wall"] = r(
            base["cold_run"][family]["wall_s"], cur["cold_run"][family]["wall_s"]
        )
        out[f"cold_run_{family}_rss"] = r(
            base["cold_run"][family]["max_rss_mb"], cur["cold_run"][family]["max_rss_mb"]
        )
    return out


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[tuple[Path, str]]:
    """``ref`` checked out in a temporary git worktree, removed afterwards."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix="suite-speed-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield folder, commit
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(folder.parent, ignore_errors=True)


def summarize(report: dict[str, Any]) -> str:
    lines = []
    for label in ("current", "baseline"):
        if label not in report:
            continue
        t = report[label]
        floors = ", ".join(f"{f} {v['median_total_s']:.3f}s" for f, v in t["floor_warm"].items())
        cold = ", ".join(f"{f} {v['wall_s']:.2f}s/{v['max_rss_mb']:.0f}MB" for f, v in t["cold_run"].items())
        lines.append(
            f"{label:8} suite {t['suite']['seconds']:.1f}s ({t['suite']['cells']} cells), start "
            f"{t['process_start_s']:.2f}s, floor cell warm: {floors}; cold run: {cold}"
        )
        lines.append(
            f"{'':8} phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in t["suite"]["phases_s"].items())
        )
    if "ratios" in report:
        lines.append("ratios (baseline/current): " + json.dumps(report["ratios"]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", help="comma-separated methods (default: every registered one)")
    parser.add_argument("--baseline", help="also measure this git commit (via a temporary worktree)")
    parser.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "suite_speed.json")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child's mode
    parser.add_argument("--results", help=argparse.SUPPRESS)
    parser.add_argument("--tasks-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return 0
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    report: dict[str, Any] = {
        "setup": {
            "tasks": TASKS,
            "floors": FLOORS,
            "floor_seeds": FLOOR_SEEDS,
            "jobs": 1,
            "threads": int(os.environ.get("COLDBENCH_THREADS", "1")),
            "python": platform.python_version(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "current_commit": commit,
            "current_dirty": bool(
                subprocess.run(
                    ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
            ),
            "command": " ".join(["python", "benchmarks/suite_speed.py", *sys.argv[1:]]),
        }
    }
    with tempfile.TemporaryDirectory(prefix="suite-speed-") as tmp:
        work = Path(tmp)
        report["current"] = run_tree(REPO, "current", args, work)
        if args.baseline:
            with worktree(args.baseline) as (tree, base_commit):
                report["setup"]["baseline_commit"] = base_commit
                report["baseline"] = run_tree(tree, base_commit[:12], args, work)
            report["ratios"] = ratios(report["baseline"], report["current"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(summarize(report))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Family-R transfer pipeline speed: fit seconds of mf-target, cmf, emcdr and ptupcdr on the six R K=0 tasks.

Issue 13's goal: the 24 cells (seed 0) in warm workers in under 26 s of fit time in total. One process per
code tree loads the six tasks once (a warm worker: its task cache holds them), runs one untimed warm-up cell,
then each cell as bench runs it (``runner.cell_config`` with the tuned configuration, ``runner.execute``;
pretraining cache off, so every cell pretrains) and records its fit and total seconds and its metrics.

With ``--baseline REF`` the same measurement runs on that commit (a ``git worktree`` in a temporary folder,
this venv, ``PYTHONPATH`` at the worktree), or with ``--baseline-tree DIR`` on a copy of the repository
(e.g. the working tree before a change), in the same run: the trees alternate cell by cell (``--rounds``
passes each), so that machine load hits both alike. The report has each tree's totals per method, the ratio
baseline / current, and whether every cell's metrics are the same (bit for bit) in both trees.

    python benchmarks/transfer_speed.py --baseline HEAD --out benchmarks/results/transfer_speed.json
    python benchmarks/transfer_speed.py --profile /tmp/transfer.prof      # cProfile of the current code
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TASKS = (
    "R-books2movies-b20-k0",
    "R-books2movies-b50-k0",
    "R-books2movies-b80-k0",
    "R-movies2books-b20-k0",
    "R-movies2books-b50-k0",
    "R-movies2books-b80-k0",
)
METHODS = ("mf-target", "cmf", "emcdr", "ptupcdr")
GOAL_SECONDS = 26.0


# -- the child: one code tree, one warm process -------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    """Serve cells over stdin/stdout: each line ``task method`` -> a JSON line of its times and metrics."""
    os.environ["COLDBENCH_PRETRAIN_CACHE"] = "0"
    import numpy as np

    from benchmark import runner
    from benchmark.registry import load_method
    from benchmark.seeding import seed_everything
    from tasks import artifact
    from tasks.spec import get_spec

    data_dir = Path(os.environ["COLDBENCH_DATA"])
    tasks_dir = artifact.default_task_dir()
    runner.TASK_CACHE_SIZE = len(TASKS)  # a warm worker: every task loaded once
    encoded = {}
    for task in TASKS:
        spec = get_spec(task)
        split_hash = artifact.build(spec, data_dir, tasks_dir)["split_hash"]
        encoded[task] = runner.load_task(tasks_dir / spec.id, split_hash, spec).enc
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()

    def run(task: str, method: str) -> dict[str, Any]:
        enc, cls = encoded[task], load_method(method)
        config = runner.cell_config(method, cls, enc.spec, {}).config
        seed_everything(args.seed, 1)
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        outcome = runner.execute(enc, cls, config, args.seed)
        if profiler is not None:
            profiler.disable()
        total = time.perf_counter() - start
        metrics = None
        if outcome.evaluation is not None:  # pooled metrics, and a digest of every per-user value
            ev, digest = outcome.evaluation, hashlib.sha256()
            for name in sorted(ev.per_user):
                digest.update(name.encode() + np.ascontiguousarray(ev.per_user[name]).tobytes())
            metrics = {**ev.pooled, "per_user_sha256": digest.hexdigest()}
        return {
            "task": task,
            "method": method,
            "status": outcome.status,
            "fit": outcome.fit_seconds,
            "total": total,
            "metrics": json.loads(json.dumps(metrics)) if metrics is not None else None,
        }

    run(TASKS[0], "mf-target")  # warm-up: imports, first allocations (not reported)
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        task, method = line.split()
        print(json.dumps(run(task, method)), flush=True)
    if profiler is not None:
        profiler.dump_stats(args.profile)


# -- the driver ----------------------------------------------------------------------------------------------
class Tree:
    """A child process serving cells of one code tree."""

    def __init__(self, label: str, tree: Path, args: argparse.Namespace) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(tree), "COLDBENCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--seed", str(args.seed)]
        if args.profile and label == "current":
            cmd += ["--profile", args.profile]
        self.proc = subprocess.Popen(
            cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        while (line := self.proc.stdout.readline()) and line.strip() != "ready":
            pass
        if not line:
            raise RuntimeError(f"{label}: the child process died while loading (exit {self.proc.wait()})")

    def cell(self, task: str, method: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{task} {method}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the child process died on {task} {method}")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait()


def summarize_tree(cells: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Per cell the median over rounds; totals and per-method sums of those medians."""
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rnd in cells:
        for c in rnd:
            by_cell.setdefault((c["task"], c["method"]), []).append(c)
    out_cells = []
    for (task, method), runs in by_cell.items():
        out_cells.append(
            {
                "task": task,
                "method": method,
                "status": runs[0]["status"],
                "fit": round(statistics.median(r["fit"] for r in runs), 3),
                "total": round(statistics.median(r["total"] for r in runs), 3),
                "metrics": runs[0]["metrics"],
            }
        )
    per_method = {m: round(sum(c["fit"] for c in out_cells if c["method"] == m), 2) for m in METHODS}
    return {
        "fit_total": round(sum(c["fit"] for c in out_cells), 2),
        "total": round(sum(c["total"] for c in out_cells), 2),
        "fit_per_method": per_method,
        "cells": out_cells,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", help="also measure this git commit (via a temporary worktree)")
    parser.add_argument("--baseline-tree", type=Path, help="also measure this copy of the repository")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the 24 cells per tree (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", help="write a cProfile of the current tree's cells here")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "transfer_speed.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    # the driver only: a child imports its own tree's code through PYTHONPATH, so never this repo's
    sys.path.insert(0, str(REPO))
    from benchmarks.suite_speed import worktree  # stdlib only at import

    with contextlib.ExitStack() as stack:
        trees: dict[str, tuple[Path, str]] = {"current": (REPO, "working tree")}
        if args.baseline:
            trees["baseline"] = stack.enter_context(worktree(args.baseline))
        elif args.baseline_tree:
            trees["baseline"] = (args.baseline_tree.resolve(), str(args.baseline_tree))
        started = time.perf_counter()
        servers = {label: Tree(label, tree, args) for label, (tree, _) in trees.items()}
        results: dict[str, list[list[dict[str, Any]]]] = {label: [] for label in servers}
        for _ in range(args.rounds):
            for label in servers:
                results[label].append([])
            for task in TASKS:
                for method in METHODS:
                    for label, server in servers.items():  # interleaved: load drift hits both trees alike
                        results[label][-1].append(server.cell(task, method))
        for server in servers.values():
            server.close()
    report: dict[str, Any] = {
        "tasks": list(TASKS),
        "methods": list(METHODS),
        "seed": args.seed,
        "rounds": args.rounds,
        "goal_fit_seconds": GOAL_SECONDS,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "trees": {label: {"code": trees[label][1], **summarize_tree(results[label])} for label in servers},
    }
    if "baseline" in servers:
        base, cur = report["trees"]["baseline"], report["trees"]["current"]
        report["ratio_fit"] = round(base["fit_total"] / cur["fit_total"], 3)
        report["ratio_per_method"] = {
            m: round(base["fit_per_method"][m] / cur["fit_per_method"][m], 3) for m in METHODS
        }
        same = [
            (b["task"], b["method"])
            for b, c in zip(base["cells"], cur["cells"], strict=True)
            if b["metrics"] == c["metrics"]
        ]
        report["metrics_identical"] = f"{len(same)} of {len(base['cells'])} cells"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for label, tree in report["trees"].items():
        print(
            f"{label:9s} fit {tree['fit_total']:7.2f}s  total {tree['total']:7.2f}s  {tree['fit_per_method']}"
        )
    if "ratio_fit" in report:
        print(
            f"ratio baseline/current fit {report['ratio_fit']};"
            f" metrics identical: {report['metrics_identical']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``coldbench bench``: run a suite's missing cells in parallel, then build the leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a suite (resumable) and build the leaderboard")
    parser.add_argument("--suite", default="quick", help="suite name from benchmark/suites (default: quick)")
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="worker processes (default 2; 1 = in-process; at most the CPUs, and jobs x threads never more)",
    )
    parser.add_argument("--results", type=Path, default=Path("runs/results"), help="records folder")
    parser.add_argument(
        "--site", type=Path, default=Path("site"), help="results site folder (default: ./site)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write LEADERBOARD.md here")
    parser.add_argument("--no-leaderboard", action="store_true", help="only run the cells")
    parser.add_argument("--retry-failed", action="store_true", help="re-run cells whose record failed")
    parser.add_argument("--wandb", action="store_true", help="log each finished run to wandb")
    parser.add_argument("--wandb-project", default="coldbench")
    parser.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    parser.add_argument(
        "--tasks-dir", type=Path, default=None, help="task artifact root (default: the cache)"
    )
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from benchmark.bench import run_suite
    from benchmark.cli import main
    from benchmark.suite import load_suite
    from tasks.artifact import default_task_dir
    from tasks.catalog import resolve_data_dir

    suite = load_suite(args.suite)
    logger = None
    if args.wandb:
        from benchmark.tracking import WandbLogger

        logger = WandbLogger(args.wandb_project)
    summary = run_suite(
        suite,
        resolve_data_dir(args.data_dir),
        args.results,
        args.tasks_dir or default_task_dir(),
        methods=args.methods,
        jobs=args.jobs,
        retry_failed=args.retry_failed,
        on_record=logger,
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items())) or "nothing to run"
    print(
        f"bench {suite.name}: {summary.total} cells, {summary.skipped} already done; ran: {counts};"
        f" {summary.seconds:.1f}s ({summary.jobs} jobs x {summary.threads} threads)"
    )
    for method, seconds in sorted(summary.method_seconds.items()):
        print(f"  {method:14} {seconds:8.1f}s")
    for line in summary.crashed:
        print(f"  crashed (no record, re-run next time): {line}", file=sys.stderr)
    if not args.no_leaderboard:
        extra = ["--markdown", str(args.markdown)] if args.markdown else []
        code = main(["leaderboard", "build", "--results", str(args.results), "--out", str(args.site), *extra])
        if code:
            return code
    return 1 if summary.crashed else 0

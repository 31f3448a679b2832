"""``coldbench bench``: run a suite's missing cells in supervised workers, then build the leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.cli import UsageError, add_specs_option

if TYPE_CHECKING:
    from benchmark.executors import Executor


def non_negative_int(text: str) -> int:
    """An argparse type: a seed is an integer >= 0 (it becomes part of a file name)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="run a suite (resumable) and build the leaderboard",
        description="Run the cells of a suite that have no current, verified record, then build the pages. "
        "Exit status 1 when any cell run did not end ok (one line each), 2 on a bad input.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--suite",
        default="quick",
        help="a suite name from benchmark/suites (quick, standard) or the path of a suite .toml file"
        " (default: quick)",
    )
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods")
    parser.add_argument("--tasks", nargs="+", default=None, help="these task ids instead of the suite's")
    parser.add_argument(
        "--seeds", nargs="+", type=non_negative_int, default=None, help="these seeds instead of the suite's"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value of every selected method (repeatable; each must have the key)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="worker processes (default 2; at most the CPUs, and jobs x threads never more; 1 = one worker)",
    )
    parser.add_argument(
        "--executor",
        choices=("process", "ray"),
        default="process",
        help="where cells run: supervised worker processes here (default), or Ray actors"
        " (needs the coldbench[ray] extra)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --executor ray: an existing Ray cluster (auto, HOST:PORT, ray://...); default: start a"
        " local Ray instance for this run. --jobs is then capped by the cluster's CPUs",
    )
    parser.add_argument("--results", type=Path, default=Path("runs/results"), help="records folder")
    parser.add_argument(
        "--site", type=Path, default=Path("site"), help="results site folder (default: ./site)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write LEADERBOARD.md here")
    parser.add_argument("--no-leaderboard", action="store_true", help="only run the cells")
    parser.add_argument("--retry-failed", action="store_true", help="re-run cells whose record failed")
    parser.add_argument(
        "--rerun",
        "--force",
        dest="rerun",
        action="store_true",
        help="re-run every selected cell, done or not",
    )
    parser.add_argument("--wandb", action="store_true", help="log each finished run to wandb")
    parser.add_argument("--wandb-project", default="coldbench")
    parser.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    add_specs_option(parser)
    parser.add_argument(
        "--tasks-dir", type=Path, default=None, help="task artifact root (default: the cache)"
    )
    parser.set_defaults(func=_bench)


def _suite(args: argparse.Namespace):
    import dataclasses

    from benchmark.suite import load_suite
    from tasks.spec import get_spec

    suite = load_suite(args.suite)
    if args.tasks:
        suite = dataclasses.replace(suite, tasks=tuple(get_spec(t).id for t in args.tasks))
    if args.seeds:
        suite = dataclasses.replace(suite, seeds=tuple(args.seeds))
    return suite


def _check_outputs(args: argparse.Namespace) -> None:
    """The site and the Markdown copy must be writable before any cell runs, not after."""
    from tasks.cache import require_writable

    if not args.no_leaderboard:
        require_writable(args.site, "site folder (--site)")
        if args.markdown is not None:
            require_writable(args.markdown.parent, "--markdown folder")


def _bench(args: argparse.Namespace) -> int:
    from benchmark.bench import run_suite
    from benchmark.runner import ConfigError, parse_overrides
    from tasks.artifact import default_task_dir
    from tasks.catalog import resolve_data_dir
    from tasks.search import use_spec_dirs

    executor = _executor(args)
    use_spec_dirs(args.specs)
    suite = _suite(args)
    _check_outputs(args)
    logger = None
    if args.wandb:
        from benchmark.tracking import WandbLogger

        logger = WandbLogger(args.wandb_project)
    try:
        summary = run_suite(
            suite,
            resolve_data_dir(args.data_dir),
            args.results,
            args.tasks_dir or default_task_dir(),
            methods=args.methods,
            jobs=args.jobs,
            retry_failed=args.retry_failed,
            on_record=logger,
            overrides=parse_overrides(args.overrides),
            rerun=args.rerun,
            executor=executor,
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
    _report(suite.name, summary)
    if not args.no_leaderboard:
        code = _leaderboard(args)
        if code:
            return code
    return 1 if summary.failed else 0


def _executor(args: argparse.Namespace) -> Executor:
    """The executor the options name; a missing Ray is a usage error naming the extra, before any work."""
    from benchmark.executors import ProcessExecutor

    if args.executor == "process":
        if args.address is not None:
            raise UsageError("--address needs --executor ray")
        return ProcessExecutor()
    from benchmark.ray_executor import RayExecutor, RayMissing

    try:
        return RayExecutor(args.address)
    except RayMissing as exc:
        raise UsageError(str(exc)) from exc


def _report(name: str, summary) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items())) or "nothing to run"
    print(
        f"bench {name}: {summary.total} cells, {summary.skipped} already done; ran: {counts};"
        f" {summary.seconds:.1f}s ({summary.jobs} jobs x {summary.threads} threads)"
    )
    for method, seconds in sorted(summary.method_seconds.items()):
        print(f"  {method:14} {seconds:8.1f}s")
    for line in summary.rejected:
        print(f"coldbench: warning: re-ran a record that did not verify: {line}", file=sys.stderr)
    for line in summary.failed:
        print(f"coldbench: {line}", file=sys.stderr)


def _leaderboard(args: argparse.Namespace) -> int:
    from benchmark.commands.leaderboard import build_pages

    return build_pages(args.results, args.site, args.markdown)

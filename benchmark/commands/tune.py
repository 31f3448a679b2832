"""``coldbench tune``: the equal-budget search of ``benchmark.tuning``, N configurations per task group.

Scores on validation users only, with seed 0; writes ``leaderboard/tuned/<method>.toml``, which bench reads.
Resumable: trials already in the file are reused. Run one process per method (each owns its file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli import UsageError

STANDARD_TRIALS = 8  # benchmark.tuning.STANDARD_TRIALS, not imported: parsers build on every command


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "tune",
        help="tune a method's [search] space on validation users, N trials per task group",
        description=__doc__,
    )
    parser.add_argument("--method", nargs="+", required=True, help="method name(s); floors are not tuned")
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="tasks whose groups to tune (default: suite)"
    )
    parser.add_argument("--suite", default="standard", help="suite whose tasks to tune (default: standard)")
    parser.add_argument(
        "--trials",
        type=int,
        default=STANDARD_TRIALS,
        help=f"configurations per task group, the default first (default {STANDARD_TRIALS}: the same N for "
        "every method)",
    )
    parser.add_argument("--force", action="store_true", help="re-run groups tuned already")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda where torch sees a GPU")
    parser.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    parser.add_argument(
        "--tasks-dir", type=Path, default=None, help="task artifact root (default: the cache)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="tuned files folder (default: $COLDBENCH_TUNED, else leaderboard/tuned)",
    )
    parser.add_argument("--list", action="store_true", help="print the task groups and search spaces only")
    parser.set_defaults(func=_tune)


def _tune(args: argparse.Namespace) -> int:
    from benchmark import tuning
    from benchmark.registry import load_method
    from benchmark.suite import load_suite
    from tasks.artifact import default_task_dir
    from tasks.catalog import resolve_data_dir

    tasks = args.tasks or list(load_suite(args.suite).tasks)
    try:
        groups = {tuning.group_of(t).name: tuning.group_of(t) for t in tasks}
    except KeyError as exc:
        raise UsageError(str(exc).strip("'\"")) from exc
    if args.list:
        for method in args.method:
            cls = load_method(method)
            for name in sorted(groups):
                group = groups[name]
                if group.family in cls.families:
                    space = tuning.search_space(cls, group.family)
                    print(
                        f"{method} {name}: scored on {group.representative}, runs on {', '.join(group.tasks)}"
                    )
                    print(f"  space: {space or 'none (floor)'}")
        return 0
    for method in args.method:
        try:
            outcomes = tuning.tune_method(
                method,
                tasks,
                args.trials,
                resolve_data_dir(args.data_dir),
                args.tasks_dir or default_task_dir(),
                args.out,
                device=args.device,
                force=args.force,
            )
        except (KeyError, ValueError) as exc:
            raise UsageError(str(exc).strip("'\"")) from exc
        ran = sum(len(o.trials) for o in outcomes if not o.reused)
        print(f"{method}: {len(outcomes)} task group(s), {ran} trial(s) run")
    return 0

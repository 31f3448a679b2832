"""``coldbench leaderboard build``: run records -> LEADERBOARD.md and the static results site;
``coldbench leaderboard show``: the ranked tables in the terminal, the same numbers without a browser.

A refused record (invalid, tampered, incomplete) or records that cannot be compared stop either verb with one
line naming the file and exit status 2; ``--skip-invalid`` leaves invalid records out and lists them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.records import RecordError
from leaderboard.build import FAMILY_TITLES, MARKDOWN, BuildError, build, load_runs, render_text, summarize
from tasks.cache import require_writable, write_bytes_atomic


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "leaderboard", help="generate the leaderboard pages from run records", allow_abbrev=False
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    make = verbs.add_parser(
        "build",
        help="write LEADERBOARD.md, index.html and pages/ from a results folder",
        description="Validate every record under --results, compute statistics and ranks, write the pages.",
    )
    make.add_argument("--results", type=Path, required=True, help="folder of <task>/<method>/seed-<S>.json")
    make.add_argument("--out", type=Path, required=True, help="folder to write LEADERBOARD.md and the site")
    make.add_argument(
        "--markdown", type=Path, default=None, help="also write LEADERBOARD.md to this path (committed copy)"
    )
    make.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave invalid records out (listed on the page) instead of refusing the build",
    )
    make.set_defaults(func=_build)
    show = verbs.add_parser(
        "show",
        help="print the ranked tables (or one task's ranking) in the terminal",
        description="The numbers of LEADERBOARD.md as aligned plain text, computed from the records the same "
        "way. Wide tables read best through `less -S`.",
    )
    show.add_argument(
        "--results",
        type=Path,
        default=Path("leaderboard/results"),
        help="folder of <task>/<method>/seed-<S>.json (default: leaderboard/results)",
    )
    show.add_argument("--family", choices=tuple(FAMILY_TITLES), default=None, help="only this family's table")
    show.add_argument("--task", default=None, help="one task's ranking, with differences to the leader")
    show.add_argument("--skip-invalid", action="store_true", help="leave invalid records out (warned)")
    show.set_defaults(func=_show)


def _build(args: argparse.Namespace) -> int:
    return build_pages(args.results, args.out, args.markdown, args.skip_invalid)


def build_pages(results: Path, out: Path, markdown: Path | None, skip_invalid: bool = False) -> int:
    """Build the site (and the Markdown copy); the exit status. ``bench`` calls this after its cells."""

    def warn(message: str) -> None:
        print(f"coldbench: warning: {message}", file=sys.stderr)

    require_writable(out, "--out folder")
    if markdown is not None:
        require_writable(markdown.parent, "--markdown folder")
    try:
        result = build(results, out, skip_invalid=skip_invalid, log=warn)
    except (RecordError, BuildError) as exc:
        print(f"coldbench: error: {exc}", file=sys.stderr)
        return 2
    if markdown is not None:  # atomically: a full disk leaves the previous copy, never a truncated one
        write_bytes_atomic(markdown, (out / MARKDOWN).read_bytes())
    print(
        f"wrote {len(result.written)} files to {out} from {result.runs} records"
        + (f" ({len(result.skipped)} invalid records skipped)" if result.skipped else "")
        + (f"; removed {len(result.removed)} stale pages" if result.removed else "")
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"coldbench: error: {message}", file=sys.stderr)
        return 2

    try:
        runs, skipped = load_runs(args.results, skip_invalid=args.skip_invalid)
        lb = summarize(runs, skipped)
    except (RecordError, BuildError) as exc:
        return fail(str(exc))
    if args.task is not None and args.task not in lb.tasks:
        return fail(
            f"no records of task {args.task!r} in {args.results}; tasks: {', '.join(lb.tasks) or 'none'}"
        )
    if args.task is not None and args.family not in (None, lb.tasks[args.task].family):
        return fail(f"task {args.task!r} is in family {lb.tasks[args.task].family}, not {args.family}")
    if args.family is not None and not any(t.family == args.family for t in lb.tasks.values()):
        return fail(f"no records of family {args.family} in {args.results}")
    sys.stdout.write(render_text(lb, args.family, args.task))
    for s in lb.skipped:
        print(f"coldbench: warning: skipped invalid record {s.path}: {s.reason}", file=sys.stderr)
    return 0

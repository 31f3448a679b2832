"""``coldbench leaderboard build``: run records -> LEADERBOARD.md and the static results site.

A refused record (invalid, tampered, incomplete) or records that cannot be compared stop the build with one
line naming the file and exit status 2; ``--skip-invalid`` leaves invalid records out and lists them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmark.records import RecordError
from leaderboard.build import MARKDOWN, BuildError, build


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("leaderboard", help="generate the leaderboard pages from run records")
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


def _build(args: argparse.Namespace) -> int:
    def warn(message: str) -> None:
        print(f"coldbench: warning: {message}", file=sys.stderr)

    try:
        result = build(args.results, args.out, skip_invalid=args.skip_invalid, log=warn)
    except (RecordError, BuildError) as exc:
        print(f"coldbench: error: {exc}", file=sys.stderr)
        return 2
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / MARKDOWN, args.markdown)
    print(
        f"wrote {len(result.written)} files to {args.out} from {result.runs} records"
        + (f" ({len(result.skipped)} invalid records skipped)" if result.skipped else "")
        + (f"; removed {len(result.removed)} stale pages" if result.removed else "")
    )
    return 0

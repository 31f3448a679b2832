"""``coldbench data``: check the data root against its SHA256SUMS, and count each data set per domain.

``verify`` hashes every listed file and names each missing or changed one. ``info`` loads every data set
through ``tasks.catalog.load`` (verified, deduplicated, cached as Parquet), so a second call reads only the
cache after re-hashing the sources.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.catalog import DATASETS, HINT, load, resolve_data_dir
from tasks.checksums import SUMS_FILE, read_sums, verify

INFO_FIELDS = ("dataset", "domain", "users", "items", "interactions", "duplicate_rows_removed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="verify and describe the local Amazon data")
    commands = parser.add_subparsers(dest="data_command", required=True)
    data_dir_help = "data root holding SHA256SUMS (default: $COLDBENCH_DATA)"

    check = commands.add_parser("verify", help="check every file listed in SHA256SUMS")
    check.add_argument("--data-dir", default=None, help=data_dir_help)
    check.set_defaults(func=run_verify)

    info = commands.add_parser("info", help="users, items, interactions and removed duplicates per domain")
    info.add_argument("--data-dir", default=None, help=data_dir_help)
    info.add_argument("--format", choices=("table", "json"), default="table")
    info.set_defaults(func=run_info)


def run_verify(args: argparse.Namespace) -> int:
    root = resolve_data_dir(args.data_dir)
    total = len(read_sums(root))
    problems = verify(root)
    if problems:
        for rel, problem in problems.items():
            print(f"{root / rel}: {problem}", file=sys.stderr)
        print(
            f"coldbench: error: {len(problems)} of {total} files in {root / SUMS_FILE} failed. {HINT}",
            file=sys.stderr,
        )
        return 1
    print(f"{total} files match {root / SUMS_FILE}")
    return 0


def info_rows(root: Path, cache_dir: Path | None = None) -> list[dict]:
    """One row per (data set, domain): distinct users and items, interactions, duplicate rows removed."""
    rows = []
    for name, spec in DATASETS.items():
        loaded = load(name, root, cache_dir)
        counts = loaded.table.groupby("domain", observed=True).agg(
            users=("user", "nunique"), items=("item", "nunique"), interactions=("user", "size")
        )
        for domain in spec.domains:
            found = domain in counts.index
            rows.append(
                {
                    "dataset": name,
                    "domain": domain,
                    "users": int(counts.at[domain, "users"]) if found else 0,
                    "items": int(counts.at[domain, "items"]) if found else 0,
                    "interactions": int(counts.at[domain, "interactions"]) if found else 0,
                    "duplicate_rows_removed": int(loaded.duplicate_rows_removed.get(domain, 0)),
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    cells = [list(INFO_FIELDS)] + [
        [f"{row[k]:,}" if isinstance(row[k], int) else str(row[k]) for k in INFO_FIELDS] for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(INFO_FIELDS))]
    text_columns = 2  # dataset and domain are left-aligned, counts right-aligned
    lines = [
        "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def run_info(args: argparse.Namespace) -> int:
    rows = info_rows(resolve_data_dir(args.data_dir))
    print(json.dumps(rows, indent=2) if args.format == "json" else format_table(rows))
    return 0

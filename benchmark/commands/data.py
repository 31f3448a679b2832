"""``coldbench data``: check the data root, count each data set per domain, and fetch missing files.

``verify`` hashes every listed file and names each missing or changed one. ``info`` loads every local data
set (the declarations on the search path; hub data sets are read when a task is built) through
``tasks.catalog.load`` (verified, deduplicated, cached as Parquet), so a second call reads only the cache
after re-hashing the sources. ``fetch`` downloads a data set's missing files from its declared provenance and
keeps only those whose sha256 matches the ``SHA256SUMS`` shipped with the declaration (``tasks.fetch``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmark.cli import add_specs_option
from tasks import fetch, search
from tasks.catalog import DATA_ENV, HINT, Dataset, load, registry, resolve_data_dir
from tasks.checksums import SUMS_FILE, read_sums, verify
from tasks.schema import DataError

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
    info.add_argument("datasets", nargs="*", metavar="DATASET", help="data sets (default: every local one)")
    add_specs_option(info)
    info.set_defaults(func=run_info)

    get = commands.add_parser(
        "fetch", help="download missing files from each data set's provenance, verified"
    )
    get.add_argument(
        "datasets", nargs="*", metavar="DATASET", help="data sets (default: every fetchable one)"
    )
    get.add_argument("--data-dir", default=None, help="data root to fill (default: $COLDBENCH_DATA; created)")
    get.add_argument("--base-url", default=fetch.RAW_GITHUB, help="where <repo>/<commit>/<path> is served")
    add_specs_option(get)
    get.set_defaults(func=run_fetch)


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


def chosen(names: list[str]) -> list[Dataset]:
    """The named data sets, or every one on the search path that is read from local files."""
    found = registry()
    if names:
        return [found.get(n) for n in names]
    return [d for d in found.datasets.values() if not d.remote]


def info_rows(root: Path, cache_dir: Path | None = None, names: list[str] | None = None) -> list[dict]:
    """One row per (data set, domain): distinct users and items, interactions, duplicate rows removed."""
    rows = []
    for spec in chosen(names or []):
        name = spec.name
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
    search.use_spec_dirs(args.specs)
    rows = info_rows(resolve_data_dir(args.data_dir), names=args.datasets)
    print(json.dumps(rows, indent=2) if args.format == "json" else format_table(rows))
    return 0


def fetch_root(data_dir: str | None) -> Path:
    """``--data-dir`` or ``$COLDBENCH_DATA``, created when missing (fetch fills an empty root)."""
    chosen_dir = data_dir or os.environ.get(DATA_ENV)
    if not chosen_dir:
        raise DataError(f"no data root: pass --data-dir or set {DATA_ENV}")
    root = Path(chosen_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_fetch(args: argparse.Namespace) -> int:
    search.use_spec_dirs(args.specs)
    root = fetch_root(args.data_dir)
    failed = 0
    for dataset in chosen(args.datasets):
        result = fetch.fetch(dataset, root, args.base_url)
        print(
            f"{dataset.name}: {len(result.downloaded)} downloaded, {len(result.present)} already present"
            + (f", {len(result.failed)} failed" if result.failed else "")
        )
        for problem in result.failed.values():
            print(f"coldbench: error: {' '.join(problem.split())}", file=sys.stderr)
        failed += len(result.failed)
    if failed:
        print(f"coldbench: error: {failed} file(s) not fetched; nothing partial was kept", file=sys.stderr)
        return 1
    return 0

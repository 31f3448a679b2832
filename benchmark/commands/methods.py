"""``coldbench methods list``: the registry, entry-point methods included, broken ones reported in place.

A plugin that cannot be used (duplicate or invalid name, an import that fails with any exception) is listed
with its problem and makes the command exit 1; every other method is listed as usual. Column widths follow
the longest name and package, so a long plugin name never shifts the columns after it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from benchmark.registry import RegistryError, load_method, registrations

HEADER = ("METHOD", "FAMILIES", "PACKAGE", "SUMMARY")  # upper case: never a method name (lower case only)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("methods", help="registered methods", allow_abbrev=False)
    verbs = parser.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="every registered method", allow_abbrev=False)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=_list)


def _row(name: str, target: str, dist: str) -> dict:
    try:
        cls = load_method(name)
    except RegistryError as exc:
        return {
            "name": name,
            "family": [],
            "summary": "",
            "class": target,
            "package": dist,
            "error": str(exc),
        }
    return {
        "name": name,
        "family": list(cls.families),
        "summary": cls.summary,
        "class": target,
        "package": dist,
    }


def table(rows: Sequence[dict]) -> list[str]:
    """Aligned lines: every column but the last as wide as its widest entry; a broken method says so."""
    cells = [HEADER] + [
        (
            r["name"],
            "BROKEN" if "error" in r else ",".join(r["family"]),
            r["package"],
            r["error"] if "error" in r else r["summary"],
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER) - 1)]
    return ["  ".join([*(c[i].ljust(widths[i]) for i in range(len(widths))), c[-1]]).rstrip() for c in cells]


def _list(args: argparse.Namespace) -> int:
    rows = [_row(name, e.target, e.dist) for name, e in registrations().items()]
    broken = [r for r in rows if "error" in r]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print("\n".join(table(rows)))
    for r in broken:
        print(f"coldbench: error: {r['error']}", file=sys.stderr)
    return 1 if broken else 0

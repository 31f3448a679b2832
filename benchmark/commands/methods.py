"""``coldbench methods list``: the registry, entry-point methods included."""

from __future__ import annotations

import argparse
import json

from benchmark.registry import available, load_method


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("methods", help="registered methods")
    verbs = parser.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="every registered method")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    rows = []
    for name, target in available().items():
        cls = load_method(name)
        rows.append({"name": name, "family": list(cls.families), "summary": cls.summary, "class": target})
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']:14} {','.join(r['family']):6} {r['summary']}")
    return 0

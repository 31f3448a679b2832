"""``coldbench`` command line: one sub-command module per noun in ``benchmark/commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark.registry import RegistryError
from tasks.schema import DataError

COMMANDS = ("data", "tasks", "methods", "run", "bench", "leaderboard")


class UsageError(Exception):
    """A wrong command-line value; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"benchmark.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"benchmark.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, UsageError, RegistryError) as exc:
        print(f"coldbench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

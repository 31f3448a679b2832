"""``coldbench`` command line: one sub-command module per noun in ``benchmark/commands``.

Every bad input ends in one line naming the file, field or cell (``coldbench: error: ...``, exit status 2);
SIGINT and SIGTERM stop the command's workers and end it with one line (exit status 128 + the signal).
Options are never abbreviated: ``--tasks`` must not silently mean ``--tasks-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator

from benchmark.executors import Interrupted, signals_interrupt
from benchmark.registry import RegistryError
from tasks.cache import CacheWarning, NotWritable
from tasks.schema import DataError

COMMANDS = ("data", "tasks", "methods", "run", "bench", "leaderboard", "tune")


class UsageError(Exception):
    """A wrong command-line value; printed as one line, exit status 2."""


def add_specs_option(parser: argparse.ArgumentParser) -> None:
    """``--specs DIR`` (repeatable): the one way every command extends the spec search path."""
    from tasks.search import SPECS_ENV

    parser.add_argument(
        "--specs",
        action="append",
        default=[],
        metavar="DIR",
        help=f"a folder of task TOMLs (data-set TOMLs in its datasets/); repeatable; adds to ${SPECS_ENV}",
    )


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """``allow_abbrev=False`` on the parser and every sub-parser below it (read at parse time)."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coldbench", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"benchmark.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"benchmark.commands.{name}":
                raise
            continue
        module.register(sub)
    _no_abbreviations(parser)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from benchmark.bench import ResultsBusy
    from benchmark.records import RecordError

    return (DataError, UsageError, RegistryError, NotWritable, ResultsBusy, RecordError)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return one_line(exc)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show ColdBench's own warnings (a cache entry rebuilt) as one line, not with a source excerpt."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, CacheWarning):
            print(f"coldbench: warning: {one_line(message)}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def guarded(command: Callable[[], int | None]) -> int:
    """Run ``command`` with signals turned into ``Interrupted`` and every expected failure as one line."""
    try:
        with signals_interrupt(), _one_line_warnings():
            return int(command() or 0)
    except Interrupted as exc:
        print(f"coldbench: {one_line(exc)}", file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"coldbench: error: {one_line(exc)}", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            print(f"coldbench: error: {_os_error(exc)}", file=sys.stderr)
            return 2
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())

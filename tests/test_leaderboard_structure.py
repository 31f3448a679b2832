"""The leaderboard package stays a set of small modules: no function or method longer than 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "leaderboard"
MAX_LINES = 60
MODULES = sorted(PACKAGE.rglob("*.py"))


def _function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function, nested ones included; decorators count as lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            out.append((node.name, start, node.end_lineno - start + 1))
    return out


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 5, MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_function_over_60_lines(path: Path) -> None:
    long = [f"{name} (line {line}): {n} lines" for name, line, n in _function_lengths(path) if n > MAX_LINES]
    assert not long, f"{path.name}: split these functions: {long}"

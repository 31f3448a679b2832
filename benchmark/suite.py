"""Suites (``benchmark/suites/*.toml``) expand into grid cells: (task, method, seed) a method supports."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from benchmark.registry import available, load_method
from tasks.schema import DataError, read_toml
from tasks.spec import all_specs

SUITE_DIR = Path(str(resources.files("benchmark") / "suites"))


@dataclass(frozen=True, order=True)
class Cell:
    task: str
    method: str
    seed: int


@dataclass(frozen=True)
class Suite:
    name: str
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]


def load_suite(name: str, suite_dir: Path = SUITE_DIR) -> Suite:
    """A suite by name (``benchmark/suites/<name>.toml``) or by the path of a ``.toml`` file."""
    path = Path(name) if name.endswith(".toml") else suite_dir / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(suite_dir.glob("*.toml")))
        raise DataError(f"unknown suite {name!r} (no {path}); known: {known}")
    data = read_toml(path, "suite")
    specs = all_specs()
    tasks = tuple(specs) if data.get("tasks") == "all" else _names(data, "tasks", path)
    unknown = [t for t in tasks if t not in specs]
    if unknown:
        raise DataError(f"{path}: unknown task(s) {unknown}")
    methods = tuple(available()) if data.get("methods") == "all" else _names(data, "methods", path)
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(_seed(s) for s in seeds):
        raise DataError(f"{path}: field 'seeds' must be a non-empty list of integers >= 0, got {seeds!r}")
    suite_name = data.get("name", path.stem)
    if not isinstance(suite_name, str) or not suite_name:
        raise DataError(f"{path}: field 'name' must be a non-empty string")
    return Suite(suite_name, tuple(seeds), tasks, methods)


def _seed(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _names(data: dict, key: str, path: Path) -> tuple[str, ...]:
    """A required list of names (or ``"all"``), one clear error otherwise."""
    value = data.get(key)
    if value is None:
        raise DataError(f'{path}: missing field {key!r} (a list of names, or "all")')
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise DataError(f'{path}: field {key!r} must be a non-empty list of names or "all", got {value!r}')
    return tuple(value)


def cells(suite: Suite, methods: list[str] | None = None) -> list[Cell]:
    """Every (task, method, seed) of the suite whose family the method supports.

    Ordered seed first, then task, then method: an interrupted suite has whole seeds done (seed 0 of every
    task first), and consecutive cells share a task, which bench hands to one worker as a chunk so that the
    worker loads and encodes the artifact once for all of them.
    """
    chosen = methods or list(suite.methods)
    specs = all_specs()
    families = {m: load_method(m).families for m in chosen}
    grid = [
        Cell(t, m, s)
        for t in suite.tasks
        for m in chosen
        for s in suite.seeds
        if specs[t].family in families[m]
    ]
    return sorted(grid, key=lambda c: (c.seed, c.task, c.method))

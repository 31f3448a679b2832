"""Task specs: one TOML file per task in ``tasks/specs``, holding everything that defines a split.

Fields (all required unless marked):
  id            task id, equal to the file name stem (``R-books2movies-b20-k3``)
  family        ``R`` (explicit ratings), ``L`` (leave-one-domain-out, implicit) or ``C`` (CDRIB split)
  dataset       a data set name from ``tasks.catalog.DATASETS``
  source        list of source domains (Amazon category names)
  target        the target domain
  k             support size per cold user (0 = no support)
  beta          fraction of the shuffled eligible users that are test cold users (families R, L)
  valid_fraction  fraction taken from the end of the same order as validation cold users (families R, L)
  split_seed    seed of every sample the split takes
  metrics       metric names the harness reports (``benchmark.metrics``)
  [filters]     family-specific eligibility: ``min_target`` (L: target interactions needed), ``min_other``
                (L: interactions in other domains needed), ``pool`` (R, K>0: support pool size)
  [budget]      ``train_examples_multiple`` (x train rows), ``adapt_steps`` (per cold user),
                ``wall_seconds`` (fit + predict, 2 CPU cores)
Adding a task is adding a file.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tasks.schema import DataError

SPEC_DIR = Path(str(resources.files("tasks") / "specs"))
FAMILIES = ("R", "L", "C")


@dataclass(frozen=True)
class TaskBudget:
    train_examples_multiple: float
    adapt_steps: int
    wall_seconds: float


@dataclass(frozen=True)
class TaskSpec:
    id: str
    family: str
    dataset: str
    source: tuple[str, ...]
    target: str
    k: int
    split_seed: int
    metrics: tuple[str, ...]
    budget: TaskBudget
    beta: float | None = None
    valid_fraction: float | None = None
    filters: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["source"] = list(self.source)
        out["metrics"] = list(self.metrics)
        return out


def parse_spec(data: dict[str, Any], where: str) -> TaskSpec:
    """Validate a spec mapping; every problem names the file and field."""

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in data:
            raise DataError(f"{where}: missing field {key!r}")
        if not isinstance(data[key], kind):
            raise DataError(f"{where}: field {key!r} has the wrong type ({type(data[key]).__name__})")
        return data[key]

    known = {f for f in TaskSpec.__dataclass_fields__}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(f"{where}: unknown field(s) {unknown}")
    family = need("family", str)
    if family not in FAMILIES:
        raise DataError(f"{where}: field 'family' must be one of {FAMILIES}, got {family!r}")
    budget = need("budget", dict)
    try:
        task_budget = TaskBudget(
            float(budget["train_examples_multiple"]),
            int(budget["adapt_steps"]),
            float(budget["wall_seconds"]),
        )
    except KeyError as exc:
        raise DataError(f"{where}: budget lacks {exc.args[0]!r}") from exc
    spec = TaskSpec(
        id=need("id", str),
        family=family,
        dataset=need("dataset", str),
        source=tuple(need("source", list)),
        target=need("target", str),
        k=need("k", int),
        split_seed=need("split_seed", int),
        metrics=tuple(need("metrics", list)),
        budget=task_budget,
        beta=float(data["beta"]) if "beta" in data else None,
        valid_fraction=float(data["valid_fraction"]) if "valid_fraction" in data else None,
        filters=dict(data.get("filters", {})),
    )
    if family in ("R", "L"):
        if spec.beta is None or spec.valid_fraction is None:
            raise DataError(f"{where}: family {family} needs 'beta' and 'valid_fraction'")
        if not (spec.beta > 0 and spec.valid_fraction > 0 and spec.beta + spec.valid_fraction <= 1):
            raise DataError(f"{where}: beta + valid_fraction must lie in (0, 1]")
    if spec.k < 0:
        raise DataError(f"{where}: field 'k' must be >= 0")
    if spec.target in spec.source:
        raise DataError(f"{where}: target {spec.target!r} is also a source")
    return spec


def load_spec_file(path: Path) -> TaskSpec:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not a readable TOML spec ({exc})") from exc
    spec = parse_spec(data, str(path))
    if spec.id != path.stem:
        raise DataError(f"{path}: id {spec.id!r} differs from the file name")
    return spec


def all_specs(spec_dir: Path = SPEC_DIR) -> dict[str, TaskSpec]:
    """Every spec in ``spec_dir``, by id, in sorted order."""
    return {p.stem: load_spec_file(p) for p in sorted(spec_dir.glob("*.toml"))}


def get_spec(task_id: str, spec_dir: Path = SPEC_DIR) -> TaskSpec:
    path = spec_dir / f"{task_id}.toml"
    if not path.is_file():
        known = ", ".join(all_specs(spec_dir))
        raise DataError(f"unknown task {task_id!r} (no {path}); known tasks: {known}")
    return load_spec_file(path)

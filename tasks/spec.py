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
  ranked        (optional, default true) whether the task enters its family's ranked table; variants kept
                for comparison (CDRIB's published split, the global-time cut) set it to false
  [audit]       (optional) duplicate-detector thresholds: ``jaccard`` (default 0.95), ``min_co`` (default 3)
  [clean]       (optional) protocol v2 cleaning rules, each off by default:
                ``duplicates``: ``keep`` | ``drop-query`` (drop query pairs that duplicate an item of the
                user's own source history);
                ``users``: ``published`` | ``disjoint`` (C: disjoint validation and test users);
                ``history``: ``all`` | ``before-first-query`` (L: a cold user's source rows end before their
                first query interaction);
                ``time_cut``: ``none`` | ``global`` (L: every training row before one cut time, the
                ``time_quantile`` of the cold users' first query times)
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
CLEAN_RULES: dict[str, tuple[str, ...]] = {
    "duplicates": ("keep", "drop-query"),
    "users": ("published", "disjoint"),
    "history": ("all", "before-first-query"),
    "time_cut": ("none", "global"),
}
CLEAN_FAMILIES = {"users": ("C",), "history": ("L",), "time_cut": ("L",)}
AUDIT_DEFAULTS: dict[str, float] = {"jaccard": 0.95, "min_co": 3}


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
    ranked: bool = True
    audit: dict[str, float] = field(default_factory=lambda: dict(AUDIT_DEFAULTS))
    clean: dict[str, Any] = field(default_factory=dict)

    def rule(self, name: str) -> str:
        """The cleaning rule ``name`` of this spec (its first, "off" value when not declared)."""
        return self.clean.get(name, CLEAN_RULES[name][0])

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
        ranked=bool(data.get("ranked", True)),
        audit=_audit(data.get("audit", {}), where),
        clean=_clean(data.get("clean", {}), family, where),
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


def _audit(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, dict) or set(table) - set(AUDIT_DEFAULTS):
        raise DataError(f"{where}: [audit] takes only {sorted(AUDIT_DEFAULTS)}")
    out = {**AUDIT_DEFAULTS, **table}
    if not (0 < float(out["jaccard"]) <= 1) or int(out["min_co"]) < 1:
        raise DataError(f"{where}: [audit] needs 0 < jaccard <= 1 and min_co >= 1")
    return {"jaccard": float(out["jaccard"]), "min_co": int(out["min_co"])}


def _clean(table: Any, family: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise DataError(f"{where}: [clean] must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "time_quantile":
            if not isinstance(value, float | int) or not 0 <= value <= 1:
                raise DataError(f"{where}: [clean] time_quantile must lie in [0, 1]")
            out[key] = float(value)
            continue
        if key not in CLEAN_RULES:
            raise DataError(f"{where}: [clean] has unknown rule {key!r}; known: {sorted(CLEAN_RULES)}")
        if value not in CLEAN_RULES[key]:
            raise DataError(f"{where}: [clean] {key} must be one of {CLEAN_RULES[key]}, got {value!r}")
        if family not in CLEAN_FAMILIES.get(key, FAMILIES):
            raise DataError(f"{where}: [clean] {key} applies to families {CLEAN_FAMILIES[key]} only")
        out[key] = value
    if out.get("time_cut") == "global" and "time_quantile" not in out:
        raise DataError(f"{where}: [clean] time_cut = 'global' needs time_quantile")
    return out


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

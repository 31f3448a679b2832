"""Task specs: one TOML file per task, holding everything that defines a split.

Fields (all required unless marked):
  id            task id, equal to the file name stem (``R-books2movies-b20-k3``)
  family        a registered family (``tasks.protocols``): ``R`` (explicit ratings), ``L``
                (leave-one-domain-out, implicit), ``C`` (published split), ``IR`` / ``IL`` (cold items,
                explicit / implicit); its declaration holds the per-family rules below (sources,
                fractions, filters, cleaning rules, data-set needs)
  dataset       a data set declared on the search path (``tasks.catalog``; its name or an alias)
  source        list of source domains (Amazon category names, or the data set's aliases); R, C, IR take one
  target        the target domain
  k             support size per cold user, or per cold item in IR/IL (0 = no support)
  beta          fraction of the shuffled eligible users (IR, IL: items) that are test cold (families R, L,
                IR, IL)
  valid_fraction  fraction taken from the end of the same order as validation cold users (items)
  split_seed    seed of every sample the split takes
  metrics       metric names the harness reports (``benchmark.metrics``; checked when the caller names the
                known ones with ``set_known_metrics``, as the command line does)
  [filters]     family-specific eligibility: ``min_target`` (L: target interactions needed, > k),
                ``min_other`` (L: interactions in other domains needed), ``pool`` (R, K>0: support pool
                size, >= k; IR, IL, required: per cold item, the pool the support is taken from, >= k,
                and an item needs more rows than it to be cold), ``negatives`` (C: sampled negatives
                per query pair); for hub-scale data (R, L, optional, see ``tasks.filters``):
                ``min_user_interactions``, ``min_item_interactions``, ``min_overlap``, ``max_users``
  [budget]      ``train_examples_multiple`` (x train rows), ``adapt_steps`` (per cold user),
                ``wall_seconds`` (fit + predict, 2 CPU cores); each > 0
  ranked        (optional, default true) whether the task enters its family's ranked table; variants kept
                for comparison (CDRIB's published split, the global-time cut) set it to false
  [audit]       (optional) duplicate-detector thresholds: ``jaccard`` (default 0.95), ``min_co`` (default 3)
  [clean]       (optional) protocol v2 cleaning rules, each off by default:
                ``duplicates``: ``keep`` | ``drop-query`` (drop query pairs that duplicate an item of the
                user's own source history);
                ``users``: ``published`` | ``disjoint`` (C: disjoint validation and test users);
                ``history``: ``all`` | ``before-first-query`` (L, and R on timestamped data: a cold user's
                source rows end before their first query interaction);
                ``time_cut``: ``none`` | ``global`` (L: every training row before one cut time, the
                ``time_quantile`` of the cold users' first query times)
Adding a task is adding a file, in the package or in any folder of the search path (``tasks.search``). A
file that fails validation is reported with its path and reason and left out of every listing; asking for
its task by id fails with that reason, so one bad file never hides the others.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks import catalog, protocols, search
from tasks.protocols import FAMILIES  # the one list of families (tuning reads it here)
from tasks.schema import DataError, read_toml

SPEC_DIR = search.PACKAGE_TASKS
CLEAN_RULES: dict[str, tuple[str, ...]] = {
    "duplicates": ("keep", "drop-query"),
    "users": ("published", "disjoint"),
    "history": ("all", "before-first-query"),
    "time_cut": ("none", "global"),
}
AUDIT_DEFAULTS: dict[str, float] = {"jaccard": 0.95, "min_co": 3}
BUDGET_KEYS = ("train_examples_multiple", "adapt_steps", "wall_seconds")
MIN_FILTER = {"min_other": 0}  # every other filter is a count >= 1
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_known_metrics: frozenset[str] | None = None


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

    def domains(self) -> tuple[str, ...]:
        """Every domain the task reads: its sources, then its target."""
        return (*self.source, self.target)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["source"] = list(self.source)
        out["metrics"] = list(self.metrics)
        return out


def set_known_metrics(names: Iterable[str] | None) -> None:
    """Name the metrics specs may list (``tasks`` never imports ``benchmark``: the command layer tells it)."""
    global _known_metrics
    _known_metrics = None if names is None else frozenset(names)


# ---------------------------------------------------------------- one file, on its own


class _Fields:
    """Typed access to one TOML table; every problem names the file, the table and the field."""

    def __init__(self, data: Any, where: str, table: str = "") -> None:
        self.where = where
        self.table = table
        if not isinstance(data, dict):
            raise DataError(f"{where}: {self.label('')} must be a table")
        self.data = data

    def label(self, key: str) -> str:
        inner = f"{self.table}.{key}" if self.table and key else (self.table or key)
        return f"field {inner!r}" if key else f"[{self.table}]"

    def fail(self, key: str, problem: str) -> DataError:
        return DataError(f"{self.where}: {self.label(key)} {problem}")

    def only(self, known: Collection[str]) -> None:
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            where = f"[{self.table}]" if self.table else "the spec"
            raise DataError(f"{self.where}: unknown field(s) {unknown} in {where}; known: {sorted(known)}")

    def need(self, key: str) -> Any:
        if key not in self.data:
            inner = f"{self.table}.{key}" if self.table else key
            raise DataError(f"{self.where}: missing field {inner!r}")
        return self.data[key]

    def text(self, key: str) -> str:
        value = self.need(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, minimum: int | None = None) -> int:
        value = self.need(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, positive: bool = False) -> float:
        value = self.need(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number, got {value!r}")
        if positive and not value > 0:
            raise self.fail(key, f"must be > 0, got {value}")
        return float(value)

    def names(self, key: str) -> tuple[str, ...]:
        value = self.need(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"must be a non-empty list of names, got {value!r}")
        if len(set(value)) != len(value):
            raise self.fail(key, f"lists a name twice: {value}")
        return tuple(value)


def parse_spec(data: dict[str, Any], where: str) -> TaskSpec:
    """Validate a spec mapping on its own (no data set, no metric list); each problem names file and field."""
    top = _Fields(data, where)
    top.only(TaskSpec.__dataclass_fields__)
    family = top.text("family")
    if family not in FAMILIES:
        raise top.fail("family", f"must be one of {FAMILIES}, got {family!r}")
    task_id = top.text("id")
    if not TASK_ID.fullmatch(task_id):
        raise top.fail("id", f"({task_id!r}) may hold letters, digits, '.', '_', '-' only")
    spec = TaskSpec(
        id=task_id,
        family=family,
        dataset=top.text("dataset"),
        source=top.names("source"),
        target=top.text("target"),
        k=top.integer("k", minimum=0),
        split_seed=top.integer("split_seed"),
        metrics=top.names("metrics"),
        budget=_budget(data.get("budget"), where),
        beta=top.number("beta") if "beta" in data else None,
        valid_fraction=top.number("valid_fraction") if "valid_fraction" in data else None,
        filters=_filters(data.get("filters", {}), family, where),
        ranked=_flag(top, "ranked", True),
        audit=_audit(data.get("audit", {}), where),
        clean=_clean(data.get("clean", {}), family, where),
    )
    _check_shape(spec, top)
    return spec


def _flag(top: _Fields, key: str, default: bool) -> bool:
    value = top.data.get(key, default)
    if not isinstance(value, bool):
        raise top.fail(key, f"must be true or false, got {value!r}")
    return value


def _budget(table: Any, where: str) -> TaskBudget:
    if table is None:
        raise DataError(f"{where}: missing field 'budget' (a [budget] table with {list(BUDGET_KEYS)})")
    budget = _Fields(table, where, "budget")
    budget.only(BUDGET_KEYS)
    return TaskBudget(
        budget.number("train_examples_multiple", positive=True),
        budget.integer("adapt_steps", minimum=1),
        budget.number("wall_seconds", positive=True),
    )


def _filters(table: Any, family: str, where: str) -> dict[str, int]:
    declared = protocols.get(family)
    found = _Fields(table, where, "filters")
    found.only(declared.filters)
    for key in declared.required_filters:
        found.need(key)
    return {key: found.integer(key, minimum=MIN_FILTER.get(key, 1)) for key in table}


def _check_shape(spec: TaskSpec, top: _Fields) -> None:
    """Rules between fields (the family's, then the split rule's own): what the split would otherwise get
    silently wrong."""
    declared = protocols.get(spec.family)
    if declared.one_source and len(spec.source) != 1:
        raise top.fail(
            "source", f"must name exactly one domain in family {spec.family}, got {list(spec.source)}"
        )
    if spec.target in spec.source:
        raise top.fail("target", f"{spec.target!r} is also a source")
    if declared.cold_fractions:
        if spec.beta is None or spec.valid_fraction is None:
            raise DataError(f"{top.where}: family {spec.family} needs 'beta' and 'valid_fraction'")
        if not (spec.beta > 0 and spec.valid_fraction > 0 and spec.beta + spec.valid_fraction <= 1):
            raise DataError(f"{top.where}: beta + valid_fraction must lie in (0, 1], each > 0")
    elif spec.beta is not None or spec.valid_fraction is not None:
        why = "its split is published" if declared.split.reads == "published" else "its split rule takes none"
        raise DataError(f"{top.where}: family {spec.family} takes no 'beta' or 'valid_fraction' ({why})")
    if declared.check is not None:
        declared.check(spec, top.where)
    f = spec.filters
    if "min_overlap" in f and "max_users" in f and f["max_users"] < f["min_overlap"]:
        raise top.fail(
            "filters.max_users", f"({f['max_users']}) is below [filters] min_overlap ({f['min_overlap']})"
        )


def _audit(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, dict) or set(table) - set(AUDIT_DEFAULTS):
        raise DataError(f"{where}: [audit] takes only {sorted(AUDIT_DEFAULTS)}")
    out = {**AUDIT_DEFAULTS, **table}
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in out.values()):
        raise DataError(f"{where}: [audit] values must be numbers")
    if not (0 < float(out["jaccard"]) <= 1) or int(out["min_co"]) < 1:
        raise DataError(f"{where}: [audit] needs 0 < jaccard <= 1 and min_co >= 1")
    return {"jaccard": float(out["jaccard"]), "min_co": int(out["min_co"])}


def _clean(table: Any, family: str, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise DataError(f"{where}: [clean] must be a table")
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key == "time_quantile":
            if isinstance(value, bool) or not isinstance(value, float | int) or not 0 <= value <= 1:
                raise DataError(f"{where}: [clean] time_quantile must lie in [0, 1]")
            out[key] = float(value)
            continue
        if key not in CLEAN_RULES:
            raise DataError(f"{where}: [clean] has unknown rule {key!r}; known: {sorted(CLEAN_RULES)}")
        if value not in CLEAN_RULES[key]:
            raise DataError(f"{where}: [clean] {key} must be one of {CLEAN_RULES[key]}, got {value!r}")
        if key not in protocols.get(family).clean:
            allowed = tuple(name for name in FAMILIES if key in protocols.get(name).clean)
            raise DataError(f"{where}: [clean] {key} applies to families {allowed} only")
        out[key] = value
    if out.get("time_cut") == "global" and "time_quantile" not in out:
        raise DataError(f"{where}: [clean] time_cut = 'global' needs time_quantile")
    return out


# ---------------------------------------------------------------- a file against its data set and metrics


def check_spec(
    spec: TaskSpec, datasets: catalog.Found, where: str, metrics: Collection[str] | None = None
) -> TaskSpec:
    """The spec with the data set's aliases resolved, or a DataError naming the file and field.

    Checks what a file alone cannot show: the data set exists, has the domains, and offers what the family
    needs (its declaration's ``needs``: R explicit ratings, L timestamps, C a published split); the metrics
    are known (when given).
    """
    try:
        dataset = datasets.get(spec.dataset)
    except DataError as exc:
        raise DataError(f"{where}: field 'dataset': {exc}") from None
    for need in protocols.get(spec.family).needs:
        if not protocols.NEEDS[need].holds(dataset):
            raise DataError(f"{where}: family {spec.family} needs {protocols.NEEDS[need].problem(dataset)}")
    timed = [r for r in ("history", "time_cut") if spec.rule(r) != CLEAN_RULES[r][0]]
    if timed and not dataset.timestamps:
        raise DataError(f"{where}: [clean] {timed[0]} needs timestamps; data set {dataset.name!r} has none")
    source = tuple(_domain(dataset, d, where, "source") for d in spec.source)
    target = _domain(dataset, spec.target, where, "target")
    if target in source:
        raise DataError(f"{where}: field 'target' {target!r} is also a source")
    if metrics is not None:
        unknown = [m for m in spec.metrics if m not in metrics]
        if unknown:
            raise DataError(
                f"{where}: field 'metrics' has unknown metric(s) {unknown}; known: {sorted(metrics)}"
            )
    return dataclasses.replace(spec, dataset=dataset.name, source=source, target=target)


def _domain(dataset: catalog.Dataset, name: str, where: str, key: str) -> str:
    found = dataset.domain(name)
    if found is None:
        aliases = f", aliases {sorted(dataset.aliases)}" if dataset.aliases else ""
        raise DataError(
            f"{where}: field {key!r}: data set {dataset.name!r} has no domain {name!r}; it has "
            f"{list(dataset.domains)}{aliases}"
        )
    return found


def load_spec_file(
    path: Path, datasets: catalog.Found | None = None, metrics: Collection[str] | None = None
) -> TaskSpec:
    """One spec file, validated on its own and against its data set (``datasets``: default the registry)."""
    data = read_toml(path, "spec")
    spec = parse_spec(data, str(path))
    if spec.id != path.stem:
        raise DataError(f"{path}: id {spec.id!r} differs from the file name")
    datasets = datasets if datasets is not None else catalog.registry()
    return check_spec(spec, datasets, str(path), metrics if metrics is not None else _known_metrics)


# ---------------------------------------------------------------- every file on the search path


@dataclass(frozen=True)
class SpecSet:
    """The valid specs by id with the file each came from, and every file that failed with its reason."""

    specs: dict[str, TaskSpec]
    origins: dict[str, Path]
    errors: dict[str, str]  # file -> problem
    bad: dict[str, str]  # task id (file stem) -> problem of the first failing file with that name

    def get(self, task_id: str) -> TaskSpec:
        if task_id in self.specs:
            return self.specs[task_id]
        if task_id in self.bad:
            raise DataError(self.bad[task_id])
        raise DataError(f"unknown task {task_id!r}; known tasks: {', '.join(self.specs)}")


def _folders(spec_dir: Path | None) -> list[Path]:
    """The package's folder means the whole search path (it heads it); another folder means itself."""
    if spec_dir is None or Path(spec_dir).resolve() == SPEC_DIR.resolve():
        return [d.tasks for d in search.search_path()]
    return [Path(spec_dir)]


def find_specs(spec_dir: Path | None = None) -> SpecSet:
    """Every spec file of the search path (or of ``spec_dir`` alone), each validated on its own."""
    datasets = catalog.registry()
    specs: dict[str, TaskSpec] = {}
    origins: dict[str, Path] = {}
    errors: dict[str, str] = {}
    bad: dict[str, str] = {}
    for folder in _folders(spec_dir):
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            if path.stem in origins:
                problem = f"{path}: task id {path.stem!r} is already defined by {origins[path.stem]}"
            else:
                try:
                    specs[path.stem] = load_spec_file(path, datasets)
                    origins[path.stem] = path
                    continue
                except DataError as exc:
                    problem = str(exc)
            errors[str(path)] = problem
            bad.setdefault(path.stem, problem)
    for folder in search.missing_dirs():
        errors[folder] = f"{folder}: spec folder not found (from --specs or ${search.SPECS_ENV})"
    return SpecSet(dict(sorted(specs.items())), origins, errors, bad)


def all_specs(spec_dir: Path | None = None) -> dict[str, TaskSpec]:
    """Every valid spec, by id, in sorted order (files that fail are left out; ``find_specs`` says why)."""
    return find_specs(spec_dir).specs


def get_spec(task_id: str, spec_dir: Path | None = None) -> TaskSpec:
    """The spec of ``task_id``; an unknown id lists the known ones, a bad file gives its reason."""
    return find_specs(spec_dir).get(task_id)


def package_specs() -> dict[str, TaskSpec]:
    """The valid specs shipped in the package (what a suite of "all" tasks means for committed results)."""
    found = find_specs()
    package = SPEC_DIR.resolve()
    return {t: s for t, s in found.specs.items() if found.origins[t].parent.resolve() == package}

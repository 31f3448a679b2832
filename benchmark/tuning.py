"""Equal-budget tuning: at most N seeded configurations per (method, task group), scored on validation users.

Why: a method run at hand-tuned defaults and one run at untouched defaults are not compared fairly. Every
method (floors excepted) declares a search space in its TOML, ``[search]``: a list of values per
hyper-parameter whose **first value is the default** (``[search.R]`` etc. override keys per family). The
sampler draws the same way for every method: the default configuration first, then N-1 others without
replacement from the product of the lists (``numpy.random.default_rng(sampler_seed)``).

Task group: the tasks that share their training data, i.e. whose specs agree on everything but the id, K,
the support pool (``filters.pool``), the metrics and ``ranked`` (``group_key``), e.g. R-books2movies-b20
K=0,1,3,5. Their validation users are the same, but their validation supports (and in family R the K=0
query rows) differ, so a group is scored on one representative task: its smallest K (the K=0 task where the
group has one). The winner is then run on every task of the group. K=0 exercises no support adaptation, so
search spaces leave adaptation hyper-parameters (``adapt_lr``...) at their defaults.

A trial fits the method with seed 0 on the representative task's budgeted ``TrainView`` (``make_view``, the
task's budget and wall-clock ceiling) and scores it with the view's validator (``-user_mae`` in family R,
``ndcg@10`` in L and C, on ``valid_support``/``valid_query``). The encoded task a trial sees holds only the
training and validation tables (``validation_only``): the test support, test query and CDRIB negatives are
dropped before any method or metric code runs, so test labels cannot influence which configuration wins.

Results: ``leaderboard/tuned/<method>.toml``, one table per group with every trial's configuration, status,
validation score and seconds, and the winner (best score; ties go to the earlier trial, so the default
keeps its place unless beaten). The file is rewritten after every trial, so an interrupted ``coldbench tune``
resumes where it stopped. ``tuned_config(method, task)`` gives bench the winner and its number of trials.

In-fit grids: bias-transfer, user-knn, item-knn and ease search lists of values inside ``fit`` (each value
one validation). Their ``[search]`` lists every such key's values, each searched as a one-value grid, so a
trial (and the tuned config) pins every grid and the method validates one configuration per trial: N
configurations in all, as every other method.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.spec import FAMILIES, SPEC_DIR, TaskSpec, all_specs

if TYPE_CHECKING:
    from benchmark.api import Method
    from benchmark.harness import EncodedTask

TUNED_DIR = Path(str(resources.files("leaderboard") / "tuned"))  # the committed folder (editable install)
TUNED_ENV = "COLDBENCH_TUNED"  # another folder of tuned files, e.g. the repository's from a wheel install
STANDARD_TRIALS = 8  # every method's N on the standard suite
TUNING_SEED = 0
SAMPLER_SEED = 0
VALIDATION_TABLES = ("train", "valid_support", "valid_query")
GROUP_FREE_FIELDS = ("id", "k", "metrics", "ranked")  # fields that may differ within a task group

__all__ = [
    "CARD_HEADER",
    "STANDARD_TRIALS",
    "TUNED_DIR",
    "TUNED_ENV",
    "TaskGroup",
    "Trial",
    "card_rows",
    "default_tuned_dir",
    "group_of",
    "run_trials",
    "sample_configs",
    "score_trial",
    "search_space",
    "task_groups",
    "tune_method",
    "tuned_config",
    "validation_only",
    "winner",
]


# -- task groups ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskGroup:
    """Tasks with the same training data; ``representative`` (smallest K) is the one trials are scored on."""

    name: str
    family: str
    tasks: tuple[str, ...]
    representative: str


def group_key(spec: TaskSpec) -> str:
    """Every spec field that decides the training data (all but id, K, pool, metrics, ranked), as JSON."""
    fields = {k: v for k, v in spec.to_dict().items() if k not in GROUP_FREE_FIELDS}
    fields["filters"] = {k: v for k, v in spec.filters.items() if k != "pool"}
    return json.dumps(fields, sort_keys=True)


def group_name(spec: TaskSpec) -> str:
    """The task id without its ``-k<K>`` part: ``R-books2movies-b20-k3`` -> ``R-books2movies-b20``."""
    return re.sub(r"-k\d+(?=-|$)", "", spec.id)


def task_groups(specs: Iterable[TaskSpec]) -> list[TaskGroup]:
    """Group ``specs`` by training data; a name shared by two different groups is an error."""
    by_key: dict[str, list[TaskSpec]] = {}
    for spec in specs:
        by_key.setdefault(group_key(spec), []).append(spec)
    groups: dict[str, TaskGroup] = {}
    for members in by_key.values():
        members.sort(key=lambda s: (s.k, s.id))
        names = {group_name(s) for s in members}
        if len(names) != 1:
            raise ValueError(f"tasks {[s.id for s in members]} share training data but not a group name")
        name = names.pop()
        if name in groups:
            raise ValueError(f"group name {name!r} names two groups: {groups[name].tasks}, {members[0].id}")
        groups[name] = TaskGroup(name, members[0].family, tuple(s.id for s in members), members[0].id)
    return [groups[n] for n in sorted(groups)]


@functools.cache
def _catalog_groups(spec_dir: Path) -> dict[str, TaskGroup]:
    return {t: g for g in task_groups(all_specs(spec_dir).values()) for t in g.tasks}


def group_of(task_id: str, spec_dir: Path = SPEC_DIR) -> TaskGroup:
    """The group of a catalogue task, over every spec in ``spec_dir`` (not only the tasks being run)."""
    groups = _catalog_groups(spec_dir)
    if task_id not in groups:
        raise KeyError(f"unknown task {task_id!r}")
    return groups[task_id]


# -- search space and sampler --------------------------------------------------------------------------------
def _method_tables(cls: type[Method]) -> dict[str, Any]:
    path = Path(inspect.getfile(cls)).with_suffix(".toml")
    return tomllib.loads(path.read_text()) if path.is_file() else {}


def search_space(cls: type[Method], family: str) -> dict[str, list[Any]]:
    """The method's ``[search]`` lists for ``family`` (``[search.<family>]`` over ``[search]``), checked.

    A key whose default is a list (an in-fit grid) with scalars in ``[search]`` gets one-value grids
    (``k = [50, 200]`` searches ``k = [50]`` and ``k = [200]``), so each trial validates one configuration.
    Raises ``ValueError`` when a key is not a config key, a list is empty or repeats a value, or its first
    value is not the default (a scalar of the default list for an in-fit grid).
    """
    search = _method_tables(cls).get("search", {})
    space = {k: v for k, v in search.items() if not (k in FAMILIES and isinstance(v, dict))}
    space |= search.get(family, {})
    default = cls.default_config(family)
    for key, values in space.items():
        where = f"{cls.__name__} [search] {key} ({family})"
        if key not in default:
            raise ValueError(f"{where}: not a key of the default config ({sorted(default)})")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: must be a non-empty list of values")
        if any(values[i] == values[j] for i in range(len(values)) for j in range(i)):
            raise ValueError(f"{where}: repeats a value")
        first, base = values[0], default[key]
        pinned_grid = isinstance(base, list) and not isinstance(first, list) and first in base
        if first != base and not pinned_grid:
            raise ValueError(f"{where}: the first value {first!r} must be the default {base!r}")
        if pinned_grid:  # one value of an in-fit grid per trial: a one-value grid, of the config's type
            space[key] = [[v] for v in values]
    return space


def sample_configs(space: dict[str, list[Any]], n: int, seed: int = SAMPLER_SEED) -> list[dict[str, Any]]:
    """The default (every list's first value), then up to ``n - 1`` other combinations drawn without
    replacement; combination ``i`` of the product is decoded in ``itertools.product`` order."""
    keys = list(space)
    sizes = [len(space[k]) for k in keys]
    total = math.prod(sizes)
    others = min(max(n - 1, 0), total - 1)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(total - 1, size=others, replace=False) + 1 if others else np.zeros(0, dtype=np.int64)
    out = []
    for index in [0, *(int(i) for i in drawn)]:
        digits = []
        for size in reversed(sizes):
            index, digit = divmod(index, size)
            digits.append(digit)
        out.append({k: space[k][d] for k, d in zip(keys, reversed(digits), strict=True)})
    return out


# -- one trial -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    """One configuration scored on validation users: ``score`` is None unless ``status`` is ``ok``."""

    config: dict[str, Any]
    status: str
    score: float | None
    seconds: float
    method_trials: int = 1  # configurations the method's own in-fit selection validated
    error: str | None = None


def validation_only(enc: EncodedTask) -> EncodedTask:
    """The encoded task with only training and validation tables: no test support, query or negatives."""
    return dataclasses.replace(enc, tables={t: enc.tables[t] for t in VALIDATION_TABLES}, negatives=None)


def score_trial(
    enc: EncodedTask,
    cls: type[Method],
    overrides: dict[str, Any],
    seed: int = TUNING_SEED,
    device: str = "cpu",
    threads: int | None = None,
) -> Trial:
    """Fit on the task's budgeted view and score on its validation users, as ``runner.execute`` would fit.

    Failures become statuses (``failed``, ``over_budget``, ``timeout`` past the task's wall-clock ceiling for
    fit plus validation), so a configuration that could not run in bench never wins.
    """
    from benchmark import harness
    from benchmark.api import BudgetExceeded
    from benchmark.runner import resolve_config
    from benchmark.seeding import seed_everything

    enc = validation_only(enc)
    config = resolve_config(cls, enc.spec.family, overrides)
    seed_everything(seed, threads)
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    start = time.perf_counter()
    view = harness.make_view(enc, budget, deadline=time.monotonic() + budget.wall_seconds)
    method = None
    status, error, score = "ok", None, None
    try:
        method = cls(config, seed, device)
        method.fit(view, budget)
        if view.timed_out or time.perf_counter() - start > budget.wall_seconds:
            raise TimeoutError(f"fit ran past the {budget.wall_seconds:.0f}s wall-clock ceiling")
        score = float(view.validate(method.predict))
        if not math.isfinite(score):
            raise ValueError(f"non-finite validation score {score}")
    except BudgetExceeded as exc:
        status, error = "over_budget", str(exc)
    except TimeoutError as exc:
        status, error = "timeout", str(exc)
    except Exception as exc:  # a configuration's failure is a trial's status, never the end of tuning
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - start
    if status == "ok" and wall > budget.wall_seconds:
        status, error = "timeout", f"wall clock {wall:.1f}s over the {budget.wall_seconds:.0f}s ceiling"
    return Trial(
        config=dict(overrides),
        status=status,
        score=score if status == "ok" else None,
        seconds=round(wall, 3),
        method_trials=int(getattr(method, "trials", 1) or 1),
        error=error.splitlines()[0] if error else None,
    )


def run_trials(
    enc: EncodedTask,
    cls: type[Method],
    configs: list[dict[str, Any]],
    seed: int = TUNING_SEED,
    device: str = "cpu",
    threads: int | None = None,
    done: list[Trial] | None = None,
    on_trial: Callable[[list[Trial], bool], object] | None = None,
) -> list[Trial]:
    """Score ``configs`` in order; a trial in ``done`` with the same config is reused, not re-run.

    ``on_trial(trials so far, whether the last one ran)`` is called after each.
    """
    previous = {json.dumps(t.config, sort_keys=True): t for t in done or []}
    trials: list[Trial] = []
    for config in configs:
        trial = previous.get(json.dumps(config, sort_keys=True))
        ran = trial is None
        if trial is None:
            trial = score_trial(enc, cls, config, seed, device, threads)
        trials.append(trial)
        if on_trial is not None:
            on_trial(trials, ran)
    return trials


def winner(trials: list[Trial]) -> int | None:
    """Index of the best ``ok`` trial; the earlier wins a tie (the default is trial 0)."""
    scored = [(t.score, -i) for i, t in enumerate(trials) if t.score is not None]
    return -max(scored)[1] if scored else None


# -- the tuned file ------------------------------------------------------------------------------------------
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    """A TOML value for the types a config holds: bool, int, float, str, lists and (inline) tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # Python's repr (1e-05, nan, inf, -inf) is valid TOML
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to TOML")


def dumps(data: dict[str, Any]) -> str:
    """A tuned file: top-level scalars, then ``[groups.<name>]`` with ``[[groups.<name>.trials]]``."""
    lines = [
        "# Written by `coldbench tune` (benchmark/tuning.py); bench runs each group's `config` on its tasks.",
        "# Each trial: one configuration fitted with seed 0 and scored on validation cold users only.",
    ]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in data.items() if k != "groups" and v is not None]
    for name, group in data.get("groups", {}).items():
        lines += ["", f"[groups.{_key(name)}]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in group.items() if k != "trials" and v is not None]
        for trial in group.get("trials", []):
            lines += ["", f"[[groups.{_key(name)}.trials]]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in trial.items() if v is not None]
    return "\n".join(lines) + "\n"


def default_tuned_dir() -> Path:
    """``$COLDBENCH_TUNED``, else ``leaderboard/tuned`` next to this package."""
    return Path(os.environ[TUNED_ENV]) if os.environ.get(TUNED_ENV) else TUNED_DIR


def tuned_path(method: str, tuned_dir: Path | None = None) -> Path:
    return (tuned_dir or default_tuned_dir()) / f"{method}.toml"


def load_tuned(method: str, tuned_dir: Path | None = None) -> dict[str, Any]:
    path = tuned_path(method, tuned_dir)
    return _load(path, path.stat().st_mtime_ns) if path.is_file() else {}


@functools.lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int) -> dict[str, Any]:  # keyed on mtime: bench asks once per cell
    return tomllib.loads(path.read_text())


def write_tuned(method: str, data: dict[str, Any], tuned_dir: Path | None = None) -> Path:
    path = tuned_path(method, tuned_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(data))
    os.replace(tmp, path)
    return path


def _trial_row(trial: Trial) -> dict[str, Any]:
    return {
        "config": trial.config,
        "status": trial.status,
        "score": trial.score,
        "seconds": trial.seconds,
        "method_trials": trial.method_trials,
        "error": trial.error,
    }


def _trial_of(row: dict[str, Any]) -> Trial:
    return Trial(
        row["config"],
        row["status"],
        row.get("score"),
        row["seconds"],
        row.get("method_trials", 1),
        row.get("error"),
    )


def tuned_config(
    method: str, task_id: str, tuned_dir: Path | None = None, spec_dir: Path = SPEC_DIR
) -> tuple[dict[str, Any], int] | None:
    """The tuned config overrides of ``task_id``'s group and the number of trials that chose them.

    None when the method has no tuned file, the task is not in the catalogue, the group was not tuned, or
    its tuning did not finish.
    """
    groups = _catalog_groups(spec_dir)
    if task_id not in groups:
        return None
    entry = load_tuned(method, tuned_dir).get("groups", {}).get(groups[task_id].name)
    if not entry or not entry.get("complete") or "config" not in entry:
        return None
    return dict(entry["config"]), len(entry["trials"])


def card_rows(method: str, tuned_dir: Path | None = None) -> list[list[str]]:
    """Plain-text rows for the method card: group, scored on, trials (ok), winner's score, default's score,
    winner's config."""
    rows = []
    for name, entry in load_tuned(method, tuned_dir).get("groups", {}).items():
        trials = [_trial_of(t) for t in entry.get("trials", [])]
        ok = sum(t.status == "ok" for t in trials)
        best = entry.get("score")
        default = trials[0].score if trials else None
        config = ", ".join(f"{k}={json.dumps(v)}" for k, v in entry.get("config", {}).items())
        rows.append(
            [
                name,
                entry.get("scored_on", ""),
                f"{len(trials)} ({ok} ok)" + ("" if entry.get("complete") else ", unfinished"),
                f"{best:.4f}" if best is not None else "–",
                f"{default:.4f}" if default is not None else "–",
                config or "default",
            ]
        )
    return rows


CARD_HEADER = ["Task group", "Scored on", "Trials", "Best validation", "Default's validation", "Tuned config"]


# -- tuning a method -----------------------------------------------------------------------------------------
@dataclass
class GroupOutcome:
    group: TaskGroup
    trials: list[Trial] = field(default_factory=list)
    best: int | None = None
    reused: bool = False  # complete in the tuned file already: nothing ran


def tune_method(
    method: str,
    task_ids: Iterable[str],
    n_trials: int,
    data_dir: Path,
    tasks_dir: Path,
    tuned_dir: Path | None = None,
    seed: int = TUNING_SEED,
    sampler_seed: int = SAMPLER_SEED,
    device: str = "cpu",
    threads: int | None = None,
    force: bool = False,
    log: Callable[[str], object] = print,
) -> list[GroupOutcome]:
    """Tune ``method`` on the groups of ``task_ids`` (whole groups, as defined over every spec).

    A group whose entry is complete for the same split, space, seeds and N is left as is (``force`` re-runs
    it); an unfinished one resumes, reusing its trials.
    """
    from benchmark.registry import load_method

    cls = load_method(method)
    if not _method_tables(cls).get("search"):
        raise ValueError(f"method {method!r} declares no [search] space in its TOML (floors are not tuned)")
    if n_trials < 1:
        raise ValueError("the number of trials must be at least 1")
    wanted = {group_of(t).name: group_of(t) for t in task_ids}
    groups = [wanted[n] for n in sorted(wanted) if wanted[n].family in cls.families]
    data = {"method": method, **load_tuned(method, tuned_dir)}
    data["groups"] = dict(data.get("groups", {}))
    run = _GroupRun(method, cls, data, tuned_dir, seed, sampler_seed, device, threads, log)
    return [run(group, n_trials, data_dir, tasks_dir, force) for group in groups]


@dataclass
class _GroupRun:
    """Tunes one group at a time, rewriting the method's tuned file after every trial."""

    method: str
    cls: type[Method]
    data: dict[str, Any]
    tuned_dir: Path | None
    seed: int
    sampler_seed: int
    device: str
    threads: int | None
    log: Callable[[str], object]

    def __call__(
        self, group: TaskGroup, n_trials: int, data_dir: Path, tasks_dir: Path, force: bool
    ) -> GroupOutcome:
        from benchmark.protocols import selection_label
        from benchmark.runner import load_task
        from tasks import artifact
        from tasks.spec import get_spec

        spec = get_spec(group.representative)
        space = search_space(self.cls, spec.family)
        configs = sample_configs(space, n_trials, self.sampler_seed)
        manifest = artifact.build(spec, data_dir, tasks_dir)
        _check_same_training(group, manifest, tasks_dir)
        header = {
            "family": group.family,
            "tasks": list(group.tasks),
            "scored_on": group.representative,
            "split_hash": manifest["split_hash"],
            "metric": selection_label(group.family),
            "n_trials": n_trials,
            "seed": self.seed,
            "sampler_seed": self.sampler_seed,
            "space": space,
        }
        old = self.data["groups"].get(group.name, {})
        same = all(old.get(k) == v for k, v in header.items()) and not force
        if same and old.get("complete"):
            trials = [_trial_of(t) for t in old["trials"]]
            self.log(f"{self.method} {group.name}: tuned already ({len(trials)} trials); --force re-runs it")
            return GroupOutcome(group, trials, winner(trials), reused=True)
        done = [_trial_of(t) for t in old.get("trials", [])] if same else []
        enc = load_task(tasks_dir / spec.id, manifest["split_hash"], spec).enc

        def after_trial(trials: list[Trial], ran: bool) -> None:
            if not ran:
                return
            t = trials[-1]
            shown = " ".join(f"{k}={v}" for k, v in t.config.items()) or "(default)"
            result = f"{t.score:.4f}" if t.score is not None else f"{t.status}: {t.error}"
            self.log(
                f"{self.method} {group.name} [{len(trials)}/{len(configs)}] {shown}: {result}"
                f" ({t.seconds:.1f}s)"
            )
            self.save(group.name, header, trials, complete=False)

        trials = run_trials(enc, self.cls, configs, self.seed, self.device, self.threads, done, after_trial)
        self.save(group.name, header, trials, complete=True)
        best = winner(trials)
        chosen = trials[best].config if best is not None else "none (no trial ran ok)"
        self.log(f"{self.method} {group.name}: winner {chosen}")
        return GroupOutcome(group, trials, best)

    def save(self, name: str, header: dict[str, Any], trials: list[Trial], complete: bool) -> None:
        from benchmark.runner import code_info

        code = code_info()
        best = winner(trials)
        self.data["groups"][name] = {
            **header,
            "code": f"{code.version} {code.commit[:12]}" + (" dirty" if code.dirty else ""),
            "complete": complete,
            "best": best,
            "score": trials[best].score if best is not None else None,
            "config": trials[best].config if best is not None else None,
            "trials": [_trial_row(t) for t in trials],
        }
        write_tuned(self.method, self.data, self.tuned_dir)


def _check_same_training(group: TaskGroup, manifest: dict[str, Any], tasks_dir: Path) -> None:
    """Where other tasks of the group are built already, their training table must be the scored one's."""
    train = manifest["content"]["train"]
    for task in group.tasks:
        path = tasks_dir / task / "manifest.json"
        if task == group.representative or not path.is_file():
            continue
        other = json.loads(path.read_text())["content"].get("train")
        if other != train:
            raise ValueError(
                f"group {group.name}: {task}'s training data differs from {group.representative}'s; "
                "tasks of a group must share it (tasks/spec.py fields, benchmark/tuning.py group_key)"
            )

"""One cell of the grid: (task, method, seed, config) -> a run record, per-user metrics, predictions.

The record is written last and atomically, so a run killed midway leaves no record and ``bench`` re-runs it.
A method that raises, returns NaN or the wrong shape yields a ``failed`` record with the error; one that asks
for more adaptation steps than allowed yields ``over_budget``; one past the wall-clock ceiling ``timeout``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import importlib
import json
import platform
import resource
import shlex
import subprocess
import time
import tomllib
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from benchmark import harness, metrics, pretrain, protocols
from benchmark.api import Budget, BudgetExceeded, Method, TrainView
from benchmark.records import (
    SET_VARIANT,
    BudgetUse,
    Code,
    Env,
    MethodRef,
    RunRecord,
    TaskRef,
    Timing,
    record_path,
    write_record,
)
from benchmark.registry import (
    Provenance,
    load_method,
    load_target,
    provenance,
    registration,
    source_sha256,
)
from benchmark.seeding import seed_everything
from tasks import artifact
from tasks.audit import summary as audit_summary
from tasks.cache import write_parquet_atomic
from tasks.spec import TaskSpec, get_spec

REPO = Path(__file__).resolve().parents[1]
N_QUERY = "n_query"  # per-user file column: the user's query rows (ratings in R, pairs in C)
UNIT_COLUMN = {"users": "user", "items": "item"}  # per-unit file: the cold unit's ID column


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.cache
def code_info() -> Code:
    """Package version (what decides whether a finished cell is current) and the git commit (provenance).

    Once per process: two git subprocesses per cell cost more than a floor cell itself.
    """
    try:
        pkg = version("coldbench")
    except PackageNotFoundError:
        pkg = "0+unknown"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "benchmark", "methods", "tasks"))
    return Code(version=pkg, commit=commit, dirty=dirty)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def env_info(threads: int, device: str) -> Env:
    return Env(
        python=platform.python_version(),
        torch=torch.__version__,
        numpy=np.__version__,
        pandas=pd.__version__,
        platform=platform.platform(),
        cpu=cpu_model(),
        threads=threads,
        device=device,
    )


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux), so a worker that runs many cells reports each one's peak."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else the process's lifetime peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ConfigError(KeyError, ValueError):
    """A config override the method does not take, or of the wrong type; the message names the key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _type_problem(value: Any, default: Any) -> str:
    """Why ``value`` cannot replace ``default`` ('' when it can): the default's type is the key's type."""
    if default is None:
        return ""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string (quote it, e.g. '\"1\"')"
    else:
        ok, kind = isinstance(value, type(default)), f"a {type(default).__name__}"
    return "" if ok else f"expects {kind} like its default {default!r}, got {value!r}"


def resolve_config(cls: type[Method], family: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The method's default config for ``family`` with ``overrides``, each an existing key of its type."""
    base = cls.default_config(family)
    unknown = sorted(set(overrides) - set(base))
    if unknown:
        known = sorted(base) if base else "none, it takes no configuration"
        raise ConfigError(f"unknown config key(s) {unknown} for this method; known: {known}")
    for key, value in overrides.items():
        problem = _type_problem(value, base[key])
        if problem:
            raise ConfigError(f"config key {key!r} {problem}")
    return {**base, **overrides}


@dataclass(frozen=True)
class ChosenConfig:
    """The configuration a cell runs, how many tuning trials chose it, and its record identity part."""

    config: dict[str, Any]
    trials: int | None  # None: not tuned
    variant: str  # "" standard; a profile name; else "set-" and the config hash's first 12 digits


def cell_config(
    method: str, cls: type[Method], spec: TaskSpec, overrides: dict[str, Any], tuned: bool = True
) -> ChosenConfig:
    """The one rule for which configuration a cell runs and where its record goes.

    The standard configuration is the task group's tuned one where ``coldbench tune`` finished it (bench and
    run, ``tuned``), else the TOML default. ``--set`` overrides that equal it keep the standard identity;
    others get their own: the profile name for ``--set profile=NAME`` alone, else ``set-<config hash>``.
    """
    found = None
    if tuned:
        from benchmark.tuning import tuned_config

        found = tuned_config(method, spec.id)
    standard = resolve_config(cls, spec.family, found[0] if found else {})
    if not overrides:
        return ChosenConfig(standard, found[1] if found else None, "")
    config = resolve_config(cls, spec.family, overrides)
    digest = config_hash(config)
    if digest == config_hash(standard):
        return ChosenConfig(config, found[1] if found else None, "")
    if set(overrides) == {"profile"}:
        return ChosenConfig(config, None, str(overrides["profile"]))
    return ChosenConfig(config, None, f"{SET_VARIANT}{digest[:12]}")


TASK_CACHE_SIZE = 2  # tasks kept per process: the current one and the last, to bound memory


@dataclass(frozen=True)
class LoadedTask:
    manifest: dict
    enc: harness.EncodedTask


_TASKS: OrderedDict[tuple[Path, str], LoadedTask] = OrderedDict()
LOADS = [0]  # artifacts this process loaded: bench reports it, so a test sees the per-worker reuse


def load_task(folder: Path, split_hash: str, spec: TaskSpec) -> LoadedTask:
    """The artifact loaded, verified and encoded once per process, then reused by every method and seed.

    Bench hands a worker consecutive cells of one task, so each worker pays this once per task. The encoded
    arrays are shared by those cells and must not be written to (methods receive them through the view).
    """
    key = (folder.resolve(), split_hash)
    cached = _TASKS.get(key)
    if cached is not None and cached.enc.spec == spec:
        _TASKS.move_to_end(key)
        return cached
    _TASKS.pop(key, None)
    while len(_TASKS) >= TASK_CACHE_SIZE:  # evict before loading: the peak holds at most the cache size
        _TASKS.popitem(last=False)
    data = artifact.load(folder)
    LOADS[0] += 1
    if data.split_hash != split_hash:
        raise ValueError(f"{folder}: split hash {data.split_hash[:12]}, expected {split_hash[:12]}; rebuilt?")
    _TASKS[key] = LoadedTask(data.manifest, harness.encode(data, spec))
    del data
    pa.default_memory_pool().release_unused()  # Arrow keeps the freed Parquet buffers (~130 MB on C-cloth)
    return _TASKS[key]


@dataclass
class Outcome:
    """What one fit + evaluation produced, before anything is written."""

    status: str
    error: str | None
    evaluation: harness.Evaluation | None
    view: TrainView
    method: Method | None
    budget: Budget
    fit_seconds: float
    wall_seconds: float
    pretrain: pretrain.PretrainInfo | None = None


FRAMEWORK_MODULES = (
    "benchmark.api",
    "benchmark.fitting",
    "benchmark.harness",
    "benchmark.metrics",
    "benchmark.pretrain",
)


@functools.cache
def _framework_sha() -> str:
    """sha256 of the framework code a pretraining runs through (the view, selection, validation, cache), so
    that a cached state from an older ColdBench is never reused."""
    digest = hashlib.sha256()
    for name in FRAMEWORK_MODULES:
        digest.update(Path(importlib.import_module(name).__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


def pretrain_key(enc: harness.EncodedTask, cls: type[Method], config: dict[str, Any], seed: int) -> str:
    """The cache key of a two-stage method's pretraining on ``enc`` (``benchmark.pretrain``)."""
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    name = f"{cls.__module__}:{cls.__qualname__}@{_framework_sha()}"
    digest = config_hash(config)
    return pretrain.pretrain_key(
        name, source_sha256(cls), digest, seed, enc.pretrain_digest, budget, enc.spec.family
    )


def _fit(
    method: Method, view: TrainView, budget: Budget, key: Callable[[], str]
) -> pretrain.PretrainInfo | None:
    """``pretrain`` (or its cached result) then ``fit`` for a two-stage method, else ``fit`` alone."""
    info = pretrain.prepare(method, view, key()) if pretrain.has_pretrain(method) else None
    method.fit(view, budget)
    return info


def execute(
    enc: harness.EncodedTask,
    cls: type[Method],
    config: dict[str, Any],
    seed: int,
    device: str = "cpu",
    keep_predictions: bool = False,
) -> Outcome:
    """Fit on the view, predict for the test cold users, score; every failure becomes a status."""
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    start = time.perf_counter()
    view = harness.make_view(enc, budget, deadline=time.monotonic() + budget.wall_seconds)
    method: Method | None = None
    status, error = "ok", None
    fit_s = 0.0
    evaluation: harness.Evaluation | None = None
    info: pretrain.PretrainInfo | None = None
    try:
        method = cls(config, seed, device)
        info = _fit(method, view, budget, lambda: pretrain_key(enc, cls, config, seed))
        fit_s = time.perf_counter() - start
        if view.timed_out or fit_s > budget.wall_seconds:
            raise TimeoutError(f"fit ran past the {budget.wall_seconds:.0f}s wall-clock ceiling")
        evaluation = harness.evaluate(
            enc,
            view,
            method.predict,
            "support",
            "query",
            budget.adapt_steps,
            keep_predictions=keep_predictions,
        )
    except BudgetExceeded as exc:
        status, error = "over_budget", str(exc)
    except TimeoutError as exc:
        status, error = "timeout", str(exc)
    except Exception as exc:  # a method's failure becomes a failed record, never a crash of the suite
        status = "failed"
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    fit_s = fit_s or time.perf_counter() - start
    wall = time.perf_counter() - start
    if status == "ok" and (view.timed_out or wall > budget.wall_seconds):
        status, error = "timeout", f"wall clock {wall:.1f}s over the {budget.wall_seconds:.0f}s ceiling"
    evaluation = evaluation if status == "ok" else None
    return Outcome(status, error, evaluation, view, method, budget, fit_s, wall, info)


@dataclass
class CellResult:
    record: RunRecord
    path: Path


class CellHooks(Protocol):
    """What a supervisor learns while a cell runs: when the method starts (with the record to write if it
    must be stopped, and its wall-clock ceiling) and when the method's code is done."""

    def method_started(self, template: RunRecord, ceiling: float) -> None: ...

    def method_done(self) -> None: ...


@dataclass(frozen=True)
class CellContext:
    """Everything of a cell's record that is known before the method runs."""

    spec: TaskSpec
    manifest: dict
    method_name: str
    cls: type[Method]
    config: dict[str, Any]
    seed: int
    threads: int
    device: str
    code: Code
    command: str
    started_at: str
    provenance: Provenance
    trials: int | None = None  # tuning trials that chose this configuration (None: not tuned)
    variant: str = ""  # the record identity's configuration part (``cell_config``)


def _task_ref(ctx: CellContext) -> TaskRef:
    spec = ctx.spec
    return TaskRef(
        id=spec.id,
        family=spec.family,
        split_hash=ctx.manifest["split_hash"],
        k=spec.k,
        beta=spec.beta,
        source=list(spec.source),
        target=spec.target,
        ranked=spec.ranked,
        audit=audit_summary(ctx.manifest["audit"]),
    )


def _method_ref(ctx: CellContext, trials: int) -> MethodRef:
    return MethodRef(
        name=ctx.method_name,
        config=ctx.config,
        config_hash=config_hash(ctx.config),
        paper=ctx.cls.paper or "",
        trials=trials,  # configurations scored on validation
        variant=ctx.variant,
        dist=ctx.provenance.dist,
        dist_version=ctx.provenance.dist_version,
        source_sha256=ctx.provenance.source_sha256,
    )


def template_record(ctx: CellContext, budget: Budget) -> RunRecord:
    """The record a supervisor writes for this cell if the method must be stopped (its status and error
    are set then); every figure that needs the method's outcome is zero."""
    return RunRecord(
        task=_task_ref(ctx),
        method=_method_ref(ctx, ctx.trials or 1),
        seed=ctx.seed,
        status="timeout",
        metrics={},
        metric_directions={},
        n_eval_users=0,
        budget=BudgetUse(
            train_examples_limit=budget.train_examples,
            train_examples_used=0,
            adapt_steps_limit=budget.adapt_steps,
            adapt_steps_used=0,
            wall_seconds_limit=budget.wall_seconds,
            wall_seconds_used=0.0,
        ),
        timing=Timing(fit=0.0, adapt=0.0, eval=0.0),
        peak_rss_mb=peak_rss_mb(),
        n_params=0,
        train_flops_estimate=0.0,
        env=env_info(ctx.threads, ctx.device),
        code=ctx.code,
        command=ctx.command,
        started_at=ctx.started_at,
        finished_at=ctx.started_at,
        error=None,
    )


def outcome_record(ctx: CellContext, outcome: Outcome, artifacts: dict[str, str]) -> RunRecord:
    """The record of a cell whose method returned (whatever its status)."""
    status, evaluation, view, budget = outcome.status, outcome.evaluation, outcome.view, outcome.budget
    modules = outcome.method.modules() if outcome.method is not None else []
    reported = (
        {m: float(evaluation.pooled[m]) for m in ctx.spec.metrics} if evaluation and status == "ok" else {}
    )
    n_params = sum(p.numel() for m in modules for p in m.parameters())
    return RunRecord(
        task=_task_ref(ctx),
        method=_method_ref(ctx, ctx.trials or int(getattr(outcome.method, "trials", 1))),
        seed=ctx.seed,
        status=status,
        metrics=reported,
        metric_directions={m: metrics.METRICS[m].direction for m in reported},
        validation_score=getattr(outcome.method, "validation_score", None),
        n_eval_users=len(evaluation.users) if evaluation else 0,
        budget=BudgetUse(
            train_examples_limit=budget.train_examples,
            train_examples_used=view.examples_used,
            adapt_steps_limit=budget.adapt_steps,
            adapt_steps_used=evaluation.adapt_steps_used if evaluation else 0,
            wall_seconds_limit=budget.wall_seconds,
            wall_seconds_used=round(outcome.wall_seconds, 3),
        ),
        timing=Timing(
            fit=round(outcome.fit_seconds, 3),
            adapt=round(evaluation.seconds_predict, 3) if evaluation else 0.0,
            eval=round(evaluation.seconds_eval, 3) if evaluation else 0.0,
            pretrain=outcome.pretrain.source if outcome.pretrain else None,
            pretrain_seconds=round(outcome.pretrain.seconds, 3) if outcome.pretrain else None,
        ),
        peak_rss_mb=peak_rss_mb(),
        n_params=int(n_params),
        train_flops_estimate=float(
            outcome.method.train_flops_estimate(view.examples_used) if outcome.method is not None else 0.0
        ),
        env=env_info(ctx.threads, ctx.device),
        code=ctx.code,
        command=ctx.command,
        started_at=ctx.started_at,
        finished_at=now(),
        error=outcome.error,
        artifacts=artifacts,
    )


def write_side_files(
    enc: harness.EncodedTask, evaluation: harness.Evaluation, path: Path, seed: int, save_predictions: bool
) -> dict[str, str]:
    """Per-unit metrics (with ``n_query``, each unit's query rows, so pooled metrics can be re-derived)
    and, when asked, the predictions; returns the record's ``artifacts``. The units are the cold users, in
    a ``user`` column, or in the cold-item families the cold items, in an ``item`` column (the file keeps
    its name ``seed-N.users.parquet``)."""
    artifacts: dict[str, str] = {}
    users_file = path.with_name(f"seed-{seed}.users.parquet")
    unit = UNIT_COLUMN[protocols.get(enc.spec.family).cold]
    query = enc.tables["query"].rows
    ids, keys = (enc.users, query.user) if unit == "user" else (enc.items, query.item)
    n_query = np.bincount(keys, minlength=len(ids))[evaluation.users]
    frame = pd.DataFrame(
        {unit: ids[evaluation.users], **evaluation.per_user, N_QUERY: n_query.astype(np.int64)}
    )
    write_parquet_atomic(frame, users_file)
    artifacts["per_user"] = users_file.name
    if save_predictions and evaluation.predictions is not None:
        pred_file = path.with_name(f"seed-{seed}.predictions.parquet")
        write_parquet_atomic(evaluation.predictions, pred_file)
        artifacts["predictions"] = pred_file.name
    return artifacts


def run_cell(
    task_id: str,
    method_name: str,
    seed: int,
    data_dir: Path,
    out: Path,
    overrides: dict[str, Any] | None = None,
    save_predictions: bool = False,
    device: str = "cpu",
    tasks_dir: Path | None = None,
    threads: int | None = None,
    command: str | None = None,
    split_hash: str | None = None,
    code: Code | None = None,
    spec: TaskSpec | None = None,
    target: str | None = None,
    hooks: CellHooks | None = None,
    tuned: bool = False,
) -> CellResult:
    """Run one cell and write its record (always, whatever the status) under ``out``.

    Without ``split_hash`` the artifact is built, or checked against the spec and sources; bench passes the
    hash of the artifact it built, and its ``code`` info, so that a cell costs neither again. ``spec`` and
    ``target`` (``module:Class``) replace the lookups by id and name: a supervisor resolves them once.
    """
    started_at = now()
    spec = spec or get_spec(task_id)
    cls = load_target(method_name, target) if target else load_method(method_name)
    if spec.family not in cls.families:
        raise ValueError(f"method {method_name!r} supports families {cls.families}, not {spec.family}")
    chosen = cell_config(method_name, cls, spec, overrides or {}, tuned)
    config, trials = chosen.config, chosen.trials
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device here; use --device cpu")
    threads = seed_everything(seed, threads)
    reset_peak_rss()
    tasks_dir = tasks_dir or artifact.default_task_dir()
    if split_hash is None:
        split_hash = artifact.build(spec, data_dir, tasks_dir)["split_hash"]
    task = load_task(tasks_dir / spec.id, split_hash, spec)
    ctx = CellContext(
        spec,
        task.manifest,
        method_name,
        cls,
        config,
        seed,
        threads,
        device,
        code or code_info(),
        command
        or shlex.join(["coldbench", "run", "--method", method_name, "--task", spec.id, "--seed", str(seed)]),
        started_at,
        provenance(method_name, target or registration(method_name).target, cls),
        trials,
        chosen.variant,
    )
    enc = task.enc
    if hooks is not None:
        budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
        hooks.method_started(template_record(ctx, budget), budget.wall_seconds)
    outcome = execute(enc, cls, config, seed, device, keep_predictions=save_predictions)
    path = record_path(out, spec.id, method_name, seed, chosen.variant)
    artifacts: dict[str, str] = {}
    if outcome.evaluation is not None and outcome.status == "ok":
        artifacts = write_side_files(enc, outcome.evaluation, path, seed, save_predictions)
    record = outcome_record(ctx, outcome, artifacts)  # the method's modules() and FLOP estimate run here
    if hooks is not None:
        hooks.method_done()
    write_record(record, path)
    return CellResult(record, path)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parse as TOML scalars (``lr=0.01``, ``backend=l2l`` or quoted)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {pair!r}: expected key=value")
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


__all__ = [
    "SET_VARIANT",
    "CellHooks",
    "CellResult",
    "ChosenConfig",
    "ConfigError",
    "Outcome",
    "cell_config",
    "config_hash",
    "execute",
    "parse_overrides",
    "run_cell",
]

"""The run record: one JSON file per (task, method, seed, config), validated against a versioned schema.

The leaderboard reads records only through this module. Each record carries the metric directions it was
scored with, so no reader ever has to guess whether lower or higher is better.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from benchmark.protocols import FamilyName
from tasks.cache import write_text_atomic

SCHEMA_VERSION = 1
Status = Literal["ok", "failed", "over_budget", "timeout"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskRef(_Strict):
    id: str
    family: FamilyName  # a registered family (``benchmark.protocols``)
    split_hash: str
    k: int
    beta: float | None = None
    source: list[str]
    target: str
    ranked: bool = True  # the spec's ``ranked``; the leaderboard also requires ``audit["passed"]``
    audit: dict[str, Any] = Field(default_factory=dict)  # tasks.audit.summary of the artifact's audit


class MethodRef(_Strict):
    name: str
    config: dict[str, Any]
    config_hash: str
    paper: str = ""
    trials: int = 1
    # "" for the standard configuration (the tuned one where a task group was tuned, else the default), a
    # profile name (``--set profile=reference``), or ``set-`` and the config hash's first 12 digits for
    # other ``--set`` configurations (``runner.cell_config``).
    variant: str = ""
    # The method's code (optional: records written before these fields count as current without them).
    dist: str | None = None  # the distribution that ships the method (``coldbench`` for in-repo ones)
    dist_version: str | None = None
    source_sha256: str | None = None  # method module + its package imports (registry.source_sha256)


class BudgetUse(_Strict):
    train_examples_limit: int
    train_examples_used: int
    adapt_steps_limit: int
    adapt_steps_used: int
    wall_seconds_limit: float
    wall_seconds_used: float


class Timing(_Strict):
    fit: float
    adapt: float
    eval: float
    pretrain: str | None = None  # a two-stage method's pretraining: "ran", "cached" (None: no such stage)
    pretrain_seconds: float | None = None  # its share of ``fit``


class Env(_Strict):
    python: str
    torch: str
    numpy: str
    pandas: str
    platform: str
    cpu: str
    threads: int
    device: str


class Code(_Strict):
    version: str
    commit: str
    dirty: bool


class RunRecord(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    task: TaskRef
    method: MethodRef
    seed: int
    status: Status
    metrics: dict[str, float]
    metric_directions: dict[str, Literal["higher", "lower"]]
    validation_score: float | None = None
    n_eval_users: int
    budget: BudgetUse
    timing: Timing
    peak_rss_mb: float
    n_params: int
    train_flops_estimate: float
    env: Env
    code: Code
    command: str
    started_at: str
    finished_at: str
    error: str | None = None
    artifacts: dict[str, str] = Field(default_factory=dict)

    @property
    def cell(self) -> tuple[str, str, str, int]:
        """The bench grid cell this record fills."""
        return (self.task.id, self.method.name, self.method.config_hash, self.seed)

    @property
    def path_parts(self) -> tuple[str, str, int, str]:
        """``record_path``'s arguments after the root: where this record belongs."""
        return (self.task.id, self.method.name, self.seed, self.method.variant)


class RecordError(ValueError):
    """A record that is not valid JSON or does not match the schema; the message names the file."""


def load_record(path: Path) -> RunRecord:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: not a readable JSON record ({exc})") from exc
    try:
        record = RunRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecordError(f"{path}: field {where}: {first['msg']}") from exc
    if set(record.metrics) - set(record.metric_directions):
        raise RecordError(f"{path}: metrics without a declared direction")
    return record


SET_VARIANT = "set-"  # variant prefix of an ad hoc ``--set`` configuration (profiles are plain names)


def record_path(root: Path, task_id: str, method: str, seed: int, variant: str = "") -> Path:
    """Identity = task, method, configuration, seed: a non-standard configuration gets its own folder,
    ``<method>@<variant>``, so a ``--set`` run never overwrites the standard record."""
    folder = f"{method}@{variant}" if variant else method
    return root / task_id / folder / f"seed-{seed}.json"


def write_record(record: RunRecord, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then a rename (nothing left on failure)."""
    write_text_atomic(path, json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def iter_records(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/seed-*.json") if not p.name.startswith("."))

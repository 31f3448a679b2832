"""Loading and validation of run records: nothing reaches a table that was not checked here first.

Inputs: the records ``<results>/<task>/<method>[@<variant>]/seed-<S>.json`` and the per-unit metric files
next to them (``artifacts["per_user"]``, Parquet: the unit's ID column, ``user``, or ``item`` in a cold-item
family (``leaderboard.families.unit_column``), plus one float column per unit-level metric).
Every record is validated before use (schema, location, finite metrics, readable per-user file); an invalid
one stops the build with a ``RecordError`` naming the file, unless ``skip_invalid`` is set: then it is left
out and listed on the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.records import RecordError, RunRecord, iter_records, load_record
from benchmark.verify import check_location, check_side_files, read_per_user
from leaderboard.families import RANK_METRIC, unit_column

EntryKey = tuple[str, str]  # (method name, variant): "" is the standard (tuned or default) configuration


class BuildError(Exception):
    """Records that are each valid but cannot be compared (conflicting task definitions or directions)."""


def entry_key(record: RunRecord) -> EntryKey:
    """The leaderboard entry a record belongs to: one per method and configuration variant.

    The standard variant ("") is the configuration bench runs, tuned per task group where a group was tuned,
    so its config hash may differ between tasks; a profile (``reference``) or ``--set`` run is another entry.
    The single place that decides which records are seeds of the same entry; the labels shown for the keys
    come from ``leaderboard.aggregate._labels``.
    """
    return (record.method.name, record.method.variant)


@dataclass(frozen=True)
class Run:
    """A validated record, its path relative to the results folder, and its per-unit values (ok runs).

    ``per_user`` keeps the unit's ID column as the file names it: ``user``, or ``item`` (cold items) in a
    cold-item family; ``leaderboard.families.unit_column`` says which.
    """

    path: str
    record: RunRecord
    per_user: pd.DataFrame | None

    @property
    def entry(self) -> EntryKey:
        return entry_key(self.record)


@dataclass(frozen=True)
class Skipped:
    """A record left out under ``skip_invalid``, kept so that the pages can say which and why."""

    path: str
    reason: str


def run_order(run: Run) -> tuple:
    """The one order of runs on every page, so output does not depend on the file system's listing."""
    method = run.record.method
    return (run.record.task.id, method.name, method.variant, method.config_hash, run.record.seed)


def _refuse(path: Path, message: str) -> RecordError:
    return RecordError(f"{path}: {message}")


def _declared_values(path: Path, record: RunRecord, frame: pd.DataFrame) -> pd.DataFrame:
    """The per-unit values of the record's declared metrics as float64; an infinite value is refused.

    ``frame`` comes from ``benchmark.verify.read_per_user``, which already refused a missing, unreadable or
    malformed file (units unique strings, one row per evaluated unit, numeric columns).
    """
    unit = unit_column(record.task.family)
    out = {unit: frame[unit].to_numpy().astype(str)}
    for column in sorted(c for c in frame.columns if c in record.metric_directions):
        values = frame[column].to_numpy(np.float64)
        if np.isinf(values).any():
            raise _refuse(path, f"per-user file: column {column!r} has an infinite value")
        out[column] = values
    return pd.DataFrame(out)


def _load_run(results: Path, path: Path) -> Run:
    """One record, validated; only ok runs carry metrics and per-user values worth checking."""
    record = load_record(path)
    check_location(path, results, record)
    per_user = None
    if record.status == "ok":
        bad = sorted(k for k, v in record.metrics.items() if not math.isfinite(v))
        if bad:
            raise _refuse(path, f"status ok but metric(s) {bad} are not finite")
        frame = read_per_user(path, record)  # read once: the side-file check below reuses it
        per_user = _declared_values(path, record, frame)
        _check_rank_metric(path, record, per_user)
        check_side_files(path, record, frame)
    return Run(path.relative_to(results).as_posix(), record, per_user)


def _check_rank_metric(path: Path, record: RunRecord, per_user: pd.DataFrame) -> None:
    """The ranked number must be the mean of its per-unit values: an edited record or file fails here."""
    metric = RANK_METRIC[record.task.family]
    if metric not in record.metrics or metric not in per_user.columns:
        return
    values = per_user[metric].to_numpy()
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    if not math.isclose(record.metrics[metric], mean, rel_tol=1e-6, abs_tol=1e-9):
        raise _refuse(
            path,
            f"metric {metric!r} is {record.metrics[metric]!r} but the mean of its per-user values is "
            f"{mean!r} (record or per-user file edited?)",
        )


def load_runs(results: Path, skip_invalid: bool = False) -> tuple[list[Run], list[Skipped]]:
    """Validate every record under ``results``; raise the first ``RecordError`` unless ``skip_invalid``."""
    if not results.is_dir():
        raise BuildError(f"results folder {results} does not exist")
    runs: list[Run] = []
    skipped: list[Skipped] = []
    listed = iter_records(results)
    strays = sorted(set(results.rglob("seed-*.json")) - set(listed))
    for path in sorted([*listed, *strays]):
        try:
            if path in strays:
                raise _refuse(
                    path, "not at <results>/<task>/<method>[@<variant>]/seed-<S>.json, where records live"
                )
            runs.append(_load_run(results, path))
        except RecordError as exc:
            if not skip_invalid:
                raise RecordError(f"{exc} (refusing to build; --skip-invalid leaves it out)") from exc
            rel = path.relative_to(results).as_posix()
            reason = str(exc).removeprefix(f"{path}: ")
            skipped.append(Skipped(rel, reason))
    return runs, skipped

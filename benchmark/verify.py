"""Verify what a run record claims against the files next to it, and a task manifest against its tables.

A record is trusted only as far as it can be re-derived: every user-averaged metric must be the mean of its
per-user column; pooled metrics (R's ``mae``/``rmse`` over ratings, C's ``sampled_*`` over test pairs) are
re-derived from the per-user means weighted by ``n_query`` (each user's query rows, written since this
module exists; older per-user files lack it and their pooled metrics are checked only against predictions),
and from the predictions file when one was saved. Bench counts a cell done only if this passes; the
leaderboard can call ``check_side_files`` for the same guarantee. Every problem is one ``RecordError`` (or
``DataError`` for a manifest) naming the file and the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark.records import RecordError, RunRecord, load_record, record_path
from tasks.schema import DataError

N_QUERY = "n_query"
REL_TOL, ABS_TOL = 1e-9, 1e-12  # the file stores the exact float64 values the record was computed from
SAMPLED = ("sampled_hr@10", "sampled_ndcg@10", "sampled_mrr")


def _refuse(path: Path, message: str) -> RecordError:
    return RecordError(f"{path}: {message}")


def _side_file(path: Path, record: RunRecord, key: str) -> Path | None:
    name = record.artifacts.get(key)
    if not name:
        return None
    if name in {".", ".."} or Path(name).name != name or "\\" in name:
        raise _refuse(path, f"artifacts.{key} {name!r} is not a plain file name next to the record")
    return path.with_name(name)


def _read_parquet(path: Path, file: Path, what: str) -> pa.Table:
    try:
        return pq.read_table(file)
    except (OSError, pa.ArrowException) as exc:
        raise _refuse(
            path, f"{what} file {file.name!r} is missing or unreadable ({type(exc).__name__})"
        ) from exc


def unit_column(record: RunRecord) -> str:
    """The per-unit file's ID column: ``user``, or ``item`` in a cold-item family (``runner.UNIT_COLUMN``)."""
    from benchmark.protocols import get

    return "item" if get(record.task.family).cold == "items" else "user"


def read_per_user(path: Path, record: RunRecord) -> pd.DataFrame:
    """The record's per-unit file, checked: unique string units (users, or cold items in a cold-item
    family), numeric metric columns, one row a unit."""
    file = _side_file(path, record, "per_user")
    if file is None:
        raise _refuse(path, "status ok but artifacts.per_user is missing (incomplete record)")
    table = _read_parquet(path, file, "per-user")
    unit = unit_column(record)
    kind = table.schema.field(unit).type if unit in table.column_names else None
    if kind is None or not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise _refuse(path, f"per-user file {file.name!r} has no string {unit!r} column")
    users = table.column(unit)
    if users.null_count or pc.count_distinct(users).as_py() != len(users):
        raise _refuse(path, f"per-user file {file.name!r}: {unit!r} has missing or duplicate values")
    if len(users) != record.n_eval_users:
        raise _refuse(
            path, f"per-user file {file.name!r} has {len(users)} units, n_eval_users is {record.n_eval_users}"
        )
    for column in table.column_names:
        kind = table.schema.field(column).type
        if column != unit and not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise _refuse(path, f"per-user file {file.name!r}: column {column!r} is not numeric ({kind})")
    return table.to_pandas()


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _mean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def _weighted(values: np.ndarray, weights: np.ndarray, power: float = 1.0) -> float:
    total = float(weights.sum())
    return math.nan if total == 0 else float((weights * values**power).sum() / total) ** (1.0 / power)


def derived_metrics(per_user: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
    """The metrics that the per-user file determines: user averages, and pooled ones given ``n_query``."""
    averaged = [m for m in metrics if m in per_user.columns and m not in SAMPLED]  # per-user means of pairs
    out = {m: _mean(per_user[m].to_numpy(np.float64)) for m in averaged}
    if N_QUERY not in per_user.columns:
        return out
    n = per_user[N_QUERY].to_numpy(np.float64)
    unit = "item" if "item_mae" in per_user.columns else "user"  # pooled errors from per-unit errors
    pooled: dict[str, Callable[[], float]] = {
        "mae": lambda: _weighted(per_user[f"{unit}_mae"].to_numpy(np.float64), n),
        "rmse": lambda: _weighted(per_user[f"{unit}_rmse"].to_numpy(np.float64), n, power=2.0),
        **{s: (lambda s=s: _weighted(per_user[s].to_numpy(np.float64), n)) for s in SAMPLED},
    }
    needs = {"mae": f"{unit}_mae", "rmse": f"{unit}_rmse", **{s: s for s in SAMPLED}}
    for metric, compute in pooled.items():
        if metric in metrics and needs[metric] in per_user.columns:
            out[metric] = compute()
    return out


def _prediction_metrics(predictions: pd.DataFrame) -> dict[str, float]:
    """Pooled and user-averaged metrics re-derived from a saved predictions file."""
    if {"prediction", "rating"} <= set(predictions.columns):
        err = predictions["prediction"].to_numpy(np.float64) - predictions["rating"].to_numpy(np.float64)
        by = {u: pd.Series(np.abs(err)).groupby(predictions[u].to_numpy()).mean() for u in ("user", "item")}
        return {
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt(np.square(err).mean())),
            "user_mae": float(by["user"].mean()),
            "item_mae": float(by["item"].mean()),
        }
    if "rank" not in predictions.columns:
        return {}
    from benchmark.metrics import item_rank_per_item, ranking_per_user

    ranks = predictions["rank"].to_numpy()
    users, codes = np.unique(predictions["user"].to_numpy(), return_inverse=True)
    items, item_codes = np.unique(predictions["item"].to_numpy(), return_inverse=True)
    per_unit = ranking_per_user(ranks, codes, len(users)) | item_rank_per_item(ranks, item_codes, len(items))
    return {m: _mean(v) for m, v in per_unit.items()}


def check_side_files(path: Path, record: RunRecord, per_user: pd.DataFrame | None = None) -> None:
    """Raise a RecordError unless every metric the side files determine matches the record.

    ``per_user``: the frame ``read_per_user`` returned for this record, when the caller read it already.
    """
    if record.status != "ok":
        return
    bad = sorted(k for k, v in record.metrics.items() if not math.isfinite(v))
    if bad:
        raise _refuse(path, f"status ok but metric(s) {bad} are not finite")
    claimed = list(record.metrics)
    frame = per_user if per_user is not None else read_per_user(path, record)
    found = {"per-user file": derived_metrics(frame, claimed)}
    pred_file = _side_file(path, record, "predictions")
    if pred_file is not None:
        found["predictions file"] = _prediction_metrics(
            _read_parquet(path, pred_file, "predictions").to_pandas()
        )
    for source, values in found.items():
        for metric, value in values.items():
            if metric in record.metrics and not _close(record.metrics[metric], value):
                raise _refuse(
                    path,
                    f"metric {metric!r} is {record.metrics[metric]!r} but its {source} gives {value!r}"
                    " (record or side file edited?)",
                )


def check_location(path: Path, results: Path, record: RunRecord) -> None:
    """The file must sit where the runner writes it, so a copied record cannot pose as another cell."""
    expected = record_path(Path(), *record.path_parts).parts
    rel = path.relative_to(results)
    if rel.parts != expected:
        raise _refuse(path, f"stored at {rel.as_posix()!r}, its fields say {'/'.join(expected)!r}")


def verify_record(path: Path, results: Path | None = None) -> RunRecord:
    """Load the record and check its location (when ``results`` is given) and its side files."""
    record = load_record(path)
    if results is not None:
        check_location(path, results, record)
    check_side_files(path, record)
    return record


def _column_counts(folder: Path, manifest: dict) -> dict[str, int]:
    """The manifest's counts re-derived from the tables' Parquet files (IDs only are read)."""
    rows = {
        name.removesuffix(".parquet"): pq.read_metadata(folder / name).num_rows for name in manifest["files"]
    }
    counts = {f"{name}_rows": n for name, n in rows.items()}

    def users(*tables: str) -> int:
        parts = [pq.read_table(folder / f"{t}.parquet", columns=["user"]).column("user") for t in tables]
        return len(pc.unique(pa.chunked_array([c for p in parts for c in p.chunks], pa.string())))

    counts["train_users"] = users("train")
    counts["test_users"] = users("support", "query")
    counts["valid_users"] = users("valid_support", "valid_query")
    target = manifest["spec"]["target"]
    items = []
    for name in rows:
        if name == "negatives":
            continue
        table = pq.read_table(folder / f"{name}.parquet", columns=["domain", "item"])
        items.append(table.filter(pc.equal(table.column("domain"), target)).column("item"))
    counts["target_items"] = len(
        pc.unique(pa.chunked_array([c for i in items for c in i.chunks], pa.string()))
    )
    return counts


def check_manifest(folder: Path) -> dict:
    """The artifact's manifest, with every count checked against its tables; a DataError names the field.

    ``artifact.verify`` checks the files' bytes and the split hash but not ``counts``, which ``tasks list``
    shows: a forged count would be shown as fact.
    """
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
        declared = dict(manifest["counts"])
        actual = _column_counts(folder, manifest)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        raise DataError(
            f"{path}: unreadable manifest or table ({type(exc).__name__}: {exc}); rebuild with --force"
        ) from exc
    for key, value in actual.items():
        if key in declared and declared[key] != value:
            raise DataError(
                f"{path}: counts.{key} is {declared[key]!r} but the tables have {value}; rebuild with --force"
            )
    return manifest

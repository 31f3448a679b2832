"""The canonical interactions table every reader returns, and the one duplicate rule.

Columns (docs/design.md): ``domain`` (Amazon category name), ``user`` and ``item`` (raw IDs as strings),
``rating`` (float, NaN for implicit data), ``ts`` (int unix seconds, <NA> when unknown).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

COLUMNS: tuple[str, ...] = ("domain", "user", "item", "rating", "ts")

ARROW_SCHEMA = pa.schema(
    [
        ("domain", pa.string()),
        ("user", pa.string()),
        ("item", pa.string()),
        ("rating", pa.float64()),
        ("ts", pa.int64()),
    ]
)


class DataError(ValueError):
    """Bad or missing input data; the message names the file and line (or key) and what to do."""


def read_toml(path: Path, what: str) -> dict:
    """A TOML file's tables; an unreadable file, bad UTF-8 or bad TOML is one ``DataError`` naming it."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not a readable TOML {what} ({exc})") from exc


def empty_table() -> pd.DataFrame:
    return canonical(pd.DataFrame({c: [] for c in COLUMNS}))


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast ``frame`` to the canonical columns and dtypes (string IDs, float64 rating, nullable Int64 ts)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"interactions table lacks column(s) {missing}; expected {list(COLUMNS)}")
    out = pd.DataFrame(
        {
            "domain": frame["domain"].astype("string"),
            "user": frame["user"].astype("string"),
            "item": frame["item"].astype("string"),
            "rating": frame["rating"].astype("float64"),
            "ts": frame["ts"].astype("Int64"),
        }
    )
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Deduplicated:
    table: pd.DataFrame
    rows_removed: int
    pairs_duplicated: int
    pairs_conflicting: int


def deduplicate(frame: pd.DataFrame) -> Deduplicated:
    """Collapse duplicate (domain, user, item) rows: mean rating, earliest timestamp.

    This is the one rule every reader applies; the counts go into ``data info`` and task manifests. The
    output is sorted by (domain, user, item) so that it does not depend on file order.
    """
    frame = canonical(frame)
    keys = ["domain", "user", "item"]
    sizes = frame.groupby(keys, sort=False, observed=True).size()
    dup_pairs = int((sizes > 1).sum())
    if dup_pairs == 0:
        table = frame.sort_values(keys, kind="stable").reset_index(drop=True)
        return Deduplicated(table, 0, 0, 0)
    grouped = frame.groupby(keys, sort=True, observed=True)
    rating = grouped["rating"].mean()
    conflicting = int((grouped["rating"].nunique(dropna=True) > 1).sum())
    ts = grouped["ts"].min()
    table = pd.DataFrame({"rating": rating, "ts": ts}).reset_index()
    table = canonical(table)
    return Deduplicated(table, len(frame) - len(table), dup_pairs, conflicting)


def check_ratings(values: np.ndarray, where: str, lines: np.ndarray | None = None) -> None:
    """Raise a DataError naming the first rating outside 1..5 (NaN means implicit and is allowed)."""
    bad = ~np.isnan(values) & ((values < 1.0) | (values > 5.0))
    if bad.any():
        i = int(np.argmax(bad))
        line = int(lines[i]) if lines is not None else i + 1
        raise DataError(f"{where} line {line}: rating {float(values[i])!r} is outside 1..5")

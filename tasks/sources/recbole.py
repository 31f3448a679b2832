"""RecBole atomic ``.inter`` files: a header ``user_id<TAB>item_id<TAB>rating``, one interaction a line.

Used for ``2018-dense-books-movies`` (raw reviewerID / ASIN, 1-5 stars, no timestamps). A header may carry
RecBole type suffixes (``user_id:token``); a ``timestamp`` column is read when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.schema import DataError, canonical, check_ratings
from tasks.sources.text import read_bytes, read_delimited, require_values, to_float, to_int

FIELDS = {"user_id": "user", "item_id": "item", "rating": "rating", "timestamp": "ts"}


def read_inter(path: Path, domain: str) -> pd.DataFrame:
    header = read_bytes(path).split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    names = [h.split(":", 1)[0].strip() for h in header.split("\t")]
    unknown = [n for n in names if n not in FIELDS]
    if unknown or "user_id" not in names or "item_id" not in names:
        raise DataError(
            f"{path} line 1: header {header!r} is not a RecBole .inter header with user_id, item_id"
            f" and optionally rating, timestamp"
        )
    table = read_delimited(path, names, "\t", header=True)
    require_values(table, ["user_id", "item_id"], path, 1)
    n = table.num_rows
    rating = to_float(table["rating"], path, "rating", 1) if "rating" in names else np.full(n, np.nan)
    check_ratings(rating, str(path), np.arange(n) + 2)
    ts = to_int(table["timestamp"], path, "timestamp", 1) if "timestamp" in names else None
    return canonical(
        pd.DataFrame(
            {
                "domain": domain,
                "user": table["user_id"].to_numpy(zero_copy_only=False),
                "item": table["item_id"].to_numpy(zero_copy_only=False),
                "rating": rating,
                "ts": pd.array(ts if ts is not None else [pd.NA] * n, dtype="Int64"),
            }
        )
    )

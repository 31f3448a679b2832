"""Amazon 2014 / 2018 ratings-only CSV dumps: four comma-separated columns, no header.

The two editions order the columns differently, and a swap would go unnoticed (both IDs are strings), so
the caller names the edition: 2014 files (``ratings_<Category>.csv``) are ``user,item,rating,timestamp``;
2018 files (``<Category>.csv``) are ``item,user,rating,timestamp``. Ratings are 1-5 stars, timestamps unix
seconds. ``.csv.gz`` is read transparently.

Example::

    table, removed = load_local(Path("ratings_Beauty.csv"), "Beauty", edition="2014")
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.schema import DataError, canonical, check_ratings, deduplicate
from tasks.sources.text import read_delimited, require_values, to_float, to_int

COLUMN_ORDER = {
    "2014": ["user", "item", "rating", "timestamp"],
    "2018": ["item", "user", "rating", "timestamp"],
}


def read_ratings_csv(path: Path, domain: str, edition: str) -> pd.DataFrame:
    """The file's rows as a canonical table (duplicates kept; see ``load_local``)."""
    if edition not in COLUMN_ORDER:
        raise DataError(f"{path}: unknown edition {edition!r}; expected one of {sorted(COLUMN_ORDER)}")
    table = read_delimited(path, COLUMN_ORDER[edition], ",", header=False)
    require_values(table, ["user", "item"], path, 0)
    rating = to_float(table["rating"], path, "rating", 0)
    check_ratings(rating, str(path))
    ts = to_int(table["timestamp"], path, "timestamp", 0)
    return canonical(
        pd.DataFrame(
            {
                "domain": domain,
                "user": table["user"].to_numpy(zero_copy_only=False),
                "item": table["item"].to_numpy(zero_copy_only=False),
                "rating": rating,
                "ts": ts,
            }
        )
    )


def load_local(path: Path, domain: str, edition: str) -> tuple[pd.DataFrame, int]:
    """A local dump, deduplicated by the one rule (``tasks.schema.deduplicate``): (table, rows removed)."""
    dedup = deduplicate(read_ratings_csv(path, domain, edition))
    return dedup.table, dedup.rows_removed

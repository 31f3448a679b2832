"""CDRIB split folders (``cloth_sport/``, ``sport_cloth/``), read with their ID semantics kept.

``train/valid/test.txt`` use the split script's user IDs: ``0 .. n_common-1`` are the common users, the same
person in both folders; IDs ``>= n_common`` are assigned per folder, NOT the same person across folders.
``n_common`` is the number of distinct users in ``common_new_reindex.txt``. Canonical IDs make this explicit:
a common user is ``u<id>`` in both domains, any other user is ``<prefix>:u<id>``, and items are
``<prefix>:i<id>`` (item IDs are per domain; the prefix is the folder's short name, ``cloth`` or ``sport``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.schema import canonical
from tasks.sources.text import read_delimited, to_int

SPLIT_FILES = ("train", "valid", "test")


def common_user_count(folder: Path) -> int:
    table = read_delimited(folder / "common_new_reindex.txt", ["user", "item", "value"], "\t", header=False)
    return len(np.unique(to_int(table["user"], folder / "common_new_reindex.txt", "user", 0)))


def read_split_file(path: Path, domain: str, prefix: str, n_common: int) -> pd.DataFrame:
    table = read_delimited(path, ["user", "item"], "\t", header=False)
    user = to_int(table["user"], path, "user", 0)
    item = to_int(table["item"], path, "item", 0)
    shared = user < n_common
    user_str = np.char.add("u", user.astype(str)).astype(object)
    user_str[~shared] = np.char.add(f"{prefix}:u", user[~shared].astype(str))
    return canonical(
        pd.DataFrame(
            {
                "domain": domain,
                "user": user_str,
                "item": np.char.add(f"{prefix}:i", item.astype(str)),
                "rating": np.nan,
                "ts": pd.array([pd.NA] * len(user), dtype="Int64"),
            }
        )
    )


def read_split(folder: Path, domain: str, prefix: str) -> dict[str, pd.DataFrame]:
    """The folder's train, valid and test files as canonical tables, keyed by file stem."""
    n_common = common_user_count(folder)
    return {name: read_split_file(folder / f"{name}.txt", domain, prefix, n_common) for name in SPLIT_FILES}


def read_domain(folder: Path, domain: str, prefix: str) -> pd.DataFrame:
    """Every interaction of the domain: train + valid + test (which together are its ``new_reindex.txt``)."""
    return pd.concat(list(read_split(folder, domain, prefix).values()), ignore_index=True)

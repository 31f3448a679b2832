"""The local data sets ColdBench knows: which files, which reader, which Amazon categories.

``load`` is the one entry point from files to the canonical table: it verifies checksums, reads, applies the
duplicate rule and caches the result. Adding a data set is one ``Dataset`` entry here plus a reader module.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.cache import cache_key, cached_table, default_cache_dir, store_table
from tasks.checksums import require_verified
from tasks.schema import DataError, deduplicate
from tasks.sources import abxi, cdrib, recbole

READER_VERSION = 1
DATA_ENV = "COLDBENCH_DATA"
HINT = (
    "The files come with the ColdBench data root (../shared/data/amazon on the project's machines); see its "
    "README.md for provenance, or use the hub reader (tasks.sources.hub2023) with internet access"
)


@dataclass(frozen=True)
class Dataset:
    name: str
    domains: tuple[str, ...]
    files: tuple[str, ...]
    read: Callable[[Path], pd.DataFrame]
    raw_item_ids: bool = True  # items keep their Amazon IDs (the audit can match them across domains)


def _dense(root: Path) -> pd.DataFrame:
    folder = root / "2018-dense-books-movies"
    return pd.concat(
        [
            recbole.read_inter(folder / "Amazon-Books-Dense.inter", "Books"),
            recbole.read_inter(folder / "Amazon-Movies-Dense.inter", "Movies_and_TV"),
        ],
        ignore_index=True,
    )


ABXI_PAIRS = {"abe": ("Beauty", "Electronics"), "afk": ("Grocery_and_Gourmet_Food", "Home_and_Kitchen")}


def _abxi(root: Path) -> pd.DataFrame:
    frames = []
    for pair, domains in ABXI_PAIRS.items():
        folder = root / "2014-abxi" / pair
        frames.append(
            abxi.read_sequences(
                folder / f"{pair}_50_preprocessed.txt",
                folder / "map_user_50.txt",
                folder / "map_item_50.txt",
                list(domains),
            )
        )
    return pd.concat(frames, ignore_index=True)


CDRIB_FOLDERS = {  # short name -> (folder, Amazon category)
    "cloth": ("cloth_sport", "Clothing_Shoes_and_Jewelry"),
    "sport": ("sport_cloth", "Sports_and_Outdoors"),
}


def cdrib_split(root: Path, short: str) -> dict[str, pd.DataFrame]:
    """CDRIB's train/valid/test of one domain (verified), for the family C split builder."""
    folder, domain = CDRIB_FOLDERS[short]
    names = [f"2014-cdrib/{folder}/{n}.txt" for n in (*cdrib.SPLIT_FILES, "common_new_reindex")]
    require_verified(root, names, HINT)
    return cdrib.read_split(root / "2014-cdrib" / folder, domain, short)


def _cdrib(root: Path) -> pd.DataFrame:
    return pd.concat(
        [cdrib.read_domain(root / "2014-cdrib" / f, d, s) for s, (f, d) in CDRIB_FOLDERS.items()],
        ignore_index=True,
    )


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "2018-dense-books-movies",
            ("Books", "Movies_and_TV"),
            (
                "2018-dense-books-movies/Amazon-Books-Dense.inter",
                "2018-dense-books-movies/Amazon-Movies-Dense.inter",
            ),
            _dense,
        ),
        Dataset(
            "2014-abxi",
            ("Beauty", "Electronics", "Grocery_and_Gourmet_Food", "Home_and_Kitchen"),
            tuple(
                f"2014-abxi/{p}/{f}"
                for p in ABXI_PAIRS
                for f in (f"{p}_50_preprocessed.txt", "map_user_50.txt", "map_item_50.txt")
            ),
            _abxi,
        ),
        Dataset(
            "2014-cdrib",
            tuple(d for _, d in CDRIB_FOLDERS.values()),
            tuple(
                f"2014-cdrib/{f}/{n}.txt"
                for f, _ in CDRIB_FOLDERS.values()
                for n in (*cdrib.SPLIT_FILES, "common_new_reindex")
            ),
            _cdrib,
            raw_item_ids=False,
        ),
    ]
}


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """``--data-dir``, else ``$COLDBENCH_DATA``; one clear error when neither is set."""
    chosen = data_dir or os.environ.get(DATA_ENV)
    if not chosen:
        raise DataError(f"no data root: pass --data-dir or set {DATA_ENV}. {HINT}")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: data root is not a directory. {HINT}")
    return path


@dataclass(frozen=True)
class Loaded:
    dataset: str
    table: pd.DataFrame
    checksums: dict[str, str]
    duplicate_rows_removed: dict[str, int]


def load(name: str, data_dir: Path, cache_dir: Path | None = None) -> Loaded:
    """Verified, deduplicated canonical interactions of data set ``name`` (all its domains)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {sorted(DATASETS)}")
    spec = DATASETS[name]
    sums = require_verified(data_dir, list(spec.files), HINT)
    cache_dir = cache_dir or default_cache_dir() / "tables"
    key = cache_key({"dataset": name, "files": sums, "reader_version": READER_VERSION})
    hit = cached_table(cache_dir, key, "duplicate_rows_removed")
    if hit is not None:
        return Loaded(name, hit[0], sums, hit[1])
    raw = spec.read(data_dir)
    removed: dict[str, int] = {}
    tables = []
    for domain in spec.domains:
        dedup = deduplicate(raw[raw["domain"] == domain])
        removed[domain] = dedup.rows_removed
        tables.append(dedup.table)
    table = pd.concat(tables, ignore_index=True)
    store_table(cache_dir, key, table, "duplicate_rows_removed", removed)
    return Loaded(name, table, sums, removed)

"""File formats a data-set TOML can name, and what each needs: the files per domain, the keys, the reader.

A data set is declared, not coded (``tasks/datasets/*.toml``): this module is the one place that knows which
reader in ``tasks/sources`` reads a format and which files ("roles") each domain of that format names.
Readers receive absolute paths (or hub URLs) already resolved and verified by ``tasks.catalog``, so no file,
folder, category or data-set name appears here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.schema import DataError
from tasks.sources import abxi, cdrib, hub2023, ratings_csv, recbole, reviews_json
from tasks.sources.text import read_delimited, to_int


@dataclass(frozen=True)
class Domain:
    """One declared domain: its Amazon category name, its files by role, and its format-specific keys."""

    name: str
    files: dict[str, str]  # role -> path relative to the data root (or inside the hub repository)
    options: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


Paths = dict[str, dict[str, str]]  # domain -> role -> absolute path or hub URL
Reader = Callable[[Paths, list[Domain], list[Domain], dict[str, Any]], pd.DataFrame | pa.Table]


@dataclass(frozen=True)
class Format:
    """What a format needs from its declaration and how it is read.

    ``read(paths, wanted, declared, options)`` returns the canonical rows of the ``wanted`` domains
    (duplicates kept); ``declared`` is every domain of the data set (a file may hold several).
    """

    roles: tuple[str, ...]
    read: Reader
    domain_keys: dict[str, type] = field(default_factory=dict)
    dataset_keys: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # key -> allowed values
    user_rules: tuple[str, ...] = ("raw",)  # ``[ids] users``; the first is the default
    split: Callable[[dict[str, str], Domain, dict[str, Any]], dict[str, pd.DataFrame]] | None = None
    split_roles: tuple[str, ...] = ()  # the files a published split reads
    remote: bool = False  # files may come from the hub instead of the data root
    arrow: bool = False  # ``read`` returns a canonical Arrow table, IDs maybe dictionary-encoded (hub scale)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


def _read_recbole(paths: Paths, wanted: list[Domain], declared: list[Domain], options: dict) -> pd.DataFrame:
    return _concat([recbole.read_inter(Path(paths[d.name]["inter"]), d.name) for d in wanted])


def _read_ratings_csv(
    paths: Paths, wanted: list[Domain], declared: list[Domain], options: dict
) -> pd.DataFrame:
    edition = options["edition"]
    return _concat(
        [ratings_csv.read_ratings_csv(Path(paths[d.name]["ratings"]), d.name, edition) for d in wanted]
    )


def _read_reviews_json(
    paths: Paths, wanted: list[Domain], declared: list[Domain], options: dict
) -> pd.DataFrame:
    return _concat([reviews_json.read_reviews_json(Path(paths[d.name]["reviews"]), d.name) for d in wanted])


ABXI_ROLES = ("sequences", "user_map", "item_map")


def _read_abxi(paths: Paths, wanted: list[Domain], declared: list[Domain], options: dict) -> pd.DataFrame:
    """Each sequence file is read once for all the wanted domains it holds, then cut to those domains."""
    frames = []
    names = {d.name for d in wanted}
    groups: dict[tuple[str, ...], list[Domain]] = {}
    for d in declared:
        groups.setdefault(tuple(d.files[r] for r in ABXI_ROLES), []).append(d)
    for members in groups.values():
        if not names & {d.name for d in members}:
            continue
        by_index = {int(d.options["index"]): d.name for d in members}
        order = [by_index.get(i, f"<undeclared domain {i}>") for i in range(max(by_index) + 1)]
        first = next(d for d in members if d.name in names)
        files = [Path(paths[first.name][r]) for r in ABXI_ROLES]
        table = abxi.read_sequences(*files, order)
        frames.append(table[table["domain"].isin(names)])
    return _concat(frames)


CDRIB_SPLIT = ("train", "valid", "test")


def _common_users(path: Path) -> int:
    """CDRIB's n_common: the number of distinct users in the domain's common-user file."""
    table = read_delimited(path, ["user", "item", "value"], "\t", header=False)
    return len(np.unique(to_int(table["user"], path, "user", 0)))


def _cdrib_split(files: dict[str, str], domain: Domain, ids: dict[str, Any]) -> dict[str, pd.DataFrame]:
    shared = ids.get("users", "common-below-count") == "common-below-count"
    n_common = _common_users(Path(files["common"])) if shared else 0
    prefix = domain.options["prefix"]
    return {
        name: cdrib.read_split_file(Path(files[name]), domain.name, prefix, n_common) for name in CDRIB_SPLIT
    }


def _read_cdrib(paths: Paths, wanted: list[Domain], declared: list[Domain], options: dict) -> pd.DataFrame:
    """Every interaction of each domain: train + valid + test (together its ``new_reindex.txt``)."""
    ids = options.get("ids", {})
    return _concat([t for d in wanted for t in _cdrib_split(paths[d.name], d, ids).values()])


def _read_hub(paths: Paths, wanted: list[Domain], declared: list[Domain], options: dict) -> pa.Table:
    tables = [
        hub2023.read_category_arrow(d.name, paths[d.name]["file"], cache_dir=options.get("hf_cache"))
        for d in wanted
    ]
    return pa.concat_tables(tables)


FORMATS: dict[str, Format] = {
    "recbole": Format(roles=("inter",), read=_read_recbole),
    "ratings_csv": Format(
        roles=("ratings",), read=_read_ratings_csv, dataset_keys={"edition": tuple(ratings_csv.COLUMN_ORDER)}
    ),
    "reviews_json": Format(roles=("reviews",), read=_read_reviews_json),
    "abxi": Format(roles=ABXI_ROLES, read=_read_abxi, domain_keys={"index": int}),
    "cdrib": Format(
        roles=(*CDRIB_SPLIT, "common"),
        read=_read_cdrib,
        domain_keys={"prefix": str},
        user_rules=("common-below-count", "per-domain"),
        split=_cdrib_split,
        split_roles=(*CDRIB_SPLIT, "common"),
    ),
    "hub2023": Format(roles=("file",), read=_read_hub, remote=True, arrow=True),
}


def get_format(name: str, where: str) -> Format:
    if name not in FORMATS:
        raise DataError(f"{where}: field 'format' must be one of {sorted(FORMATS)}, got {name!r}")
    return FORMATS[name]

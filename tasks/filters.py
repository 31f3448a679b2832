"""Hub-scale rows, column-wise: the duplicate rule and a spec's ``[filters]`` on integer codes.

A category of the Amazon Reviews 2023 hub has millions of ratings, most from users seen a few times; a task
needs the users and items with enough history and a bounded number of overlapping users. IDs are encoded
once into integer codes in the sorted order of the IDs (so nothing depends on file order), and every step
below is numpy over those codes (sort, ``bincount``, boolean masks), never a Python loop over rows; only the
rows kept are finally taken from the Arrow string columns.

- The duplicate rule of ``tasks.schema.deduplicate``: one row per (domain, user, item), mean rating,
  earliest timestamp.
- ``min_user_interactions`` / ``min_item_interactions``: iterated k-core within each of the task's domains:
  users and items with fewer rows in that domain are dropped, again and again until nothing changes.
- ``max_users``: at most N overlapping users (rows in the target and in a source domain) are kept, a seeded
  sample of the overlap in ID order (stream 3 of the split seed); every other user's rows are dropped and
  the k-core runs again to its fixed point.
- ``min_overlap``: the task needs at least this many overlapping users once filtered; fewer is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import ARROW_SCHEMA, DataError

if TYPE_CHECKING:
    from tasks.spec import TaskSpec

KEYS = ("min_user_interactions", "min_item_interactions", "min_overlap", "max_users")
STREAM_SAMPLE = 3


def declared(spec: TaskSpec) -> bool:
    return any(k in spec.filters for k in KEYS)


def sorted_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """Integer codes of ``column`` in the sorted order of its distinct values, and how many there are."""
    distinct = pc.unique(column)
    ordered = distinct.take(pc.array_sort_indices(distinct))
    codes = pc.index_in(column, value_set=ordered)
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64), len(ordered)


@dataclass(frozen=True)
class Coded:
    """A canonical table's rows as codes: domain (position in ``domains``), user and item (sorted IDs)."""

    domains: tuple[str, ...]
    domain: np.ndarray
    user: np.ndarray
    item: np.ndarray
    n_users: int
    n_items: int

    def user_key(self, rows: np.ndarray) -> np.ndarray:
        return self.domain[rows] * self.n_users + self.user[rows]

    def item_key(self, rows: np.ndarray) -> np.ndarray:
        return self.domain[rows] * self.n_items + self.item[rows]


def encode(table: pa.Table, domains: tuple[str, ...]) -> Coded:
    domain = pc.index_in(table["domain"], value_set=pa.array(list(domains)))
    if domain.null_count:
        raise DataError(f"rows of a domain other than {list(domains)} reached the filters")
    user, n_users = sorted_codes(table["user"])
    item, n_items = sorted_codes(table["item"])
    return Coded(domains, np.asarray(domain.to_numpy(), dtype=np.int64), user, item, n_users, n_items)


def deduplicate(table: pa.Table, coded: Coded) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """The duplicate rule on codes: (first row of each pair, mean rating, earliest ts, removed per domain).

    Pairs are summed in row order (a stable sort), so a mean is the same on every run.
    """
    key = (coded.domain * coded.n_users + coded.user) * coded.n_items + coded.item
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(order) else order
    del key  # hub scale: every array here has one entry per row, so free each one early
    rating = table["rating"].to_numpy()[order]
    ts = table["ts"] if table["ts"].null_count == 0 else pc.fill_null(table["ts"], np.iinfo(np.int64).max)
    ts = ts.to_numpy()[order]
    sizes = np.diff(np.r_[starts, len(order)])
    mean = np.add.reduceat(rating, starts) / sizes if len(order) else rating
    earliest = np.minimum.reduceat(ts, starts) if len(order) else ts
    rows = order[starts]
    removed = np.bincount(coded.domain, minlength=len(coded.domains)) - np.bincount(
        coded.domain[rows], minlength=len(coded.domains)
    )
    return rows, mean, earliest, {d: int(n) for d, n in zip(coded.domains, removed, strict=True)}


def kcore(
    user_key: np.ndarray, item_key: np.ndarray, keep: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, int]:
    """The rows left once every per-domain user key and item key has the minimum rows; and the rounds."""
    if min_user <= 1 and min_item <= 1:
        return keep, 0
    sizes = (int(user_key.max(initial=-1)) + 1, int(item_key.max(initial=-1)) + 1)
    rounds, kept = 0, int(keep.sum())
    while True:
        rounds += 1
        per_user = np.bincount(user_key[keep], minlength=sizes[0])
        per_item = np.bincount(item_key[keep], minlength=sizes[1])
        keep = keep & (per_user[user_key] >= min_user) & (per_item[item_key] >= min_item)
        now = int(keep.sum())
        if now == kept:
            return keep, rounds
        kept = now


def overlap(domain: np.ndarray, user: np.ndarray, keep: np.ndarray, target: int, n_users: int) -> np.ndarray:
    """Codes (sorted) of the users with kept rows in the target domain and in another domain."""
    in_target = np.zeros(n_users, dtype=bool)
    in_other = np.zeros(n_users, dtype=bool)
    in_target[user[keep & (domain == target)]] = True
    in_other[user[keep & (domain != target)]] = True
    return np.flatnonzero(in_target & in_other)


def select(coded: Coded, rows: np.ndarray, spec: TaskSpec) -> tuple[np.ndarray, dict]:
    """Which of ``rows`` the spec's filters keep (a mask over ``rows``), and the manifest's counts."""
    domain, user = coded.domain[rows], coded.user[rows]
    user_key, item_key = coded.user_key(rows), coded.item_key(rows)
    target = coded.domains.index(spec.target)
    minimums = (spec.filters.get("min_user_interactions", 1), spec.filters.get("min_item_interactions", 1))
    keep = np.ones(len(rows), dtype=bool)
    before = _counts(domain, user, item_key, keep, target, coded.n_users)
    keep, rounds = kcore(user_key, item_key, keep, *minimums)
    sampled = None
    cap = spec.filters.get("max_users")
    users = overlap(domain, user, keep, target, coded.n_users)
    if cap is not None and len(users) > cap:
        from tasks.split import rng

        chosen = np.zeros(coded.n_users, dtype=bool)
        chosen[users[np.sort(rng(spec, STREAM_SAMPLE).choice(len(users), size=cap, replace=False))]] = True
        keep &= chosen[user]
        keep, more = kcore(user_key, item_key, keep, *minimums)
        rounds, sampled = rounds + more, int(cap)
    after = _counts(domain, user, item_key, keep, target, coded.n_users)
    need = spec.filters.get("min_overlap")
    if need is not None and after["overlap_users"] < need:
        raise DataError(
            f"task {spec.id}: {after['overlap_users']} users have rows in {spec.target} and a source domain "
            f"after the filters, fewer than [filters] min_overlap = {need}; lower the k-core minimums or "
            f"choose categories that share more users"
        )
    return keep, {"before": before, "after": after, "kcore_rounds": rounds, "sampled_users": sampled}


def _counts(
    domain: np.ndarray, user: np.ndarray, item_key: np.ndarray, keep: np.ndarray, target: int, n_users: int
) -> dict[str, int]:
    return {
        "rows": int(keep.sum()),
        "users": int(np.count_nonzero(np.bincount(user[keep], minlength=1))),
        "items": int(np.count_nonzero(np.bincount(item_key[keep], minlength=1))),
        "overlap_users": len(overlap(domain, user, keep, target, n_users)),
    }


def reduce(
    table: pa.Table, domains: tuple[str, ...], spec: TaskSpec | None = None
) -> tuple[pa.Table, dict[str, int], dict | None]:
    """Deduplicated rows of ``domains`` after ``spec``'s filters (none without a spec), still in Arrow.

    Returns the kept rows, the duplicate rows removed per domain, and the filter counts (None when the spec
    declares no filter).
    """
    wanted = pc.is_in(table["domain"], value_set=pa.array(list(domains)))
    if not pc.all(wanted).as_py():  # copy the table only when it holds other domains
        table = table.filter(wanted)
    coded = encode(table, domains)
    rows, rating, ts, removed = deduplicate(table, coded)
    report = None
    if spec is not None and declared(spec):
        keep, report = select(coded, rows, spec)
        rows, rating, ts = rows[keep], rating[keep], ts[keep]
    ts_array = pa.array(ts, mask=ts == np.iinfo(np.int64).max)
    taken = table.select(["domain", "user", "item"]).take(pa.array(rows))
    out = pa.table([*taken.columns, pa.array(rating, pa.float64()), ts_array], schema=ARROW_SCHEMA)
    return out, removed, report


def apply(table: pa.Table, spec: TaskSpec) -> tuple[pa.Table, dict]:
    """The spec's filters on deduplicated rows (a local data set's cached table)."""
    out, _, report = reduce(table, spec.domains(), spec)
    return out, report or {}

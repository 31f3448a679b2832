"""Hub-scale rows, column-wise: the duplicate rule and a spec's ``[filters]`` on integer codes.

A category of the Amazon Reviews 2023 hub has millions of ratings, most from users seen a few times; a task
needs the users and items with enough history and a bounded number of overlapping users. IDs are encoded
once into integer codes in the sorted order of the IDs (so nothing depends on file order), and every step
below is numpy over those codes (sort, ``bincount``, boolean masks), never a Python loop over rows; only the
rows kept are finally turned back into strings.

- The duplicate rule of ``tasks.schema.deduplicate``: one row per (domain, user, item), mean rating,
  earliest timestamp.
- ``min_user_interactions`` / ``min_item_interactions``: iterated k-core within each of the task's domains:
  users and items with fewer rows in that domain are dropped, again and again until nothing changes.
- ``max_users``: at most N overlapping users (rows in the target and in a source domain) are kept, a seeded
  sample of the overlap in ID order (stream 3 of the split seed); every other user's rows are dropped and
  the k-core runs again to its fixed point.
- ``min_overlap``: the task needs at least this many overlapping users once filtered; fewer is an error.

Memory (``benchmarks/hub_scale.py``: 12 million rows in under 2 GB). The input may be plain strings or
dictionary-encoded (the hub reader's compact table), and dictionary columns are coded through their
dictionaries, never decoded. Codes are narrow integers (int8 domains, int32 users, items and row positions);
the only full-length 64-bit arrays are the sort key and its order, and they live only while the
duplicates are found. Mean ratings and earliest timestamps are computed for the kept pairs only, after the
filters, so no full-length copy of the rating or timestamp column is ever made.
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
BLOCK = 1 << 20  # rows per block where a full-length temporary would otherwise be made
NO_TS = np.iinfo(np.int64).max  # a missing timestamp while the earliest is taken


def declared(spec: TaskSpec) -> bool:
    return any(k in spec.filters for k in KEYS)


def index_type(size: int) -> type[np.signedinteger]:
    """int32 when every value below ``size`` fits (row positions, codes, keys), else int64."""
    return np.int32 if size <= np.iinfo(np.int32).max + 1 else np.int64


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    """The column's chunks; a dictionary chunk with nulls is decoded (canonical IDs have none)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return [c.dictionary_decode() if pa.types.is_dictionary(c.type) and c.null_count else c for c in chunks]


def positions(column: pa.ChunkedArray | pa.Array, values: pa.Array) -> np.ndarray:
    """The position of each entry of ``column`` in ``values`` (-1 when absent), as int32.

    A dictionary chunk is looked up through its dictionary and the result taken by its indices, so the
    strings of a dictionary-encoded column are never materialized row by row.
    """
    parts = []
    for chunk in _chunks(column):
        if pa.types.is_dictionary(chunk.type):
            mapped = _int32(pc.index_in(chunk.dictionary, value_set=values))
            parts.append(mapped[chunk.indices.to_numpy()])
        else:
            parts.append(_int32(pc.index_in(chunk, value_set=values)))
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def _int32(found: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int32)


def distinct_sorted(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The distinct values of ``column`` in sorted order (of a dictionary chunk: its dictionary's values)."""
    parts = [pc.unique(c.dictionary if pa.types.is_dictionary(c.type) else c) for c in _chunks(column)]
    distinct = pc.unique(pa.chunked_array(parts, type=parts[0].type)) if parts else pa.array([], pa.string())
    return distinct.take(pc.array_sort_indices(distinct))


def sorted_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of ``column`` in the sorted order of its distinct values (int32), and those values.

    Only the order of the codes matters to the filters: codes of a dictionary whose values are not all used
    leave gaps, which change no comparison, count or sample.
    """
    ordered = distinct_sorted(column)
    return positions(column, ordered), ordered


@dataclass(frozen=True)
class Coded:
    """A canonical table's rows as codes: domain (position in ``domains``), user and item (sorted IDs)."""

    domains: tuple[str, ...]
    domain: np.ndarray
    user: np.ndarray
    item: np.ndarray
    users: pa.Array  # the user IDs in code order
    items: pa.Array

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def at(self, rows: np.ndarray) -> Coded:
        """The codes of ``rows`` only (e.g. one row per pair, so that the per-row codes can be freed)."""
        codes = (self.domain[rows], self.user[rows], self.item[rows])
        return Coded(self.domains, *codes, self.users, self.items)

    def user_key(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Per-domain user keys of ``rows`` (None: every row)."""
        domain, user = (self.domain, self.user) if rows is None else (self.domain[rows], self.user[rows])
        return _pair(domain, user, self.n_users)

    def item_key(self, rows: np.ndarray | None = None) -> np.ndarray:
        domain, item = (self.domain, self.item) if rows is None else (self.domain[rows], self.item[rows])
        return _pair(domain, item, self.n_items)


def _pair(domain: np.ndarray, code: np.ndarray, size: int) -> np.ndarray:
    """``domain * size + code`` in the narrowest type that holds it (a per-domain user or item key)."""
    key = domain.astype(index_type((int(domain.max(initial=0)) + 1) * max(size, 1)))
    key *= size
    key += code
    return key


def encode(table: pa.Table, domains: tuple[str, ...]) -> Coded:
    domain = positions(table["domain"], pa.array(list(domains), pa.string()))
    if (domain < 0).any():
        raise DataError(f"rows of a domain other than {list(domains)} reached the filters")
    user, users = sorted_codes(table["user"])
    item, items = sorted_codes(table["item"])
    narrow = np.int8 if len(domains) <= np.iinfo(np.int8).max else np.int32
    return Coded(domains, domain.astype(narrow), user, item, users, items)


@dataclass(frozen=True)
class Pairs:
    """The (domain, user, item) pairs of a coded table: rows sorted by pair (stable), where each pair starts.

    ``order[starts[g]]`` is the first row (in table order) of pair ``g``; pairs are in (domain, user, item)
    order. Both arrays are int32 when the table has fewer than 2**31 rows.
    """

    order: np.ndarray
    starts: np.ndarray
    removed: dict[str, int]

    @property
    def rows(self) -> np.ndarray:
        return self.order[self.starts]

    def aggregate(self, table: pa.Table, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean rating, earliest ts) of the pairs ``groups`` (indices, ascending).

        Each pair's ratings are summed in row order with ``np.add.reduceat``, exactly as over the whole
        table, so a mean is bit-for-bit the same whichever pairs are kept; single-row pairs (nearly all)
        just take their row.
        """
        begin = self.starts[groups]
        end = np.full(len(groups), len(self.order), dtype=np.int64)
        after = groups + 1 < len(self.starts)
        end[after] = self.starts[groups[after] + 1]
        size = end - begin
        rows = self.order[begin]
        mean = _values(table["rating"], rows).astype(np.float64)
        earliest = _values(table["ts"], rows, NO_TS).astype(np.int64)
        multi = np.flatnonzero(size > 1)
        if len(multi):
            lengths = size[multi]
            first = np.cumsum(lengths) - lengths  # where each pair starts among the gathered members
            members = self.order[np.repeat(begin[multi] - first, lengths) + np.arange(int(lengths.sum()))]
            mean[multi] = np.add.reduceat(_values(table["rating"], members), first) / lengths
            earliest[multi] = np.minimum.reduceat(_values(table["ts"], members, NO_TS), first)
        return mean, earliest


def _values(column: pa.ChunkedArray, rows: np.ndarray, fill: int | None = None) -> np.ndarray:
    """``column`` at ``rows`` as numpy (only those rows are copied); nulls become ``fill``."""
    taken = column.take(pa.array(rows))
    if fill is not None and taken.null_count:
        taken = pc.fill_null(taken, fill)
    return np.asarray(taken.to_numpy())


def deduplicate(table: pa.Table, coded: Coded) -> Pairs:
    """The duplicate rule's pairs (see ``Pairs``) and the duplicate rows removed per domain.

    Rows are sorted by one int64 key with a stable sort, so the rows of a pair stay in table order and a
    mean is the same on every run. The sorted key is never held whole: run starts are found block by block.
    """
    n = len(coded.domain)
    key = coded.domain.astype(np.int64)
    key *= coded.n_users
    key += coded.user
    key *= coded.n_items
    key += coded.item
    order = np.argsort(key, kind="stable")
    new = np.empty(n, dtype=bool)
    last = None
    for start in range(0, n, BLOCK):
        block = key[order[start : start + BLOCK]]
        new[start] = last is None or block[0] != last
        np.not_equal(block[1:], block[:-1], out=new[start + 1 : start + len(block)])
        last = block[-1]
    del key
    index = index_type(n)
    starts = np.flatnonzero(new).astype(index)
    del new
    order = order.astype(index)
    # Rows are sorted by domain first: the pairs of domain d start at or after its first sorted row.
    per_domain = np.array([np.count_nonzero(coded.domain == d) for d in range(len(coded.domains))], np.int64)
    bounds = np.searchsorted(starts, np.r_[0, np.cumsum(per_domain)])
    removed = per_domain - np.diff(bounds)
    return Pairs(order, starts, {d: int(r) for d, r in zip(coded.domains, removed, strict=True)})


def kcore(
    user_key: np.ndarray, item_key: np.ndarray, keep: np.ndarray, min_user: int, min_item: int
) -> tuple[np.ndarray, int]:
    """The rows left once every per-domain user key and item key has the minimum rows; and the rounds.

    Each round counts and tests only the rows still kept, so the arrays shrink with the rows (and nothing is
    copied while every row is kept).
    """
    if min_user <= 1 and min_item <= 1:
        return keep, 0
    sizes = (int(user_key.max(initial=-1)) + 1, int(item_key.max(initial=-1)) + 1)
    rows = None if keep.all() else np.flatnonzero(keep).astype(index_type(len(keep)))
    users, items = (user_key, item_key) if rows is None else (user_key[rows], item_key[rows])
    rounds = 0
    while True:
        rounds += 1
        ok = (np.bincount(users, minlength=sizes[0]) >= min_user)[users]
        ok &= (np.bincount(items, minlength=sizes[1]) >= min_item)[items]
        if ok.all():
            break
        rows = np.flatnonzero(ok).astype(index_type(len(keep))) if rows is None else rows[ok]
        users, items = users[ok], items[ok]
    if rows is None:
        return keep, rounds
    out = np.zeros(len(keep), dtype=bool)
    out[rows] = True
    return out, rounds


def overlap(domain: np.ndarray, user: np.ndarray, keep: np.ndarray, target: int, n_users: int) -> np.ndarray:
    """Codes (sorted) of the users with kept rows in the target domain and in another domain."""
    in_target = np.zeros(n_users, dtype=bool)
    in_other = np.zeros(n_users, dtype=bool)
    in_target[user[keep & (domain == target)]] = True
    in_other[user[keep & (domain != target)]] = True
    return np.flatnonzero(in_target & in_other)


def select(coded: Coded, rows: np.ndarray | None, spec: TaskSpec) -> tuple[np.ndarray, dict]:
    """Which of ``rows`` (None: all) the spec's filters keep (a mask over them), and the manifest's counts."""
    domain, user = (coded.domain, coded.user) if rows is None else (coded.domain[rows], coded.user[rows])
    user_key, item_key = coded.user_key(rows), coded.item_key(rows)
    target = coded.domains.index(spec.target)
    minimums = (spec.filters.get("min_user_interactions", 1), spec.filters.get("min_item_interactions", 1))
    keep = np.ones(len(domain), dtype=bool)
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
    every = bool(keep.all())  # no copy of the columns when every row counts
    return {
        "rows": int(keep.sum()),
        "users": int(np.count_nonzero(np.bincount(user if every else user[keep], minlength=1))),
        "items": int(np.count_nonzero(np.bincount(item_key if every else item_key[keep], minlength=1))),
        "overlap_users": len(overlap(domain, user, keep, target, n_users)),
    }


def reduce(
    table: pa.Table, domains: tuple[str, ...], spec: TaskSpec | None = None
) -> tuple[pa.Table, dict[str, int], dict | None]:
    """Deduplicated rows of ``domains`` after ``spec``'s filters (none without a spec), still in Arrow.

    ``table`` has the canonical columns, with plain or dictionary-encoded strings. Returns the kept rows
    (``ARROW_SCHEMA``, plain strings, in (domain, user, item) order), the duplicate rows removed per domain,
    and the filter counts (None when the spec declares no filter).
    """
    wanted = positions(table["domain"], pa.array(list(domains), pa.string())) >= 0
    if not wanted.all():  # copy the table only when it holds other domains
        table = table.filter(pa.array(wanted))
    del wanted
    coded = encode(table, domains)
    pairs = deduplicate(table, coded)
    coded = coded.at(pairs.rows)  # one entry per pair from here on: the per-row codes are freed
    report, groups = None, np.arange(len(pairs.starts))
    if spec is not None and declared(spec):
        kept, report = select(coded, None, spec)
        groups = np.flatnonzero(kept)
    rating, ts = pairs.aggregate(table, groups)
    out = pa.table(
        [
            pa.array(list(coded.domains), pa.string()).take(pa.array(coded.domain[groups])),
            _plain(coded.users.take(pa.array(coded.user[groups]))),
            _plain(coded.items.take(pa.array(coded.item[groups]))),
            pa.array(rating, pa.float64()),
            pa.array(ts, mask=ts == NO_TS),
        ],
        schema=ARROW_SCHEMA,
    )
    return out, pairs.removed, report


def _plain(ids: pa.Array) -> pa.Array:
    return ids if ids.type == pa.string() else pc.cast(ids, pa.string())


def apply(table: pa.Table, spec: TaskSpec) -> tuple[pa.Table, dict]:
    """The spec's filters on deduplicated rows (a local data set's cached table)."""
    out, _, report = reduce(table, spec.domains(), spec)
    return out, report or {}

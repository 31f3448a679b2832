"""Split rules: canonical interactions -> the tables of one task, then the protocol v2 cleaning rules.

Every rule is a pure function of the deduplicated table and the spec. IDs are sorted before any sampling and
every sample comes from ``numpy.random.default_rng([split_seed, stream])`` with a fixed stream per purpose
(0: user order, or item order in the cold-item families, 1: support pool, 2: negatives), never from
``hash()``, set or dict order. Each family's
declaration (``tasks.protocols``) names its rule; the builder calls it through that declaration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tasks.schema import COLUMNS, canonical, empty_table

if TYPE_CHECKING:  # tasks.spec reads the family declarations (tasks.protocols), which name these rules
    from tasks.spec import TaskSpec

TABLES = ("train", "support", "query", "valid_support", "valid_query")
# The cold users' pool rows that no other table holds (past the first K). No method or metric reads them:
# they make the task's item universe (the candidates, the encoded item indices) the same for every K of a
# group, so K-shot curves rank the same candidates and a K-independent pretraining is shared across K.
POOL = "pool"
STREAM_USERS, STREAM_POOL, STREAM_NEGATIVES = 0, 1, 2
ORDER = ["domain", "user", "ts", "item"]


def rng(spec: TaskSpec, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.split_seed, stream])


def sort_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The one row order of every stored table: domain, user, timestamp (unknown last), item."""
    return canonical(frame.sort_values(ORDER, kind="stable", na_position="last"))


def cold_user_groups(eligible: np.ndarray, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the sorted eligible users once; the first ``beta`` are test, the last ``valid_fraction`` valid.

    The order depends only on the eligible users and the seed, so a smaller beta's test users are a prefix
    (a subset) of a larger beta's, and the validation users are the same for every beta.
    """
    order = rng(spec, STREAM_USERS).permutation(np.sort(eligible))
    n_test = int(np.floor(spec.beta * len(order)))
    n_valid = int(np.floor(spec.valid_fraction * len(order)))
    return np.sort(order[:n_test]), np.sort(order[len(order) - n_valid :])


def _position_in_user(frame: pd.DataFrame) -> np.ndarray:
    return frame.groupby("user", sort=False, observed=True).cumcount().to_numpy()


def split_rating_transfer(table: pd.DataFrame, spec: TaskSpec) -> dict[str, pd.DataFrame]:
    """Family R: explicit-rating transfer between two domains (repaired PTUPCDR protocol)."""
    source = table[table["domain"] == spec.source[0]]
    target = table[table["domain"] == spec.target]
    overlap = np.intersect1d(source["user"].unique(), target["user"].unique())
    test, valid = cold_user_groups(overlap, spec)
    cold = np.concatenate([test, valid])
    tables = {"train": pd.concat([source, target[~target["user"].isin(cold)]])}
    if spec.k == 0:
        tables |= {
            "support": empty_table(),
            "query": target[target["user"].isin(test)],
            "valid_support": empty_table(),
            "valid_query": target[target["user"].isin(valid)],
        }
        return {name: sort_rows(t) for name, t in tables.items()}
    pool = spec.filters["pool"]
    # One pool draw over all cold users' target rows (sorted), so the pool is the same for every K.
    rows = target[target["user"].isin(cold)].sort_values(["user", "item"], kind="stable")
    rows = rows.assign(_key=rng(spec, STREAM_POOL).random(len(rows)))
    rows = rows.sort_values(["user", "_key"], kind="stable")
    rows = rows[rows.groupby("user", observed=True)["item"].transform("size") > pool]
    position = _position_in_user(rows)
    support = rows[position < spec.k]
    query = rows[position >= pool]
    tables |= {
        "support": support[support["user"].isin(test)],
        "query": query[query["user"].isin(test)],
        "valid_support": support[support["user"].isin(valid)],
        "valid_query": query[query["user"].isin(valid)],
        POOL: rows[(position >= spec.k) & (position < pool)],
    }
    return {name: sort_rows(t[list(COLUMNS)]) for name, t in tables.items()}


def split_leave_one_domain_out(table: pd.DataFrame, spec: TaskSpec) -> dict[str, pd.DataFrame]:
    """Family L: target domain T; support = K earliest T interactions, query = those after the pool."""
    min_target, min_other = spec.filters["min_target"], spec.filters["min_other"]
    domains = [*spec.source, spec.target]
    table = table[table["domain"].isin(domains)]
    target = table[table["domain"] == spec.target]
    other = table[table["domain"] != spec.target]
    n_target = target.groupby("user", observed=True).size()
    n_other = other.groupby("user", observed=True).size().reindex(n_target.index, fill_value=0)
    eligible = n_target.index[(n_target >= min_target) & (n_other >= min_other)].to_numpy(dtype=object)
    test, valid = cold_user_groups(eligible, spec)
    cold = np.concatenate([test, valid])
    rows = target[target["user"].isin(cold)].sort_values(["user", "ts", "item"], kind="stable")
    position = _position_in_user(rows)
    support = rows[position < spec.k]
    query = rows[position >= min_target - 1]
    tables = {
        "train": pd.concat([other, target[~target["user"].isin(cold)]]),
        "support": support[support["user"].isin(test)],
        "query": query[query["user"].isin(test)],
        "valid_support": support[support["user"].isin(valid)],
        "valid_query": query[query["user"].isin(valid)],
        POOL: rows[(position >= spec.k) & (position < min_target - 1)],
    }
    return {name: sort_rows(t) for name, t in tables.items()}


def _cold_item_tables(
    train: pd.DataFrame, rows: pd.DataFrame, test: np.ndarray, valid: np.ndarray, spec: TaskSpec
) -> dict[str, pd.DataFrame]:
    """Cold items' tables: ``rows`` (every row of the cold items) in each item's pool order; support = its
    first K rows, query = the rows after the pool (so the query is the same for every K <= pool)."""
    pool = spec.filters["pool"]
    position = rows.groupby("item", sort=False, observed=True).cumcount().to_numpy()
    support = rows[position < spec.k]
    query = rows[position >= pool]
    tables = {
        "train": train,
        "support": support[support["item"].isin(test)],
        "query": query[query["item"].isin(test)],
        "valid_support": support[support["item"].isin(valid)],
        "valid_query": query[query["item"].isin(valid)],
    }
    return {name: sort_rows(t[list(COLUMNS)]) for name, t in tables.items()}


def _cold_items(target: pd.DataFrame, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """Test and validation cold items: the target items with more than ``pool`` rows (a pool and at least
    one query row), sorted, shuffled once with stream 0; the first ``beta`` test, the last
    ``valid_fraction`` validation. Items with fewer rows are never cold: they stay in train."""
    n_rows = target.groupby("item", observed=True).size()
    eligible = n_rows.index[n_rows > spec.filters["pool"]].to_numpy(dtype=object)
    return cold_user_groups(eligible, spec)  # the same draw as cold users, over item ids


def split_item_ratings(table: pd.DataFrame, spec: TaskSpec) -> dict[str, pd.DataFrame]:
    """Family IR: cold items with explicit ratings. Each cold item's ratings (sorted by user) draw one seeded
    key each (stream 1, one draw over all cold items' rows, whatever K); the ``pool`` smallest keys are its
    pool, support = the first K of the pool, query = its ratings outside the pool. Training = every row of
    the source domain and the target rows of the items that are not cold."""
    source = table[table["domain"] == spec.source[0]]
    target = table[table["domain"] == spec.target]
    test, valid = _cold_items(target, spec)
    is_cold = target["item"].isin(np.concatenate([test, valid]))
    rows = target[is_cold].sort_values(["item", "user"], kind="stable")
    rows = rows.assign(_key=rng(spec, STREAM_POOL).random(len(rows)))
    rows = rows.sort_values(["item", "_key"], kind="stable")
    return _cold_item_tables(pd.concat([source, target[~is_cold]]), rows, test, valid, spec)


def split_item_earliest(table: pd.DataFrame, spec: TaskSpec) -> dict[str, pd.DataFrame]:
    """Family IL: cold items with timestamps. A cold item's pool is its ``pool`` earliest interactions (ties
    in time broken by user id), support = the first K of them, query = its interactions after the pool; no
    support row is later than any query row of the same item. Training = every row of the source domains
    and the target rows of the items that are not cold."""
    table = table[table["domain"].isin([*spec.source, spec.target])]
    target = table[table["domain"] == spec.target]
    other = table[table["domain"] != spec.target]
    test, valid = _cold_items(target, spec)
    is_cold = target["item"].isin(np.concatenate([test, valid]))
    rows = target[is_cold].sort_values(["item", "ts", "user"], kind="stable")
    return _cold_item_tables(pd.concat([other, target[~is_cold]]), rows, test, valid, spec)


def split_published(
    target: dict[str, pd.DataFrame], source: dict[str, pd.DataFrame], spec: TaskSpec
) -> dict[str, pd.DataFrame]:
    """Family C: CDRIB's own files. Train = both domains' ``train.txt``; valid/test of the target domain.

    With ``[clean] users = "disjoint"``, CDRIB's cold users (everyone with target rows in ``valid.txt`` or
    ``test.txt``) are shuffled once with the split seed: the first half are test users, scored on their
    ``test.txt`` pairs, the second half validation users, scored on their ``valid.txt`` pairs. In CDRIB's
    files the two sets are the same people, so model selection would see the test users.
    """
    query, valid = target["test"], target["valid"]
    if spec.rule("users") == "disjoint":
        cold = np.unique(pd.concat([query["user"], valid["user"]]).to_numpy(dtype=object))
        order = rng(spec, STREAM_USERS).permutation(np.sort(cold))
        half = len(order) // 2
        query = query[query["user"].isin(order[:half])]
        valid = valid[valid["user"].isin(order[half:])]
    tables = {
        "train": pd.concat([target["train"], source["train"]]),
        "support": empty_table(),
        "query": query,
        "valid_support": empty_table(),
        "valid_query": valid,
    }
    return {name: sort_rows(t) for name, t in tables.items()}


def _drop_cold_users(tables: dict[str, pd.DataFrame], users: np.ndarray) -> dict[str, pd.DataFrame]:
    """Remove ``users`` from the support and query tables (their source rows in train stay)."""
    out = dict(tables)
    for name in ("support", "query", "valid_support", "valid_query", POOL):
        if name in tables:
            out[name] = tables[name][~tables[name]["user"].isin(users)]
    return out


def _first_query_ts(tables: dict[str, pd.DataFrame]) -> pd.Series:
    queries = pd.concat([tables["query"], tables["valid_query"]])
    return queries.groupby("user", observed=True)["ts"].min()


def cut_global_time(tables: dict[str, pd.DataFrame], quantile: float) -> tuple[dict, dict[str, int]]:
    """Global time cut (L): one time ``T``, the ``quantile`` of the cold users' first query times.

    Every training row, of every user and domain, must be earlier than ``T``; cold users whose first query
    interaction is earlier than ``T`` are dropped, so no cold user is asked about a moment the training data
    has passed. Their support may lie on either side of ``T``: it is the user's own revealed data.
    """
    first = _first_query_ts(tables)
    cut = first.quantile(quantile, interpolation="lower")
    train = tables["train"]
    late = train["ts"].isna() | (train["ts"] >= cut)
    early_users = first.index[first < cut].to_numpy(dtype=object)
    out = _drop_cold_users({**tables, "train": train[~late]}, early_users)
    return out, {
        "global_cut_ts": int(cut),
        "train_rows_after_cut": int(late.sum()),
        "users_before_cut": len(early_users),
    }


def cut_history_at_first_query(
    tables: dict[str, pd.DataFrame], spec: TaskSpec
) -> tuple[dict, dict[str, int]]:
    """Time-honest histories (L): a cold user keeps only source rows earlier than their first query.

    Cold users left with no source row are not cross-domain transfer users and are dropped.
    """
    first = _first_query_ts(tables)
    train = tables["train"]
    is_cold_source = train["domain"].isin(spec.source) & train["user"].isin(first.index)
    limit = first.reindex(train["user"]).to_numpy(dtype=np.float64)
    late = is_cold_source.to_numpy() & ~(train["ts"].to_numpy(dtype=np.float64, na_value=np.nan) < limit)
    kept = train[~late]
    with_source = kept[kept["domain"].isin(spec.source)]["user"].unique()
    orphans = np.setdiff1d(first.index.to_numpy(dtype=object), np.asarray(with_source, dtype=object))
    out = _drop_cold_users({**tables, "train": kept}, orphans)
    return out, {"cold_source_rows_after_first_query": int(late.sum()), "users_without_source": len(orphans)}


def drop_duplicate_queries(
    tables: dict[str, pd.DataFrame], touched: dict[str, np.ndarray], unit: str = "user"
) -> tuple[dict, dict[str, int]]:
    """Protocol v2: remove the query pairs flagged by the audit, then the cold units left with no query.

    ``touched[name]`` masks the rows of ``query`` / ``valid_query`` whose target item duplicates an item of
    the same user's source history. ``unit`` is the column of the cold unit: ``user`` (a cold user left
    with no query is removed with their support) or ``item`` (a cold item likewise). Source histories stay
    as they are.
    """
    out = dict(tables)
    counts: dict[str, int] = {}
    for name, support in (("query", "support"), ("valid_query", "valid_support")):
        before = tables[name][unit].unique()
        out[name] = tables[name][~touched[name]]
        gone = np.setdiff1d(np.asarray(before, dtype=object), out[name][unit].unique().to_numpy(dtype=object))
        out[support] = tables[support][~tables[support][unit].isin(gone)]
        if POOL in out:
            out[POOL] = out[POOL][~out[POOL][unit].isin(gone)]
        counts[f"{name}_pairs_removed"] = int(touched[name].sum())
        counts[f"{name}_{unit}s_removed"] = len(gone)
    return out, counts


def sample_negatives(
    query: pd.DataFrame, target_items: np.ndarray, positives: pd.DataFrame, spec: TaskSpec, chunk: int = 256
) -> pd.DataFrame:
    """``n`` negatives per query pair: target items the user never interacted with, uniform, no repeats.

    One generator from the split seed walks the query pairs in stored order; each pair draws a random key per
    item over the sorted item list, its positives are masked and the ``n`` smallest keys win. Chunks of pairs
    bound memory. Stored as each pair's sorted item list.
    """
    n = spec.filters["negatives"]
    items = np.sort(np.asarray(target_items, dtype=object))
    gen = rng(spec, STREAM_NEGATIVES)
    known = pd.DataFrame(
        {"user": positives["user"].to_numpy(dtype=object), "col": np.searchsorted(items, positives["item"])}
    )
    query_users = query["user"].to_numpy(dtype=object)
    out = np.empty((len(query), n), dtype=np.int64)
    for begin in range(0, len(query), chunk):
        rows = pd.DataFrame({"user": query_users[begin : begin + chunk]})
        rows["row"] = np.arange(len(rows))
        keys = gen.random((len(rows), len(items)))
        hits = rows.merge(known, on="user")
        keys[hits["row"].to_numpy(), hits["col"].to_numpy()] = np.inf
        chosen = np.argpartition(keys, n - 1, axis=1)[:, :n]
        out[begin : begin + len(rows)] = np.sort(chosen, axis=1)
    return pd.DataFrame(
        {
            "user": pd.array(query_users, dtype="string"),
            "item": pd.array(query["item"].to_numpy(dtype=object), dtype="string"),
            "negatives": list(items[out]),
        }
    )

"""Protocol v1 split rules (DESIGN.md §3): canonical interactions -> the tables of one task.

Every rule is a pure function of the deduplicated table and the spec. IDs are sorted before any sampling and
every sample comes from ``numpy.random.default_rng([split_seed, stream])`` with a fixed stream per purpose
(0: user order, 1: support pool, 2: negatives), never from ``hash()``, set or dict order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.schema import COLUMNS, canonical, empty_table
from tasks.spec import TaskSpec

TABLES = ("train", "support", "query", "valid_support", "valid_query")
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
    }
    return {name: sort_rows(t) for name, t in tables.items()}


def split_published(
    target: dict[str, pd.DataFrame], source: dict[str, pd.DataFrame], spec: TaskSpec
) -> dict[str, pd.DataFrame]:
    """Family C: CDRIB's own files. Train = both domains' ``train.txt``; valid/test of the target domain."""
    tables = {
        "train": pd.concat([target["train"], source["train"]]),
        "support": empty_table(),
        "query": target["test"],
        "valid_support": empty_table(),
        "valid_query": target["valid"],
    }
    return {name: sort_rows(t) for name, t in tables.items()}


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

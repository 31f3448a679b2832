"""Leak audit of a task's tables (protocol v2): duplicate products across domains, overlap and look-ahead.

Amazon dumps list some products in two categories with the same reviews, so a "cross-domain" recommender can
score by copying a user's source item to its target duplicate. This module finds such item pairs from the
training rows alone and measures how much of the evaluation they touch; the builder runs it on every task,
stores the result in the manifest, and the cleaning rule (``tasks.split.drop_duplicate_queries``) uses its
pairs. Everything is sparse matrix products and joins: no Python loop over users or items, so a task's audit
takes seconds.

Two items of different domains are flagged duplicates when
- they carry the same raw ID (where the data set has raw IDs), or
- their reviewer sets among training users are (near) identical: Jaccard >= ``jaccard`` over at least
  ``min_co`` co-reviewers.

In the cold-item families (``FamilyProtocol.cold == "items"``) a cold item has no training row, so its
reviewer set is read from every row of the task (``detection_rows``); the audit then checks cold items
instead of cold users: validation and test cold items are disjoint, no cold item has a training row, and
(with timestamps) no cold item's support comes after its query (``item_look_ahead``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

QUERY_TABLES = {"query": "support", "valid_query": "valid_support"}
TABLES = ("train", "support", "query", "valid_support", "valid_query")
UNIT = {"users": "user", "items": "item"}  # a family's ``cold`` -> the column of its cold unit


def detection_rows(
    tables: dict[str, pd.DataFrame], cold: str, rows: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The rows the duplicate detector reads: the training rows, or, where the cold units are items (which
    have no training row), every row of the task: ``rows`` (the split's input, the same for every K) when
    given, else the task's tables. The detector's result is used by the builder only (to clean and to
    audit); methods never see it."""
    if cold == "users":
        return tables["train"]
    if rows is not None:
        return rows
    return pd.concat([tables[name] for name in TABLES], ignore_index=True)


@dataclass(frozen=True)
class AuditParams:
    """Thresholds of the duplicate detector; declared in the spec's ``[audit]`` table and recorded."""

    jaccard: float = 0.95
    min_co: int = 3


def _codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), sort=True)
    return codes, np.asarray(uniques, dtype=object)


def duplicate_pairs(
    train: pd.DataFrame, source: tuple[str, ...], target: str, params: AuditParams, raw_ids: bool
) -> pd.DataFrame:
    """Flagged (source item, target item) pairs with their co-reviewer count, Jaccard and why.

    Reviewer sets come from the training rows (warm users, and cold users' source rows only, since their
    target rows are never in train), restricted to users with training rows in both the source domains and
    the target: a product listed twice has the same reviewers in both lists, and users seen in one domain
    only would dilute the overlap. ``why`` is ``raw-id`` or ``reviewers``.
    """
    src = train[train["domain"].isin(source)]
    tgt = train[train["domain"] == target]
    users = np.intersect1d(src["user"].to_numpy(dtype=object), tgt["user"].to_numpy(dtype=object))
    src_all, tgt_all = src, tgt
    src = src[src["user"].isin(users)]
    tgt = tgt[tgt["user"].isin(users)]
    s_items, s_names = _codes(src["item"])
    t_items, t_names = _codes(tgt["item"])
    shape_u = len(users)

    def matrix(frame: pd.DataFrame, items: np.ndarray, n_items: int) -> sp.csr_matrix:
        rows = np.searchsorted(users, frame["user"].to_numpy(dtype=object))
        data = np.ones(len(rows), dtype=np.float64)
        return sp.csr_matrix((data, (rows, items)), shape=(shape_u, n_items))

    xs = matrix(src, s_items, len(s_names))
    xt = matrix(tgt, t_items, len(t_names))
    # items with fewer than min_co reviewers can never qualify: drop their columns before the product
    s_keep = np.flatnonzero(np.asarray(xs.sum(axis=0)).ravel() >= params.min_co)
    t_keep = np.flatnonzero(np.asarray(xt.sum(axis=0)).ravel() >= params.min_co)
    xs_k, xt_k = xs[:, s_keep], xt[:, t_keep]
    co = (xs_k.T @ xt_k).tocoo()
    n_s = np.asarray(xs_k.sum(axis=0)).ravel()[co.row]
    n_t = np.asarray(xt_k.sum(axis=0)).ravel()[co.col]
    jac = co.data / (n_s + n_t - co.data)
    hit = (co.data >= params.min_co) & (jac >= params.jaccard)
    found = pd.DataFrame(
        {
            "source_item": s_names[s_keep[co.row[hit]]],
            "target_item": t_names[t_keep[co.col[hit]]],
            "co_reviewers": co.data[hit].astype(np.int64),
            "jaccard": jac[hit],
            "why": "reviewers",
        }
    )
    if raw_ids:
        same = np.intersect1d(src_all["item"].to_numpy(dtype=object), tgt_all["item"].to_numpy(dtype=object))
        shared = pd.DataFrame(
            {"source_item": same, "target_item": same, "co_reviewers": 0, "jaccard": np.nan, "why": "raw-id"}
        )
        found = pd.concat([shared, found], ignore_index=True)
    found = found.drop_duplicates(["source_item", "target_item"], keep="first")
    return found.sort_values(["source_item", "target_item"], kind="stable").reset_index(drop=True)


def same_rating_share(train: pd.DataFrame, pairs: pd.DataFrame, source: tuple[str, ...], target: str) -> dict:
    """Explicit data: of the co-reviews of flagged pairs, how many carry the same rating in both domains."""
    src = train[train["domain"].isin(source)][["user", "item", "rating"]]
    tgt = train[train["domain"] == target][["user", "item", "rating"]]
    joined = pairs[["source_item", "target_item"]].merge(src, left_on="source_item", right_on="item")
    joined = joined.merge(
        tgt, left_on=["user", "target_item"], right_on=["user", "item"], suffixes=("_s", "_t")
    )
    same = int((joined["rating_s"] == joined["rating_t"]).sum())
    return {"co_reviews": len(joined), "same_rating": same}


def touched_rows(
    query: pd.DataFrame, train: pd.DataFrame, pairs: pd.DataFrame, source: tuple[str, ...]
) -> np.ndarray:
    """Boolean mask over ``query`` rows whose target item duplicates an item of that user's source history."""
    if query.empty or pairs.empty:
        return np.zeros(len(query), dtype=bool)
    history = train[train["domain"].isin(source) & train["user"].isin(query["user"].unique())]
    copyable = history[["user", "item"]].merge(
        pairs[["source_item", "target_item"]], left_on="item", right_on="source_item"
    )
    keys = pd.MultiIndex.from_frame(copyable[["user", "target_item"]].astype(str))
    wanted = pd.MultiIndex.from_frame(query[["user", "item"]].astype(str))
    return np.asarray(wanted.isin(keys))


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _first_ts(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("user", observed=True)["ts"].min()


def look_ahead(tables: dict[str, pd.DataFrame], source: tuple[str, ...], target: str) -> dict | None:
    """Where timestamps exist: how much of what a method sees comes after the cold users' evaluation time."""
    train = tables["train"]
    if train["ts"].isna().all():
        return None
    queries = pd.concat([tables["query"], tables["valid_query"]])
    targets = pd.concat([queries, tables["support"], tables["valid_support"]])
    first_query = _first_ts(queries)
    first_target = _first_ts(targets)
    cold_src = train[train["domain"].isin(source) & train["user"].isin(first_query.index)]
    fq = first_query.reindex(cold_src["user"]).to_numpy(dtype=np.float64)
    ft = first_target.reindex(cold_src["user"]).to_numpy(dtype=np.float64)
    ts = cold_src["ts"].to_numpy(dtype=np.float64)
    warm_target = np.sort(train[train["domain"] == target]["ts"].dropna().to_numpy(dtype=np.float64))
    later = len(warm_target) - np.searchsorted(
        warm_target, first_query.to_numpy(dtype=np.float64), side="right"
    )
    per_user = later / max(len(warm_target), 1)
    return {
        "cold_source_rows": len(cold_src),
        "cold_source_after_first_query": _share(int((ts > fq).sum()), len(cold_src)),
        "cold_source_after_first_target": _share(int((ts > ft).sum()), len(cold_src)),
        "target_train_after_first_query_median": round(float(np.median(per_user)), 6)
        if len(per_user)
        else 0.0,
        "train_after_earliest_query": _share(
            int((train["ts"].to_numpy(dtype=np.float64) >= first_query.min()).sum()), len(train)
        ),
    }


def _cold_item_ids(tables: dict[str, pd.DataFrame], query: str) -> np.ndarray:
    frame = pd.concat([tables[QUERY_TABLES[query]]["item"], tables[query]["item"]])
    return np.asarray(frame.unique(), dtype=object)


def _share_later(keys: np.ndarray, users: np.ndarray, times: np.ndarray, span: int) -> tuple[int, int]:
    """Over (query pair, training row of the same user): how many rows are later than the pair, and all."""
    end = np.searchsorted(keys, users * span + span - 1, side="right")
    later = end - np.searchsorted(keys, users * span + times, side="right")
    every = end - np.searchsorted(keys, users * span - 1, side="right")
    return int(later.sum()), int(every.sum())


def item_look_ahead(tables: dict[str, pd.DataFrame], target: str) -> dict | None:
    """Cold items with timestamps: support against query, and how much of train is later than the query.

    ``support_after_first_query`` (fails the audit when > 0): the share of cold items whose latest support
    row is later than their earliest query row. The rest is measured, not failed, as warm users' later rows
    are in family L: training is shared by all cold items, so no per-item cut of it exists.
    ``target_train_after_first_query_median``: per cold item, the share of target training rows later than
    its first query, median over items; ``query_user_rows_after_query``: over query pairs, the share of the
    query user's training rows later than that query interaction; ``train_after_earliest_query``.
    """
    train = tables["train"]
    if train["ts"].isna().all():
        return None
    queries = pd.concat([tables["query"], tables["valid_query"]])
    supports = pd.concat([tables["support"], tables["valid_support"]])
    first_query = queries.groupby("item", observed=True)["ts"].min()
    last_support = supports.groupby("item", observed=True)["ts"].max()
    both = last_support.index.intersection(first_query.index)
    after = int((last_support[both].to_numpy(np.float64) > first_query[both].to_numpy(np.float64)).sum())
    warm_target = np.sort(train[train["domain"] == target]["ts"].dropna().to_numpy(dtype=np.float64))
    fq = first_query.to_numpy(dtype=np.float64)
    per_item = (len(warm_target) - np.searchsorted(warm_target, fq, side="right")) / max(len(warm_target), 1)
    timed = train.dropna(subset=["ts"])
    codes, _ = pd.factorize(pd.concat([timed["user"], queries["user"]]).to_numpy(dtype=object))
    t_code, q_code = codes[: len(timed)].astype(np.int64), codes[len(timed) :].astype(np.int64)
    low = int(min(timed["ts"].min(), queries["ts"].min()))
    span = int(max(timed["ts"].max(), queries["ts"].max())) - low + 2
    keys = np.sort(t_code * span + (timed["ts"].to_numpy(dtype=np.int64) - low))
    later, every = _share_later(keys, q_code, queries["ts"].to_numpy(dtype=np.int64) - low, span)
    return {
        "cold_items": len(first_query),
        "support_after_first_query": _share(after, len(both)),
        "target_train_after_first_query_median": round(float(np.median(per_item)), 6) if len(fq) else 0.0,
        "query_user_rows_after_query": _share(later, every),
        "train_after_earliest_query": _share(
            int((train["ts"].to_numpy(dtype=np.float64) >= first_query.min()).sum()), len(train)
        ),
    }


def _cold_item_checks(tables: dict[str, pd.DataFrame], target: str) -> dict:
    """The audit's cold-item part: disjoint validation and test items, none in train, the look-ahead."""
    test, valid = _cold_item_ids(tables, "query"), _cold_item_ids(tables, "valid_query")
    train_items = tables["train"].loc[tables["train"]["domain"] == target, "item"].to_numpy(dtype=object)
    return {
        "cold": "items",
        "cold_items": {"test": len(test), "valid": len(valid)},
        "valid_test_item_overlap": len(np.intersect1d(test, valid)),
        "cold_items_in_train": len(np.intersect1d(np.concatenate([test, valid]), train_items)),
        "look_ahead": item_look_ahead(tables, target),
    }


def audit(
    tables: dict[str, pd.DataFrame],
    source: tuple[str, ...],
    target: str,
    params: AuditParams,
    raw_ids: bool,
    explicit: bool,
    pairs: pd.DataFrame | None = None,
    cold: str = "users",
    rows: pd.DataFrame | None = None,
) -> dict:
    """The audit summary stored in the manifest (``audit``); ``passed`` is what ranked tasks require.

    A task passes when no test or validation query pair is a flagged duplicate of an item in the same user's
    source history, validation and test users are disjoint, and (with timestamps) no cold user's source row
    in train is later than that user's first query interaction. Warm users' rows later than the cold users'
    queries are measured (``target_train_after_first_query_median``) but do not fail a task: only the
    global-time variants remove them.

    Cold items (``cold = "items"``): duplicates are read from every row of the task (``rows``, else the
    tables); a task passes when no query pair is touched, validation and test cold items are disjoint, no
    cold item has a training row and no cold item's support is later than its first query. Users may be
    asked about validation and test items alike (``valid_test_user_overlap`` is measured, not failed):
    they are warm users.
    """
    train = tables["train"]
    rows = detection_rows(tables, cold, rows)
    if pairs is None:
        pairs = duplicate_pairs(rows, source, target, params, raw_ids)
    out: dict = {
        "params": {"jaccard": params.jaccard, "min_co": params.min_co},
        "raw_ids": raw_ids,
        "duplicate_pairs": len(pairs),
        "duplicate_pairs_raw_id": int((pairs["why"] == "raw-id").sum()),
        "duplicate_pairs_reviewers": int((pairs["why"] == "reviewers").sum()),
    }
    if explicit and len(pairs):
        out["co_reviews"] = same_rating_share(rows, pairs, source, target)
    for name in QUERY_TABLES:
        frame = tables[name]
        mask = touched_rows(frame, train, pairs, source)
        users = frame["user"].nunique()
        hit_users = frame.loc[mask, "user"].nunique()
        out[name] = {
            "pairs": len(frame),
            "touched_pairs": int(mask.sum()),
            "touched_share": _share(int(mask.sum()), len(frame)),
            "users": int(users),
            "touched_users": int(hit_users),
        }
    test_users = set(pd.concat([tables["query"]["user"], tables["support"]["user"]]))
    valid_users = set(pd.concat([tables["valid_query"]["user"], tables["valid_support"]["user"]]))
    out["valid_test_user_overlap"] = len(test_users & valid_users)
    if cold == "items":
        out |= _cold_item_checks(tables, target)
        ahead = out["look_ahead"]["support_after_first_query"] if out["look_ahead"] else 0.0
        out["passed"] = bool(
            out["query"]["touched_pairs"] == 0
            and out["valid_query"]["touched_pairs"] == 0
            and out["valid_test_item_overlap"] == 0
            and out["cold_items_in_train"] == 0
            and ahead == 0.0
        )
        return out
    out["look_ahead"] = look_ahead(tables, source, target)
    cold_ahead = out["look_ahead"]["cold_source_after_first_query"] if out["look_ahead"] else 0.0
    out["passed"] = bool(
        out["query"]["touched_pairs"] == 0
        and out["valid_query"]["touched_pairs"] == 0
        and out["valid_test_user_overlap"] == 0
        and cold_ahead == 0.0
    )
    return out


def summary(report: dict) -> dict:
    """The audit figures a run record carries: the leaderboard ranks or sets aside without the artifact.

    A cold-item audit adds ``cold`` and ``valid_test_item_overlap``; a cold-user summary is unchanged."""
    ahead = report.get("look_ahead") or {}
    items = (
        {"cold": "items", "valid_test_item_overlap": int(report["valid_test_item_overlap"])}
        if report.get("cold") == "items"
        else {}
    )
    return items | {
        "passed": bool(report["passed"]),
        "duplicate_pairs": int(report["duplicate_pairs"]),
        "query_pairs": int(report["query"]["pairs"]),
        "query_touched_pairs": int(report["query"]["touched_pairs"]),
        "query_touched_share": float(report["query"]["touched_share"]),
        "valid_query_touched_share": float(report["valid_query"]["touched_share"]),
        "valid_test_user_overlap": int(report["valid_test_user_overlap"]),
        "cold_source_after_first_query": ahead.get("cold_source_after_first_query"),
        "target_train_after_first_query_median": ahead.get("target_train_after_first_query_median"),
    }

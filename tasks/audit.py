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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

QUERY_TABLES = {"query": "support", "valid_query": "valid_support"}


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


def audit(
    tables: dict[str, pd.DataFrame],
    source: tuple[str, ...],
    target: str,
    params: AuditParams,
    raw_ids: bool,
    explicit: bool,
    pairs: pd.DataFrame | None = None,
) -> dict:
    """The audit summary stored in the manifest (``audit``); ``passed`` is what ranked tasks require.

    A task passes when no test or validation query pair is a flagged duplicate of an item in the same user's
    source history, validation and test users are disjoint, and (with timestamps) no cold user's source row
    in train is later than that user's first query interaction. Warm users' rows later than the cold users'
    queries are measured (``target_train_after_first_query_median``) but do not fail a task: only the
    global-time variants remove them.
    """
    train = tables["train"]
    if pairs is None:
        pairs = duplicate_pairs(train, source, target, params, raw_ids)
    out: dict = {
        "params": {"jaccard": params.jaccard, "min_co": params.min_co},
        "raw_ids": raw_ids,
        "duplicate_pairs": len(pairs),
        "duplicate_pairs_raw_id": int((pairs["why"] == "raw-id").sum()),
        "duplicate_pairs_reviewers": int((pairs["why"] == "reviewers").sum()),
    }
    if explicit and len(pairs):
        out["co_reviews"] = same_rating_share(train, pairs, source, target)
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
    """The audit figures a run record carries: the leaderboard ranks or sets aside without the artifact."""
    ahead = report.get("look_ahead") or {}
    return {
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

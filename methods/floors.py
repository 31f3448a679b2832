"""Floors: methods that learn nothing cold-start specific, so every real method must beat them.

They also prove the harness: their outputs are known in closed form, so a wrong metric or a leaked label
shows up as a floor scoring where it cannot. ``GlobalMean``, ``ItemMean`` and ``Popularity`` read the target
domain's training interactions once through ``view.history``, which charges those rows to the training
budget (what a method learns from counts, features included): one pass over the target rows, a small share
of any budget. They take no gradient steps. ``Random`` reads nothing and uses no budget.
None of them looks at a cold user's support or source history: at K=0 and K>0 they predict the same.

Cold items (families IR, IL): ``GlobalMean`` predicts the same mean; ``ItemMean`` is the item prior, the mean
of the cold item's support ratings (the only ratings a new product has); ``Random`` ranks the cold items at
random. ``Popularity`` has nothing to count for a cold item (no training row, K support rows each), so it
does not declare them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from benchmark.api import Budget, ColdBatch, ColdItemBatch, Method, TrainView

__all__ = ["GlobalMean", "ItemMean", "Popularity", "Random"]


def _target_ratings(view: TrainView) -> tuple[np.ndarray, np.ndarray]:
    """Items and ratings of the target domain's training rows that carry a rating."""
    target = view.history(view.target_domain)
    rated = ~np.isnan(target.rating)
    if not rated.any():
        raise ValueError(f"task {view.task_id}: no ratings in target domain {view.target_domain!r}")
    return target.item[rated], target.rating[rated].astype(np.float64)


def _query_items(batch: ColdBatch | ColdItemBatch, name: str) -> np.ndarray:
    if not batch.wants_ratings:
        raise ValueError(f"{name} predicts ratings (family R); this batch asks for candidate scores")
    return np.asarray(batch.query_item)


def _candidates(batch: ColdBatch | ColdItemBatch, name: str) -> np.ndarray:
    if batch.candidates is None:
        raise ValueError(f"{name} scores candidates (families L, C); this batch has none")
    return np.asarray(batch.candidates)


class GlobalMean(Method):
    """The mean of all target-domain training ratings, predicted for every query pair."""

    families = ("R", "IR")
    summary = "mean target-domain training rating for every pair"
    paper = ""

    def fit(self, view: TrainView, budget: Budget) -> None:
        _, ratings = _target_ratings(view)
        self.mean = float(ratings.mean())

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        return np.full(len(_query_items(batch, "GlobalMean")), self.mean, dtype=np.float64)


class ItemMean(Method):
    """Each item's plain mean target-domain training rating; items never rated fall back to the global mean.

    No shrinkage towards the global mean: the floor stays parameter-free, and an item rated once predicts
    that one rating. A cold item (IR) has no training rating: its prior is the mean of its K support
    ratings (the global mean when the support is withheld).
    """

    families = ("R", "IR")
    summary = "per-item mean target training rating (a cold item: its support's mean), else the global mean"
    paper = ""

    def fit(self, view: TrainView, budget: Budget) -> None:
        items, ratings = _target_ratings(view)
        sums = np.bincount(items, weights=ratings, minlength=view.n_items)
        counts = np.bincount(items, minlength=view.n_items)
        self.means = np.full(view.n_items, ratings.mean(), dtype=np.float64)
        seen = counts > 0
        self.means[seen] = sums[seen] / counts[seen]

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        query = _query_items(batch, "ItemMean")
        if isinstance(batch, ColdBatch):
            return self.means[query].copy()
        means = self.means[batch.items].copy()
        rated = ~np.isnan(batch.support.rating)
        where = batch.support_of()[rated]
        counts = np.bincount(where, minlength=len(batch))
        sums = np.bincount(where, weights=batch.support.rating[rated], minlength=len(batch))
        means[counts > 0] = sums[counts > 0] / counts[counts > 0]
        return means[np.searchsorted(batch.items, query)]


class Popularity(Method):
    """Score = how often the item occurs in the target domain's training interactions (the same list for all).

    Counts are float32, exact up to 2^24 occurrences per item.
    """

    families = ("L", "C")
    summary = "target-domain interaction count of each item"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "IL": "a cold item has no training row and K support rows, the same count for all"
    }
    paper = ""

    def fit(self, view: TrainView, budget: Budget) -> None:
        target = view.history(view.target_domain)
        self.counts = np.bincount(target.item, minlength=view.n_items).astype(np.float32)

    def predict(self, batch: ColdBatch) -> np.ndarray:
        row = self.counts[_candidates(batch, "Popularity")]
        return np.repeat(row[None, :], len(batch), axis=0)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection on uint64 (wrapping mod 2^64) with uniform-looking output."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class Random(Method):
    """Uniform random scores in [0, 1), a pure function of (seed, global user, global item).

    A seeded stream drawn per batch would change with how the harness splits users into batches; hashing
    each (seed, user, item) triple with SplitMix64 gives every user the same scores whatever the batching
    and candidate order, without a Python loop over users.
    """

    families = ("L", "C", "IL")
    summary = "uniform random scores, deterministic per (seed, user, item)"
    paper = ""

    def fit(self, view: TrainView, budget: Budget) -> None:
        self.key = _mix(np.array([self.seed % (1 << 64)], dtype=np.uint64))[0]

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        users = np.asarray(batch.users).astype(np.uint64)
        items = _candidates(batch, "Random").astype(np.uint64)
        user_key = _mix(users ^ self.key)
        bits = _mix(user_key[:, None] ^ _mix(items)[None, :])
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53

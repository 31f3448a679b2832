"""item-median: the per-item median rating of the target domain, shifted by the cold user's own support."""

from __future__ import annotations

import numpy as np

from benchmark.api import Budget, ColdBatch, Method, TrainView


class ItemMedian(Method):
    families = ("R",)
    summary = "per-item median target rating, shifted by the user's support offset (example plugin)"
    paper = ""

    def fit(self, view: TrainView, budget: Budget) -> None:
        # history: every target-domain training row, `user` a global index; charged to the budget once
        rows = view.history(view.target_domain)
        self.low, self.high = float(rows.rating.min()), float(rows.rating.max())
        fallback = float(np.median(rows.rating))
        order = np.lexsort((rows.rating, rows.item))
        items, ratings = rows.item[order], rows.rating[order]
        starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
        counts = np.diff(np.r_[starts, len(items)])
        median = (ratings[starts + (counts - 1) // 2] + ratings[starts + counts // 2]) / 2
        enough = counts >= self.config["min_ratings"]
        self.median = np.full(view.n_items, fallback)
        self.median[items[starts][enough]] = median[enough]
        # the record's validation_score stays null unless the method sets it: -user_mae on validation users
        self.validation_score = view.validate(self.predict)

    def predict(self, batch: ColdBatch) -> np.ndarray:
        base = self.median[batch.query_item]
        if len(batch.support) == 0 or self.config["user_shift"] == 0:
            return base
        # support.user and query_user are positions in this batch (0..B-1), not global user indices
        residual = batch.support.rating - self.median[batch.support.item]
        total = np.bincount(batch.support.user, weights=residual, minlength=len(batch))
        count = np.bincount(batch.support.user, minlength=len(batch))
        offset = np.divide(total, count, out=np.zeros(len(batch)), where=count > 0)
        shifted = base + self.config["user_shift"] * offset[batch.query_user]
        return np.clip(shifted, self.low, self.high)

"""An out-of-tree ColdBench method: the per-item median rating of the target domain (family R).

It exists to show, and to test, that a method in another installed package registers with one entry point
(``[project.entry-points."coldbench.methods"]``) and is held to the same contract suite as in-repo methods.
"""

from __future__ import annotations

import numpy as np

from benchmark.api import Budget, ColdBatch, Method, TrainView


class ItemMedian(Method):
    families = ("R",)
    summary = "per-item median of target-domain training ratings (out-of-tree example plugin)"

    def fit(self, view: TrainView, budget: Budget) -> None:
        rows = view.history(view.target_domain)
        self.fallback = float(np.median(rows.rating))
        order = np.lexsort((rows.rating, rows.item))
        items, ratings = rows.item[order], rows.rating[order]
        starts = np.flatnonzero(np.r_[True, items[1:] != items[:-1]])
        counts = np.diff(np.r_[starts, len(items)])
        lower = ratings[starts + (counts - 1) // 2]
        upper = ratings[starts + counts // 2]
        self.median = np.full(view.n_items, self.fallback)
        self.median[items[starts]] = (lower + upper) / 2

    def predict(self, batch: ColdBatch) -> np.ndarray:
        return self.median[batch.query_item]

"""user-knn: cross-domain user-based neighbourhood (the classical collaborative-filtering baseline).

Herlocker, Konstan, Borchers, Riedl. "An Algorithmic Framework for Performing Collaborative Filtering."
SIGIR 1999; the rating form with baseline residuals follows Koren, "Factor in the Neighbors", ACM TKDD 2010.

Users are binary vectors over every item of the task (source and target domains): which items they
interacted with, ratings ignored. Binary even in family R because Amazon ratings are mostly 4-5, so the
choice of items says far more about taste than the rating does. A cold user's vector holds their source
history (plus their support items at K>0); a neighbour candidate is a training user with target-domain
interactions, whose vector holds all their training items. Similarity is cosine with shrinkage,
``sim = dot / (|u| |v| + shrink)``, which discounts neighbours that overlap by chance on few items; the
top ``k`` neighbours are kept.
Ranking (L, C): score of a target item = sum over neighbours of ``sim * interacted``, blended with the
item's target-domain popularity (``pop_weight``, ``ClassicalMethod.blend``; a negligible share always
breaks ties, so a user with no overlapping neighbour gets the popularity ranking).
Ratings (R): the bias-transfer baseline ``mu + b_i + b_u`` (``methods.bias_transfer``, its lambdas selected
first) plus the neighbours' similarity-weighted baseline residuals on the query item,
``sum_v sim (r_vi - b_vi) / (sum_v sim [v rated i] + residual_shrink)``, clipped to the rating range.
Selected on validation cold users: ``k`` and ``shrink`` (and ``residual_shrink`` in R, ``pop_weight`` in L
and C) over the TOML grid.
Cost: one sparse product (cold users x items) @ (items x neighbours) per batch, then a top-k per row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.api import Budget, ColdBatch, TrainView
from methods.bias_transfer import Baseline, BiasTransfer
from methods.knn import (
    ClassicalMethod,
    binary,
    candidates_of,
    cold_matrix,
    grid,
    spmm_flops,
    top_k_rows,
)

__all__ = ["UserKNN"]


class UserKNN(ClassicalMethod):
    families = ("R", "L", "C")
    summary = "cross-domain user kNN: cosine over source (+ support) items, neighbours' target items"
    paper = (
        "Herlocker, Konstan, Borchers, Riedl. An Algorithmic Framework for Performing Collaborative "
        "Filtering. SIGIR 1999"
    )

    def fit(self, view: TrainView, budget: Budget) -> None:
        rows = self.read_targets(view)
        on_target = rows.domain == self.target
        users = np.unique(rows.user[on_target])  # neighbour candidates: training users with target rows
        position = np.full(view.n_users, -1)
        position[users] = np.arange(len(users))
        mine = position[rows.user] >= 0
        shape = (len(users), view.n_items)
        self.neighbours_t = binary(position[rows.user[mine]], rows.item[mine], shape).T.tocsr()
        self.norms = np.sqrt(np.asarray(self.neighbours_t.sum(axis=0)).ravel())
        t_rows = rows.where(on_target)
        t_shape = (len(users), len(self.target_items))
        self.interacted = binary(position[t_rows.user], self.column[t_rows.item], t_shape)
        self.baseline: Baseline | None = None
        keys: tuple[str, ...] = ("k", "shrink")
        if view.explicit:
            bias = BiasTransfer(self.config, self.seed)
            self.baseline = bias.fit_rows(view, rows)
            self.flops += bias.flops
            self.selected, self.trials = dict(bias.selected), bias.trials
            resid = self.baseline.target.residual(t_rows)
            self.residuals = sp.csr_matrix(
                (resid, (position[t_rows.user], self.column[t_rows.item])), t_shape
            )
            keys = (*keys, "residual_shrink")
        else:
            keys = (*keys, "pop_weight")
        self.cfg: dict[str, Any] = {}
        self.select(view, list(grid(self.config, keys)), lambda cfg: cfg)
        self.finish_fit(view)

    def use(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def weights(self, batch: ColdBatch) -> sp.csr_matrix:
        """Top-k shrunk cosine similarities, (batch position x neighbour candidate)."""
        query = cold_matrix(batch, self.n_items)
        dots = (query @ self.neighbours_t).toarray()
        q_norm = np.sqrt(np.asarray(query.sum(axis=1)).ravel())
        sims = dots / (q_norm[:, None] * self.norms[None, :] + self.cfg["shrink"] + 1e-12)
        w = top_k_rows(sims, int(self.cfg["k"]))
        self.flops += spmm_flops(query, self.neighbours_t) + 3.0 * sims.size + spmm_flops(w, self.interacted)
        return w

    def predict(self, batch: ColdBatch) -> np.ndarray:
        w = self.weights(batch)
        if self.baseline is not None:
            return self.predict_ratings(batch, w, self.baseline)
        cands = candidates_of(batch)
        scores = (w @ self.interacted).toarray()[:, self.column[cands]]
        return self.blend(scores, cands, float(self.cfg["pop_weight"]))

    def predict_ratings(self, batch: ColdBatch, w: sp.csr_matrix, baseline: Baseline) -> np.ndarray:
        if not batch.wants_ratings:
            raise ValueError("family R batches ask for ratings of query items")
        user, item = np.asarray(batch.query_user), np.asarray(batch.query_item)
        col = self.column[item]
        num = (w @ self.residuals).toarray()[user, col]
        den = (w @ self.interacted).toarray()[user, col]
        offset = num / (den + self.cfg["residual_shrink"])
        pred = baseline.base(item, baseline.cold_user_bias(batch)[user]) + offset
        return np.clip(pred, baseline.low, baseline.high)

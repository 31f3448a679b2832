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

Cold items (IR, IL): the neighbourhood turned around. A cold item's support users are its only raters; a
query user's similarity to each of them is the same shrunk cosine over both users' training items (every
domain, or the target only: ``vectors``). IR: the item baseline of ``methods.bias_transfer`` (``mu + b_u +
b_i``, ``b_i`` from the support) plus the support users' similarity-weighted residuals on the cold item,
``sum_v sim (r_vi - mu - b_v - b_i) / (sum_v sim + residual_shrink)``, clipped. IL: score = ``sum_v sim(u,
v)`` over the cold item's support users (``aggregate = "sum"``) or their largest similarity (``"max"``). A
cold item has no popularity of its own (K rows each), so the tie-break is the score of the average training
user (the mean user vector's cosine with each support user, summed); as a blend it ranked no better than
random on I-beauty, so it only breaks ties. Selected on validation cold items: ``vectors``, ``shrink`` and
``residual_shrink`` (IR, after the baseline's lambdas) or ``aggregate`` (IL).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.api import Budget, ColdBatch, ColdItemBatch, TrainView
from methods.bias_transfer import Baseline, BiasTransfer, ItemBaseline
from methods.knn import (
    TIE_BREAK,
    ClassicalMethod,
    binary,
    candidates_of,
    cold_items,
    cold_matrix,
    grid,
    item_query,
    spmm_flops,
    support_matrix,
    top_k_rows,
)

__all__ = ["UserKNN"]


class UserKNN(ClassicalMethod):
    families = ("R", "L", "C", "IR", "IL")
    summary = "cross-domain user kNN: cosine over source (+ support) items, neighbours' target items"
    paper = (
        "Herlocker, Konstan, Borchers, Riedl. An Algorithmic Framework for Performing Collaborative "
        "Filtering. SIGIR 1999"
    )

    def fit(self, view: TrainView, budget: Budget) -> None:
        if cold_items(view):
            self.fit_items(view)
            return
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

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if isinstance(batch, ColdItemBatch):
            return self.predict_items(batch)
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

    # -- cold items (IR, IL) ------------------------------------------------------------------------------
    def fit_items(self, view: TrainView) -> None:
        """Every user's binary training vector for each ``vectors`` choice; in IR the item baseline first."""
        rows = self.read_targets(view)
        self.vectors: dict[str, tuple[sp.csr_matrix, np.ndarray, np.ndarray]] = {}
        for name in dict.fromkeys(v for cfg in grid(self.config, ("vectors",)) for v in cfg.values()):
            if name not in ("all", "target"):
                raise ValueError(f"user-knn vectors = {name!r}: expected 'all' or 'target'")
            chosen = rows if name == "all" else rows.where(rows.domain == self.target)
            x = binary(chosen.user, chosen.item, (view.n_users, view.n_items))
            centroid = np.asarray(x.mean(axis=0)).ravel()
            self.vectors[name] = (
                x,
                np.sqrt(np.asarray(x.sum(axis=1)).ravel()),
                centroid / max(float(np.linalg.norm(centroid)), 1e-12),
            )
        self.item_baseline: ItemBaseline | None = None
        keys: tuple[str, ...] = ("vectors", "shrink")
        if view.explicit:
            bias = BiasTransfer(self.config, self.seed)
            self.item_baseline = bias.fit_item_rows(view, rows)
            self.flops += bias.flops
            self.selected, self.trials = dict(bias.selected), bias.trials
            keys = (*keys, "residual_shrink")
        else:
            keys = (*keys, "aggregate")
        self.cfg = {}
        self.select(view, list(grid(self.config, keys)), lambda cfg: cfg)
        self.finish_fit(view)

    def support_sims(self, batch: ColdItemBatch, users: np.ndarray) -> np.ndarray:
        """Shrunk cosine of each user (rows) with each support user (columns), over training vectors."""
        x, norms, _ = self.vectors[self.cfg["vectors"]]
        x_u, x_s = x[users], x[batch.support_users]
        denom = norms[users][:, None] * norms[batch.support_users][None, :] + float(self.cfg["shrink"])
        sims = (x_u @ x_s.T).toarray() / (denom + 1e-12)
        self.flops += spmm_flops(x_u, x_s.T) + 3.0 * sims.size
        return sims

    def predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        users, row, col = item_query(batch)
        sims = self.support_sims(batch, users)
        base = self.item_baseline
        if base is not None:
            if row is None or col is None:
                raise ValueError("family IR batches ask for ratings of query pairs")
            b_i = base.cold_item_bias(batch)
            s = batch.support
            resid = s.rating - base.mu - base.user[s.user] - b_i[batch.support_of()]
            num = sims @ support_matrix(batch, np.nan_to_num(resid))
            den = sims @ support_matrix(batch, np.isfinite(resid).astype(np.float64))
            offset = num[row, col] / (den[row, col] + float(self.cfg["residual_shrink"]))
            pred = base.base(np.asarray(batch.query_user), b_i[col]) + offset
            return np.clip(pred, base.low, base.high)
        held = support_matrix(batch)
        if self.cfg["aggregate"] == "max":
            scores = np.zeros((len(users), len(batch)))
            at, cols = np.searchsorted(batch.support_users, batch.support.user), batch.support_of()
            for j in np.unique(cols):  # K support users per cold item: a few columns each
                scores[:, j] = sims[:, at[cols == j]].max(axis=1)
        elif self.cfg["aggregate"] == "sum":
            scores = np.asarray(sims @ held)
        else:
            raise ValueError(f"user-knn aggregate = {self.cfg['aggregate']!r}: expected 'sum' or 'max'")
        # tie-break: the average training user's score (a user who shares nothing with any support user
        # gets that ranking, not a constant score, which ranks worst)
        x, norms, centroid = self.vectors[self.cfg["vectors"]]
        support = batch.support_users
        prior_s = np.asarray(x[support] @ centroid).ravel() / np.maximum(norms[support], 1e-12)
        prior = np.asarray(held.T @ prior_s).ravel()
        top = np.abs(scores).max(axis=1, keepdims=True, initial=0.0)
        scaled = np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)
        return scaled + TIE_BREAK * prior[None, :] / max(float(prior.max(initial=0.0)), 1e-12)

"""item-knn: cross-domain item-based top-N recommendation (source item -> target item similarities).

Deshpande, Karypis. "Item-Based Top-N Recommendation Algorithms." ACM TOIS 2004 (after Sarwar, Karypis,
Konstan, Riedl, "Item-Based Collaborative Filtering Recommendation Algorithms", WWW 2001).

Similarities are learned from training users with target-domain interactions (binary): ``C = X_src^T X_tgt``
counts co-occurrences of a source item and a target item, and ``S = C / (sqrt(n_i) sqrt(n_j) + shrink)`` is
their cosine with shrinkage (rare pairs seen once or twice are discounted). Target-target similarities
``T`` are built the same way (diagonal removed) for the support items at K>0. Each item keeps its ``k``
most similar target items (all if ``k`` <= 0), as in the paper's model. Score of a target item for a cold
user = the sum of its similarities to the user's source items and support items, blended with the item's
target-domain popularity (``pop_weight``, ``ClassicalMethod.blend``; a negligible share always breaks
ties, so a user whose items never co-occur gets the popularity ranking).
Why: the transfer signal is item co-occurrence across domains, with no user model at all; this is the
cheapest reading of "people who bought these also bought", and the natural foil for the user-based variant.
Selected on validation cold users: ``k``, ``shrink`` and ``pop_weight`` over the TOML grid.
Cost: two sparse Gram products at fit; one sparse product (cold users x items) @ (items x targets) per batch.

Cold items (IR, IL): a cold item has no training column, so its similarities come from its support users:
co-occurrence ``C[j, i]`` = how many of cold item i's support users have warm item j among their training
items (every domain, or the target only: ``items``), and ``S[j, i] = C / (sqrt(n_j) sqrt(K_i) + shrink)``,
each cold item keeping its ``k`` most similar items. IL: score of cold item i for query user u = the sum of
``S[j, i]`` over u's training items j (ties broken by the average training user's score). IR: the
bias-transfer item baseline (``mu + b_u + b_i``, ``b_i`` from the support) plus u's residuals on the
similar target items, ``sum_j S (r_uj - mu - b_u - b_j) / (sum_j S [u rated j] + residual_shrink)``, clipped
(item-based, as Koren 2010's neighbourhood model). Why: "the people who bought this new product also
bought", read with the query user's own items, the mirror of user-knn's item path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.api import Budget, ColdBatch, ColdItemBatch, TrainView
from methods.bias_transfer import BiasTransfer, ItemBaseline
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
    top_k_sparse,
)

__all__ = ["ItemKNN"]


class ItemKNN(ClassicalMethod):
    families = ("L", "C", "IR", "IL")
    summary = "cross-domain item kNN: cosine of source->target and target->target item co-occurrence"
    paper = "Deshpande, Karypis. Item-Based Top-N Recommendation Algorithms. ACM TOIS 2004"

    def fit(self, view: TrainView, budget: Budget) -> None:
        if cold_items(view):
            self.fit_items(view)
            return
        rows = self.read_targets(view)
        on_target = rows.domain == self.target
        users = np.unique(rows.user[on_target])  # co-occurrences need a user's target items
        position = np.full(view.n_users, -1)
        position[users] = np.arange(len(users))
        mine = position[rows.user] >= 0
        x_all = binary(position[rows.user[mine]], rows.item[mine], (len(users), view.n_items))
        x_t = x_all[:, self.target_items].tocsr()
        self.flops += spmm_flops(x_all.T, x_t)
        co = (x_all.T @ x_t).tocoo()  # (all items x target items): source rows and target rows at once
        keep = self.column[co.row] != co.col  # no target item is its own neighbour
        self.co = sp.coo_matrix((co.data[keep], (co.row[keep], co.col[keep])), shape=co.shape)
        self.counts = np.asarray(x_all.sum(axis=0)).ravel()
        configs = list(grid(self.config, ("k", "shrink", "pop_weight")))
        self.select(view, configs, lambda cfg: (self.build(cfg), float(cfg["pop_weight"])))
        self.finish_fit(view)

    def build(self, cfg: dict[str, Any]) -> sp.csr_matrix:
        """``S`` over every item (rows) and target item (columns), each row's top ``k`` kept."""
        co = self.co
        norm = np.sqrt(self.counts[co.row]) * np.sqrt(self.counts[self.target_items[co.col]])
        sims = sp.coo_matrix((co.data / (norm + cfg["shrink"]), (co.row, co.col)), shape=co.shape)
        self.flops += 3.0 * co.nnz
        return top_k_sparse(sims, int(cfg["k"]))

    def use(self, state: tuple[sp.csr_matrix, float] | dict[str, Any]) -> None:
        if isinstance(state, dict):  # a cold-item configuration (``fit_items``)
            self.cfg = state
            return
        self.sims, self.pop_weight = state

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if isinstance(batch, ColdItemBatch):
            return self.predict_items(batch)
        cands = candidates_of(batch)
        query = cold_matrix(batch, self.n_items)
        self.flops += spmm_flops(query, self.sims)
        scores = (query @ self.sims).toarray()[:, self.column[cands]]
        return self.blend(scores, cands, self.pop_weight)

    # -- cold items (IR, IL) ------------------------------------------------------------------------------
    def fit_items(self, view: TrainView) -> None:
        """Every user's binary training items for each ``items`` choice; in IR the item baseline (selected
        first) and the users' target residuals against it."""
        rows = self.read_targets(view)
        self.matrices: dict[str, tuple[sp.csr_matrix, np.ndarray, np.ndarray]] = {}
        for name in dict.fromkeys(v for cfg in grid(self.config, ("items",)) for v in cfg.values()):
            if name not in ("all", "target"):
                raise ValueError(f"item-knn items = {name!r}: expected 'all' or 'target'")
            chosen = rows if name == "all" else rows.where(rows.domain == self.target)
            x = binary(chosen.user, chosen.item, (view.n_users, view.n_items))
            self.matrices[name] = (x, np.asarray(x.sum(axis=0)).ravel(), np.asarray(x.mean(axis=0)).ravel())
        self.item_baseline: ItemBaseline | None = None
        keys: tuple[str, ...] = ("items", "k", "shrink")
        if view.explicit:
            bias = BiasTransfer(self.config, self.seed)
            base = self.item_baseline = bias.fit_item_rows(view, rows)
            self.flops += bias.flops
            self.selected, self.trials = dict(bias.selected), bias.trials
            t = rows.where((rows.domain == self.target) & np.isfinite(rows.rating))
            resid = t.rating - base.mu - base.user[t.user] - base.item[t.item]
            shape = (view.n_users, view.n_items)
            self.residuals = sp.csr_matrix((resid, (t.user, t.item)), shape=shape)
            self.rated = binary(t.user, t.item, shape)
            keys = (*keys, "residual_shrink")
        self.cfg: dict[str, Any] = {}
        self.select(view, list(grid(self.config, keys)), lambda cfg: cfg)
        self.finish_fit(view)

    def cold_sims(self, batch: ColdItemBatch) -> sp.csr_matrix:
        """``S`` transposed: (cold item position x item), each cold item's ``k`` most similar items."""
        x, counts, _ = self.matrices[self.cfg["items"]]
        held = support_matrix(batch)
        x_s = x[batch.support_users]
        co = (x_s.T @ held).tocoo()  # (item x cold item): support users who hold both
        n_i = np.asarray(held.sum(axis=0)).ravel()
        norm = np.sqrt(counts[co.row]) * np.sqrt(n_i[co.col]) + float(self.cfg["shrink"])
        sims = sp.coo_matrix((co.data / norm, (co.col, co.row)), shape=(len(batch), x.shape[1]))
        self.flops += spmm_flops(x_s.T, held) + 3.0 * co.nnz
        return top_k_sparse(sims, int(self.cfg["k"]))

    def predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        users, row, col = item_query(batch)
        sims_t = self.cold_sims(batch).T.tocsr()  # (item x cold item)
        base = self.item_baseline
        if base is not None:
            if row is None or col is None:
                raise ValueError("family IR batches ask for ratings of query pairs")
            r_u, h_u = self.residuals[users], self.rated[users]
            self.flops += spmm_flops(r_u, sims_t) + spmm_flops(h_u, sims_t)
            num = (r_u @ sims_t).toarray()[row, col]
            den = (h_u @ sims_t).toarray()[row, col]
            b_i = base.cold_item_bias(batch)
            pred = base.base(np.asarray(batch.query_user), b_i[col]) + num / (
                den + self.cfg["residual_shrink"]
            )
            return np.clip(pred, base.low, base.high)
        x, _, mean_user = self.matrices[self.cfg["items"]]
        x_u = x[users]
        self.flops += spmm_flops(x_u, sims_t)
        scores = (x_u @ sims_t).toarray()
        # tie-break: the average training user's score (a user sharing no item with the support users gets
        # that ranking rather than a constant score, which ranks worst)
        prior = np.asarray(sims_t.T @ mean_user).ravel()
        top = np.abs(scores).max(axis=1, keepdims=True, initial=0.0)
        scaled = np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)
        return scaled + TIE_BREAK * prior[None, :] / max(float(prior.max(initial=0.0)), 1e-12)

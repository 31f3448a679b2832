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
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from benchmark.api import Budget, ColdBatch, TrainView
from methods.knn import (
    ClassicalMethod,
    binary,
    candidates_of,
    cold_matrix,
    grid,
    spmm_flops,
    top_k_sparse,
)

__all__ = ["ItemKNN"]


class ItemKNN(ClassicalMethod):
    families = ("L", "C")
    summary = "cross-domain item kNN: cosine of source->target and target->target item co-occurrence"
    paper = "Deshpande, Karypis. Item-Based Top-N Recommendation Algorithms. ACM TOIS 2004"

    def fit(self, view: TrainView, budget: Budget) -> None:
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

    def use(self, state: tuple[sp.csr_matrix, float]) -> None:
        self.sims, self.pop_weight = state

    def predict(self, batch: ColdBatch) -> np.ndarray:
        cands = candidates_of(batch)
        query = cold_matrix(batch, self.n_items)
        self.flops += spmm_flops(query, self.sims)
        scores = (query @ self.sims).toarray()[:, self.column[cands]]
        return self.blend(scores, cands, self.pop_weight)

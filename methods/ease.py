"""ease: EASE^R, a closed-form linear item-item autoencoder over the joint source + target item space.

Steck. "Embarrassingly Shallow Autoencoders for Sparse Data." WWW 2019.

Fit: ``X`` is the binary (training user x item) matrix over the most popular items of both domains (a cap,
``target_share`` of it target items), ``P = (X^T X + lambda I)^-1`` and ``B = I - P diag(1/diag(P))``, so
``diag(B) = 0`` (no item predicts itself). Only the columns of ``B`` that are target items are kept.
Cold user: ``scores = x_u B`` restricted to target items, where ``x_u`` is their source history (plus
their support items at K>0), so source->target weights carry the transfer. Target items outside the cap
rank after every modelled item, by popularity. Why: EASE is a strong and simple linear baseline, and its
source->target block is a regression (not a co-occurrence count), so it explains away redundant source
items that a neighbourhood method double-counts.
Scores are blended with the target items' popularity (``pop_weight``, ``ClassicalMethod.blend``).
Selected on validation cold users: the cap, ``lambda`` and ``pop_weight`` over the TOML grid. The Gram
matrix is built once for the largest cap (smaller caps are its top-left blocks, popularity order being
nested), and each (cap, lambda) costs one Cholesky inverse of a dense cap x cap matrix (about cap^3 FLOPs),
in torch so that the pinned thread count holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark.api import Budget, ColdBatch, TrainView
from methods.knn import ClassicalMethod, binary, candidates_of, cold_matrix, grid, spmm_flops

__all__ = ["EASE"]


def by_popularity(items: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``items`` sorted by descending count, ties by index (a stable, deterministic order)."""
    return items[np.argsort(-counts[items], kind="stable")]


class EASE(ClassicalMethod):
    families = ("L", "C")
    summary = "EASE^R closed-form item autoencoder over source + target items; cold users' source -> target"
    paper = "Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019"

    def fit(self, view: TrainView, budget: Budget) -> None:
        rows = self.read_targets(view)
        x = binary(rows.user, rows.item, (view.n_users, view.n_items))
        counts = np.asarray(x.sum(axis=0)).ravel()
        source_items = np.flatnonzero(view.item_domain != self.target)
        self.ranked_target = by_popularity(self.target_items, counts)
        self.ranked_source = by_popularity(source_items, counts)
        configs = list(grid(self.config, ("cap", "lambda", "pop_weight")))
        largest = max(int(c["cap"]) for c in configs)
        self.order = self.chosen(largest)
        x_cap = x[:, self.order].tocsc()
        self.flops += spmm_flops(x_cap.T, x_cap)
        self.gram = torch.from_numpy((x_cap.T @ x_cap).toarray().astype(np.float32))
        self.solved: dict[tuple[int, float], tuple[np.ndarray, np.ndarray, torch.Tensor]] = {}
        self.select(view, configs, self.build)
        del self.gram, self.solved
        self.finish_fit(view)

    def chosen(self, cap: int) -> np.ndarray:
        """A cap's items: the top ``target_share`` of it from the target domain, the rest from the sources.

        Both counts grow with the cap, so a smaller cap's items are a subset of a larger cap's.
        """
        n_t = min(len(self.ranked_target), max(1, round(cap * float(self.config["target_share"]))))
        n_s = min(len(self.ranked_source), cap - n_t)
        n_t = min(len(self.ranked_target), cap - n_s)
        return np.concatenate([self.ranked_source[:n_s], self.ranked_target[:n_t]])

    def build(self, cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, torch.Tensor, float]:
        """(modelled items, their target columns, B restricted to those columns, pop_weight)."""
        key = (int(cfg["cap"]), float(cfg["lambda"]))
        if key not in self.solved:  # a grid over pop_weight alone costs no second inverse
            self.solved[key] = self.solve(*key)
        return (*self.solved[key], float(cfg["pop_weight"]))

    def solve(self, cap: int, lam: float) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """(modelled items, their target columns, B restricted to those columns) for one (cap, lambda)."""
        inside = np.isin(self.order, self.chosen(cap))
        items = self.order[inside]  # in the Gram's order, so the cap's Gram is a sub-block
        block = torch.from_numpy(np.flatnonzero(inside))
        gram = self.gram[block][:, block]  # a copy: the shared Gram stays untouched
        gram.diagonal().add_(lam)
        p = torch.cholesky_inverse(torch.linalg.cholesky(gram))
        self.flops += float(len(items)) ** 3
        cols = np.flatnonzero(np.isin(items, self.target_items))
        at = torch.from_numpy(cols)
        weights = -p[:, at] / p.diagonal()[at][None, :]
        weights[at, torch.arange(len(cols))] = 0.0  # diag(B) = 0
        return items, items[cols], weights

    def use(self, state: tuple[np.ndarray, np.ndarray, torch.Tensor, float]) -> None:
        self.items, self.modelled_targets, self.weights, self.pop_weight = state
        self.target_slot = np.full(self.n_items, -1)
        self.target_slot[self.modelled_targets] = np.arange(len(self.modelled_targets))

    def predict(self, batch: ColdBatch) -> np.ndarray:
        cands = candidates_of(batch)
        query = cold_matrix(batch, self.n_items)[:, self.items]
        dense = torch.from_numpy(query.toarray())
        self.flops += 2.0 * dense.numel() * self.weights.shape[1]
        modelled = (dense @ self.weights).double().numpy()
        # items outside the cap: below the user's lowest modelled score, ordered by popularity
        floor = modelled.min(axis=1, initial=0.0) - 1.0
        scores = np.repeat(floor[:, None], len(cands), axis=1)
        slot = self.target_slot[cands]
        inside = slot >= 0
        scores[:, inside] = modelled[:, slot[inside]]
        return self.blend(scores, cands, self.pop_weight)

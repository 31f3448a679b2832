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

Cold items (IL): a cold item has no training column, so ``B`` has none for it; its column is folded in the
way EASE fits every column. EASE's column of item j is the ridge regression of j's user column on the other
items, ``(X^T X + lambda I)^-1 X^T x_j = P X^T x_j`` up to the zero diagonal; a cold item's user column is
its support (1 for its K support users), which is not among the modelled items, so its weights are
``w = P X_S^T 1``: ``P`` times the sum of its support users' training rows. Score of a query user
``x_u w`` (ties broken by the average training user's score). ``w`` is one Cholesky solve of
``X^T X + lambda I`` (factored once per configuration) per set of cold items. Not for IR: EASE models
which items a user has, not ratings, so it has no rating to predict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from benchmark.api import Budget, ColdBatch, ColdItemBatch, TrainView
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
)

__all__ = ["EASE"]


def by_popularity(items: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``items`` sorted by descending count, ties by index (a stable, deterministic order)."""
    return items[np.argsort(-counts[items], kind="stable")]


@dataclass
class FoldIn:
    """A cold-item configuration (IL): the modelled items, their users' rows and ``P``'s factor."""

    items: np.ndarray
    x: sp.csr_matrix  # (user x modelled item) training matrix
    factor: torch.Tensor  # lower Cholesky factor of X^T X + lambda I over the modelled items


class EASE(ClassicalMethod):
    families = ("L", "C", "IL")
    summary = "EASE^R closed-form item autoencoder over source + target items; cold users' source -> target"
    paper = "Steck. Embarrassingly Shallow Autoencoders for Sparse Data. WWW 2019"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "IR": "EASE reconstructs which items a user has, not ratings: it has none to predict"
    }

    def fit(self, view: TrainView, budget: Budget) -> None:
        if cold_items(view):
            self.fit_items(view)
            return
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

    def chosen(self, cap: int, share: float | None = None) -> np.ndarray:
        """A cap's items: the top ``target_share`` of it from the target domain, the rest from the sources.

        Both counts grow with the cap, so a smaller cap's items are a subset of a larger cap's.
        """
        share = float(self.config["target_share"]) if share is None else share
        n_t = min(len(self.ranked_target), max(1, round(cap * share)))
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

    def use(self, state: tuple[np.ndarray, np.ndarray, torch.Tensor, float] | FoldIn) -> None:
        if isinstance(state, FoldIn):
            self.fold_in, self.cached = state, None
            return
        self.items, self.modelled_targets, self.weights, self.pop_weight = state
        self.target_slot = np.full(self.n_items, -1)
        self.target_slot[self.modelled_targets] = np.arange(len(self.modelled_targets))

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if isinstance(batch, ColdItemBatch):
            return self.predict_items(batch)
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

    # -- cold items (IL) ----------------------------------------------------------------------------------
    def fit_items(self, view: TrainView) -> None:
        """The Gram of the largest cap's items, then ``P`` of each (cap, lambda), selected on validation."""
        rows = self.read_targets(view)
        x = binary(rows.user, rows.item, (view.n_users, view.n_items))
        counts = np.asarray(x.sum(axis=0)).ravel()
        self.ranked_target = by_popularity(self.target_items, counts)
        self.ranked_source = by_popularity(np.flatnonzero(view.item_domain != self.target), counts)
        configs = list(grid(self.config, ("cap", "lambda", "target_share")))
        largest = max(int(c["cap"]) for c in configs)
        self.order = np.unique(
            np.concatenate([self.chosen(largest, float(c["target_share"])) for c in configs])
        )
        x_cap = x[:, self.order].tocsc()
        self.flops += spmm_flops(x_cap.T, x_cap)
        self.gram = torch.from_numpy((x_cap.T @ x_cap).toarray().astype(np.float32))
        self.x_order = x_cap.tocsr()
        self.select(view, configs, self.solve_items)
        del self.gram, self.x_order
        self.finish_fit(view)

    def solve_items(self, cfg: dict[str, Any]) -> FoldIn:
        """One configuration's modelled items (a cap of ``target_share``) and Cholesky factor."""
        inside = np.isin(self.order, self.chosen(int(cfg["cap"]), float(cfg["target_share"])))
        block = torch.from_numpy(np.flatnonzero(inside))
        gram = self.gram[block][:, block]
        gram.diagonal().add_(float(cfg["lambda"]))
        factor = torch.linalg.cholesky(gram)
        self.flops += float(len(block)) ** 3 / 3.0
        return FoldIn(self.order[inside], self.x_order[:, np.flatnonzero(inside)].tocsr(), factor)

    def fold_in_weights(self, batch: ColdItemBatch) -> tuple[np.ndarray, np.ndarray]:
        """(``w``: modelled item x cold item, the average user's scores) of the batch's cold items; the
        batches of one ranking share their cold items and support, so the last result is reused."""
        key = hashlib.sha256(
            b"".join(np.ascontiguousarray(a).tobytes() for a in (batch.items, batch.support.user))
            + batch.support.item.tobytes()
        ).hexdigest()
        if self.cached is not None and self.cached[0] == key:
            return self.cached[1], self.cached[2]
        f = self.fold_in
        x_s = f.x[batch.support_users]
        z = (x_s.T @ support_matrix(batch)).toarray().astype(np.float32)  # X_S^T 1, per cold item
        w = torch.cholesky_solve(torch.from_numpy(z), f.factor).double().numpy()  # P X_S^T 1
        prior = np.asarray(f.x.mean(axis=0)).ravel() @ w
        self.flops += spmm_flops(x_s.T, support_matrix(batch)) + 2.0 * f.factor.shape[0] ** 2 * w.shape[1]
        self.cached = (key, w, prior)
        return w, prior

    def predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        users, _, _ = item_query(batch)
        if batch.wants_ratings:
            raise ValueError("ease ranks cold items (family IL); the batch asks for ratings")
        w, prior = self.fold_in_weights(batch)
        x_u = self.fold_in.x[users]
        self.flops += 2.0 * x_u.nnz * w.shape[1]
        scores = np.asarray(x_u @ w)
        top = np.abs(scores).max(axis=1, keepdims=True, initial=0.0)
        scaled = np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)
        scale = max(float(np.abs(prior).max(initial=0.0)), 1e-12)
        return scaled + TIE_BREAK * prior[None, :] / scale

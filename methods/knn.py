"""Shared building blocks of the classical baselines (bias-transfer, user-knn, item-knn, ease).

* ``TrainRows``: every training interaction, read once per fit (one ``view.history`` call per domain, so the
  budget is charged once however many configurations a method tries).
* Sparse user x item matrices (``binary``, ``cold_matrix``) over the task's global indices: everything is a
  ``scipy.sparse`` product, with no Python loop over users or items.
* ``top_k_rows`` (dense input) / ``top_k_sparse``: keep each row's k largest entries, vectorized.
* ``grid`` / ``select``: hyper-parameter grids from the TOML (a scalar is a one-value grid, so ``--set k=50``
  pins a value) and selection on validation cold users (first best in grid order, hence deterministic).
* FLOP counting (``spmm_flops``) so that a method can declare what its matrix products cost.
* Cold items (families IR, IL): ``cold_items`` tells a view of those families apart, ``support_matrix``
  turns a ``ColdItemBatch``'s support into a (support user x cold item) matrix, ``item_query`` gives what a
  prediction is for (query users, and each IR pair's row and column).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from benchmark import protocols
from benchmark.api import ColdBatch, ColdItemBatch, Method, TrainView

__all__ = [
    "ClassicalMethod",
    "TrainRows",
    "binary",
    "candidates_of",
    "cold_items",
    "cold_matrix",
    "grid",
    "item_query",
    "read_rows",
    "spmm_flops",
    "support_matrix",
    "top_k_rows",
    "top_k_sparse",
]

TIE_BREAK = 1e-7  # popularity's weight in ranking scores: breaks ties only (a user without any signal)


@dataclass(frozen=True)
class TrainRows:
    """All training interactions, with each row's domain index (``view.domains``)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    domain: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def where(self, keep: np.ndarray) -> TrainRows:
        return TrainRows(self.user[keep], self.item[keep], self.rating[keep], self.domain[keep])


def read_rows(view: TrainView) -> TrainRows:
    """Every domain's training rows, one ``view.history`` call per domain."""
    parts = [(view.domain_index(d), view.history(d)) for d in view.domains]
    return TrainRows(
        np.concatenate([p.user for _, p in parts]),
        np.concatenate([p.item for _, p in parts]),
        np.concatenate([p.rating for _, p in parts]).astype(np.float64),
        np.concatenate([np.full(len(p), d, dtype=np.int64) for d, p in parts]),
    )


def binary(user: np.ndarray, item: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """0/1 CSR matrix with a one at each (user, item); repeated pairs count once."""
    m = sp.csr_matrix((np.ones(len(user), dtype=np.float32), (user, item)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def cold_matrix(batch: ColdBatch, n_items: int, support: bool = True) -> sp.csr_matrix:
    """Binary (batch position x item) matrix of the cold users' source history, plus their support."""
    user, item = batch.history.user, batch.history.item
    if support and len(batch.support):
        user = np.concatenate([user, batch.support.user])
        item = np.concatenate([item, batch.support.item])
    return binary(user, item, (len(batch), n_items))


def cold_items(view: TrainView) -> bool:
    """Whether the view's family holds out cold items (IR, IL) rather than cold users."""
    return protocols.get(view.family).cold == "items"


def support_matrix(batch: ColdItemBatch, values: np.ndarray | None = None) -> sp.csr_matrix:
    """(support user position x cold item position) matrix of the support: ``values`` per support row, or
    ones. A user who holds several support rows of one item (never in the tasks) would be summed."""
    rows = np.searchsorted(batch.support_users, batch.support.user)
    data = np.ones(len(rows)) if values is None else np.asarray(values, dtype=np.float64)
    shape = (len(batch.support_users), len(batch.items))
    return sp.csr_matrix((data, (rows, batch.support_of())), shape=shape)


def item_query(batch: ColdItemBatch) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The users a cold-item prediction is for (global, sorted) and, in IR, each query pair's row in them
    and its cold item's position in ``batch.items`` (None, None in IL)."""
    users = np.asarray(batch.users)
    if not batch.wants_ratings:
        return users, None, None
    row = np.searchsorted(users, batch.query_user)
    return users, row, np.searchsorted(batch.items, batch.query_item)


def candidates_of(batch: ColdBatch) -> np.ndarray:
    if batch.candidates is None:
        raise ValueError("this method scores candidates (families L, C); the batch asks for ratings")
    return np.asarray(batch.candidates)


def top_k_rows(dense: np.ndarray, k: int) -> sp.csr_matrix:
    """CSR copy of ``dense`` keeping each row's ``k`` largest positive entries (all positive if k <= 0).

    ``argpartition`` (linear time) picks them; its choice among ties at the boundary is a fixed function of
    the input, so the result is deterministic.
    """
    n_rows, n_cols = dense.shape
    if k <= 0 or k >= n_cols:
        kept = np.where(dense > 0, dense, 0)
        return sp.csr_matrix(kept)
    cols = np.argpartition(-dense, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(dense, cols, axis=1)
    rows = np.repeat(np.arange(n_rows), k)
    out = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=dense.shape)
    out.data[out.data < 0] = 0
    out.eliminate_zeros()
    return out


def top_k_sparse(m: sp.spmatrix, k: int) -> sp.csr_matrix:
    """Keep each row's ``k`` largest entries of a sparse matrix (all if k <= 0); ties broken by column."""
    coo = m.tocoo()
    if k <= 0:
        return coo.tocsr()
    order = np.lexsort((coo.col, -coo.data, coo.row))
    row = coo.row[order]
    keep = order[np.arange(len(order)) - np.searchsorted(row, row, side="left") < k]
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape)


def spmm_flops(a: sp.spmatrix, b: sp.spmatrix) -> float:
    """Multiply-adds of the sparse product ``a @ b``, times 2: sum over k of nnz(a[:, k]) * nnz(b[k, :])."""
    a_cols = np.diff(sp.csc_matrix(a).indptr)
    b_rows = np.diff(sp.csr_matrix(b).indptr)
    return 2.0 * float(np.dot(a_cols.astype(np.float64), b_rows.astype(np.float64)))


def grid(config: dict[str, Any], keys: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Every combination of the config's values for ``keys``, in TOML order (a scalar is a 1-value grid)."""
    values = [v if isinstance(v, list) else [v] for v in (config[key] for key in keys)]
    for combo in itertools.product(*values):
        yield dict(zip(keys, combo, strict=True))


class ClassicalMethod(Method):
    """A CPU method without gradients: selection on validation, declared FLOPs, a popularity tie-break.

    ``flops`` counts matrix products as they run; ``finish_fit`` freezes it as the cost of ``fit`` with its
    validation passes (predictions for test users come after), which ``train_flops()`` declares to the
    runner.
    """

    def __init__(self, config: dict[str, Any], seed: int, device: str = "cpu") -> None:
        super().__init__(config, seed, "cpu")  # sparse CPU algebra only; a GPU would not help
        self.flops = 0.0
        self.fit_flops = 0.0
        self.validation_score: float | None = None
        self.selected: dict[str, Any] = {}
        self.trials = 0  # configurations validated (a record's ``method.trials``)
        self.popularity = np.zeros(0)

    def select(
        self, view: TrainView, configs: list[dict[str, Any]], build: Callable[[dict[str, Any]], Any]
    ) -> None:
        """Build each configuration's state, ``use`` it and validate; keep the first best state."""
        best: tuple[float, dict[str, Any], Any] | None = None
        for cfg in configs:
            state = build(cfg)
            self.use(state)
            score = float(view.validate(self.predict))
            self.trials += 1
            if best is None or score > best[0]:
                best = (score, cfg, state)
        if best is None:
            raise ValueError("empty hyper-parameter grid")
        self.validation_score = best[0]
        self.selected = {**self.selected, **best[1]}
        self.use(best[2])

    def use(self, state: Any) -> None:
        """Make ``state`` (what ``build`` returned for one configuration) the one ``predict`` uses."""
        raise NotImplementedError

    def read_targets(self, view: TrainView) -> TrainRows:
        """Every training row (``read_rows``), after setting what each baseline's fit starts from: the item
        count, the target items and their columns (``column[item]``, -1 off target), and the target items'
        interaction counts scaled to [0, 1] (``popularity``, for ``blend``)."""
        rows = read_rows(view)
        self.n_items = view.n_items
        self.target = view.domain_index(view.target_domain)
        self.target_items = view.items_of(view.target_domain)
        self.column = np.full(view.n_items, -1)
        self.column[self.target_items] = np.arange(len(self.target_items))
        on_target = rows.item[rows.domain == self.target]
        counts = np.bincount(on_target, minlength=view.n_items).astype(np.float64)
        self.popularity = counts / max(counts.max(initial=0.0), 1.0)
        return rows

    def blend(self, scores: np.ndarray, cands: np.ndarray, weight: float) -> np.ndarray:
        """``(1 - weight) * scores / max|scores| + weight * popularity``, per cold user (row).

        Why: on sparse domains a neighbourhood's few co-occurrences are noisy, and the global popularity of
        a target item is a strong prior (issue 11's overlap-popularity heuristic won with it). Scaling each
        row by its largest magnitude makes ``weight`` mean the same for every method and user; weight 0
        keeps the method's own ranking. A ``TIE_BREAK`` share of popularity always breaks ties (a user with
        no signal gets the popularity ranking rather than a constant score, which ranks worst).
        """
        top = np.abs(scores).max(axis=1, keepdims=True, initial=0.0)
        scaled = np.divide(scores, top, out=np.zeros_like(scores, dtype=np.float64), where=top > 0)
        pop = self.popularity[cands][None, :]
        return (1.0 - weight) * scaled + (weight + TIE_BREAK) * pop

    def finish_fit(self, view: TrainView) -> None:
        self.fit_flops = self.flops

    def train_flops(self) -> float | None:
        return self.fit_flops

    def modules(self) -> list[torch.nn.Module]:
        return []

"""TGT: matrix factorization on the target domain only (the no-transfer reference of every CDR paper).

Model: biased MF (Koren, Bell and Volinsky, "Matrix Factorization Techniques for Recommender Systems", IEEE
Computer 2009) fitted with rating MSE in family R and BPR (Rendle et al., "BPR: Bayesian Personalized Ranking
from Implicit Feedback", UAI 2009) in families L and C, on target-domain training rows only.
Source-domain data: none; this is what transfer methods must beat.
K=0: a cold user gets the mean user vector (embedding and bias) of the warm target users, i.e. a
personalization-free, popularity-like ranking. K>0: that mean vector is fitted on the user's support with
at most ``batch.adapt_steps`` Adam steps (item parameters fixed).
Validation cold users select the number of epochs (early stopping, with their support withheld:
``validate_pretrain``, so the MF is trained once per task group) and the number of adaptation steps.

Cold items (IR, IL): the same MF on the training view (warm items, every user with target rows), then each
cold item is folded in from its K support rows by a closed-form ridge solve against its support users'
learned vectors (fixed): IR fits ``[q_i, b_i]`` to the residuals ``r - mu - b_u``; IL fits ``q_i`` so that
its support users score 1 (BPR has no closed form; ``fold_in_whiten`` > 0 also pushes every warm user's
score towards 0, the implicit-ALS fold-in, so that ``q_i`` points away from what all users share). A user
without target training rows has a zero vector. The ridge strength is chosen among ``fold_in_reg`` on
validation cold items with their support, in ``fit``. Epochs: IR early-stops on ``validate_pretrain`` (the
support withheld, a cold item predicts ``mu + b_u``); in IL a cold item without support has no vector, so
that score is the same for every epoch and the MF trains its ``epochs`` without selection.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.api import Budget, ColdBatch, ColdItemBatch, Interactions, TrainView
from benchmark.protocols import METHOD_DEFAULT_FAMILIES
from methods.mf import MF, ColdStartMF, fit_mf, ids

ITEM_FAMILIES = ("IR", "IL")


def fold_in_items(
    user_vec: torch.Tensor,
    support: Interactions,
    where: np.ndarray,
    n_items: int,
    explicit: bool,
    reg: float,
    offset: torch.Tensor | None = None,
    gram: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge fold-in of new items against fixed user vectors; returns ``(q, b)`` per item.

    ``user_vec``: ``(n_users, dim)`` learned user embeddings (zero rows for users the MF never trained);
    ``support``: the items' rows, ``user`` global, ``where`` each row's item position in ``0..n_items-1``.
    Explicit: ``[q_i, b_i] = argmin sum (r - offset_u - <p_u, q> - b)^2 + reg ||[q, b]||^2`` with
    ``offset_u = mu + b_u``. Implicit: ``q_i = argmin sum_S (1 - <p_u, q>)^2 + q^T gram q + reg ||q||^2``
    with ``gram`` the whitening term (``alpha * P^T P`` over warm users, or none), and ``b_i = 0``.
    Solved in float64 for all items at once; an item without support rows gets zeros.
    """
    dim = user_vec.shape[1]
    x = user_vec[ids(support.user, user_vec.device)].double()
    if explicit:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
        y = torch.as_tensor(support.rating, dtype=torch.float64, device=x.device)
        if offset is not None:
            y = y - offset[ids(support.user, x.device)].double()
    else:
        y = torch.ones(len(x), dtype=torch.float64, device=x.device)
    width = x.shape[1]
    index = ids(where, x.device)
    lhs = torch.zeros(n_items, width, width, dtype=torch.float64, device=x.device)
    lhs.index_add_(0, index, x[:, :, None] * x[:, None, :])
    rhs = torch.zeros(n_items, width, dtype=torch.float64, device=x.device)
    rhs.index_add_(0, index, x * y[:, None])
    lhs = lhs + reg * torch.eye(width, dtype=torch.float64, device=x.device)
    if gram is not None:
        lhs[:, :dim, :dim] += gram.double()
    sol = torch.linalg.solve(lhs, rhs)
    if explicit:
        return sol[:, :dim], sol[:, dim]
    return sol, torch.zeros(n_items, dtype=torch.float64, device=x.device)


class TargetMF(ColdStartMF):
    families = (*METHOD_DEFAULT_FAMILIES, *ITEM_FAMILIES)
    summary = "MF on the target domain only; cold users start at the mean user vector, adapted on the support"
    paper = (
        "Koren, Bell, Volinsky. Matrix Factorization Techniques for Recommender Systems. IEEE Computer 2009"
    )

    pretrained_tensors = ("warm",)

    def train(self, view: TrainView) -> None:
        c = self.config
        self.start_target(view)
        self.warm = ids(np.unique(view.history(view.target_domain).user), self.device)
        # IL: a cold item without support has no vector, so ``validate_pretrain`` is flat (see module doc)
        blind = view.family in ITEM_FAMILIES and not view.explicit
        sel = fit_mf(
            view,
            self.target,
            [view.target_domain],
            c,
            self.rng,
            c["epochs"],
            None if blind else self.predict,
            validator=view.validate_pretrain,
        )
        self.selected["epochs"] = sel.best_epoch

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        mean = self.target.user_vectors(self.warm).mean(0)
        return mean.expand(len(batch), -1).clone()

    # -- cold items (IR, IL) ---------------------------------------------------------------------------
    def fit(self, view: TrainView, budget: Budget) -> None:
        if view.family not in ITEM_FAMILIES:
            super().fit(view, budget)
            return
        if not self.pretrained:
            self.pretrain(view)
        self.setup(view)
        self.select_fold_in(view)

    def select_fold_in(self, view: TrainView) -> None:
        """The fold-in ridge strength among ``fold_in_reg``, on validation cold items with their support."""
        scores: dict[float, float] = {}
        for reg in self.config["fold_in_reg"]:
            self.selected["fold_in_reg"] = float(reg)
            scores[float(reg)] = view.validate(self.predict)
        best = max(scores, key=lambda r: scores[r])  # ties: the first listed
        self.selected["fold_in_reg"] = best
        self.validation_score = scores[best]

    def item_side(self) -> tuple[torch.Tensor, torch.Tensor]:
        """User embeddings and biases for cold-item scoring: zeros for users without target training rows."""
        model: MF = self.target
        keep = torch.zeros(model.user.num_embeddings, 1, device=self.device)
        keep[self.warm] = 1.0
        return model.user.weight * keep, model.user_bias.weight.squeeze(-1) * keep.squeeze(-1)

    @torch.no_grad()
    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if isinstance(batch, ColdItemBatch):
            return self.predict_items(batch)
        return super().predict(batch)

    @torch.no_grad()
    def predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        """Fold each cold item in from its support (closed form, no gradient step), then score."""
        model: MF = self.target
        user_vec, user_bias = self.item_side()
        mu = model.mu[model.item_domain[ids(batch.items[:1], self.device)]].double()
        reg = float(self.selected.get("fold_in_reg", self.config["fold_in_reg"][0]))
        gram = None
        whiten = float(self.config["fold_in_whiten"])
        if not self.explicit and whiten > 0:
            warm = user_vec[self.warm].double()
            gram = whiten * warm.T @ warm
        q, b = fold_in_items(
            user_vec,
            batch.support,
            batch.support_of(),
            len(batch),
            self.explicit,
            reg,
            offset=(user_bias.double() + mu) if model.bias else None,
            gram=gram,
        )
        if batch.wants_ratings:
            users = ids(batch.query_user, self.device)
            col = ids(np.searchsorted(batch.items, batch.query_item), self.device)
            pred = (user_vec[users].double() * q[col]).sum(-1) + b[col]
            if model.bias:
                pred = pred + user_bias[users].double() + mu
            pred = pred.float()
            if self.config["clamp"] and self.rating_range is not None:
                pred = pred.clamp(*self.rating_range)
            return pred.cpu().numpy().astype(np.float32)
        users = ids(batch.query_users, self.device)
        scores = user_vec[users].double() @ q.T + b
        return scores.cpu().numpy().astype(np.float32)

"""bias-transfer: the regularized baseline predictor with a cold user's offset carried over from the source.

Koren. "Factor in the Neighbors: Scalable and Accurate Collaborative Filtering." ACM TKDD 2010 (section 2.1,
baseline estimates ``b_ui = mu + b_u + b_i``).

Fit: on the target domain's training ratings, ``mu`` is the mean rating, then ``b_i`` and ``b_u`` take
alternating closed-form regularized updates, ``b_i = sum_u (r - mu - b_u) / (lambda_item + n_i)`` and
``b_u = sum_i (r - mu - b_i) / (lambda_user + n_u)``, ``iterations`` times (each update is a ``bincount``).
The source domains' ``mu_s`` (one per domain) and ``b_i^s`` are fitted the same way on source ratings.
Cold user: ``b_u = sum(residuals) / (lambda_cold + n)`` over their source ratings' residuals against
``mu_s + b_i^s`` (their rating habit: generous or harsh) and, at K>0, their support ratings' residuals
against the target's ``mu + b_i``. The prediction ``mu + b_i + b_u`` is clipped to the training rating range.
Why: this is "item mean + the user's shrunk source offset" done properly (shrunk item means, offsets
measured against item biases rather than raw means), the reference any rating-transfer model must beat.
Selected on validation cold users: ``lambda_item``, ``lambda_user`` and ``lambda_cold`` over the TOML grid.

Cold items (family IR): the same target biases, turned around. A query user's ``b_u`` is their fitted
target bias (their shrunk source-domain offset if they have no target rating); a cold item's ``b_i`` is
``sum(r - mu - b_u) / (lambda_cold + K)`` over its K support ratings, each residual taken against the
support user's own bias (a harsh rater's 3 says more than a generous rater's). The prediction
``mu + b_u + b_i`` is clipped to the rating range. Why: a new product's K ratings are the only evidence of
its quality, and the shrinkage keeps one rating from being taken at face value. Not for family IL: a bias
model predicts a rating level, and implicit data has no rating for it to model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from benchmark.api import Budget, ColdBatch, ColdItemBatch, TrainView
from methods.knn import ClassicalMethod, TrainRows, cold_items, grid, item_query, read_rows

__all__ = ["Baseline", "BiasTransfer", "Biases", "ItemBaseline", "fit_biases"]

GRID = ("lambda_item", "lambda_user", "lambda_cold")


@dataclass(frozen=True)
class Biases:
    """``mu`` per domain index, ``item`` per item, ``user`` per user (zero where no rating was seen)."""

    mu: np.ndarray
    item: np.ndarray
    user: np.ndarray

    def residual(self, rows: TrainRows) -> np.ndarray:
        """``r - mu_d - b_i - b_u`` of training rows."""
        return rows.rating - self.mu[rows.domain] - self.item[rows.item] - self.user[rows.user]


def fit_biases(
    rows: TrainRows,
    shape: tuple[int, int, int],
    lambda_item: float,
    lambda_user: float,
    iterations: int,
) -> Biases:
    """Alternating regularized least squares of ``r - mu_d = b_i + b_u``; shape = (users, items, domains)."""
    n_users, n_items, n_domains = shape
    count_d = np.bincount(rows.domain, minlength=n_domains)
    mu = np.bincount(rows.domain, rows.rating, minlength=n_domains) / np.maximum(count_d, 1)
    base = rows.rating - mu[rows.domain]
    n_i = np.bincount(rows.item, minlength=n_items)
    n_u = np.bincount(rows.user, minlength=n_users)
    b_u = np.zeros(n_users)
    b_i = np.zeros(n_items)
    for _ in range(iterations):
        b_i = np.bincount(rows.item, base - b_u[rows.user], minlength=n_items) / (lambda_item + n_i)
        b_u = np.bincount(rows.user, base - b_i[rows.item], minlength=n_users) / (lambda_user + n_u)
    return Biases(mu, b_i, b_u)


@dataclass(frozen=True)
class Baseline:
    """The fitted target and source biases; ``rating`` gives ``mu + b_i + b_u`` for cold users."""

    target_domain: int
    item_domain: np.ndarray
    target: Biases
    source: Biases
    lambda_cold: float
    low: float
    high: float

    def cold_user_bias(self, batch: ColdBatch) -> np.ndarray:
        """Shrunk mean residual of each cold user's source ratings (and support ratings), per position."""
        h, s = batch.history, batch.support
        h_ok, s_ok = np.isfinite(h.rating), np.isfinite(s.rating)
        src = self.source
        # history items belong to source domains: each item's domain mu is the one it was fitted with
        h_resid = h.rating[h_ok] - src.mu[self.item_domain[h.item[h_ok]]] - src.item[h.item[h_ok]]
        s_resid = s.rating[s_ok] - self.target.mu[self.target_domain] - self.target.item[s.item[s_ok]]
        user = np.concatenate([h.user[h_ok], s.user[s_ok]])
        resid = np.concatenate([h_resid, s_resid])
        n = np.bincount(user, minlength=len(batch))
        return np.bincount(user, resid, minlength=len(batch)) / (self.lambda_cold + n)

    def base(self, items: np.ndarray, user_bias: np.ndarray) -> np.ndarray:
        """Unclipped ``mu + b_i + b_u`` for target ``items`` and aligned user biases."""
        return self.target.mu[self.target_domain] + self.target.item[items] + user_bias

    def rating(self, batch: ColdBatch) -> np.ndarray:
        if not batch.wants_ratings:
            raise ValueError("this method predicts ratings (family R); the batch asks for candidate scores")
        b_u = self.cold_user_bias(batch)
        pred = self.base(np.asarray(batch.query_item), b_u[batch.query_user])
        return np.clip(pred, self.low, self.high)


@dataclass(frozen=True)
class ItemBaseline:
    """The target biases for cold items (IR): ``mu + b_u + b_i`` with ``b_i`` from a cold item's support.

    ``user``: each user's ``b_u``, the fitted target bias, or the source-domain offset of a user without
    target ratings (zero for a user with no rating at all); ``item``: the warm items' target ``b_i``."""

    mu: float
    user: np.ndarray
    item: np.ndarray
    lambda_cold: float
    low: float
    high: float

    def cold_item_bias(self, batch: ColdItemBatch) -> np.ndarray:
        """Shrunk mean residual ``r - mu - b_v`` of each cold item's support ratings, per item position."""
        s = batch.support
        ok = np.flatnonzero(np.isfinite(s.rating))
        resid = s.rating[ok] - self.mu - self.user[s.user[ok]]
        where = batch.support_of(ok)
        n = np.bincount(where, minlength=len(batch))
        return np.bincount(where, resid, minlength=len(batch)) / (self.lambda_cold + n)

    def base(self, users: np.ndarray, item_bias: np.ndarray) -> np.ndarray:
        """Unclipped ``mu + b_u + b_i`` for global ``users`` and aligned cold-item biases."""
        return self.mu + self.user[users] + item_bias

    def rating(self, batch: ColdItemBatch) -> np.ndarray:
        if not batch.wants_ratings:
            raise ValueError("this method predicts ratings (family IR); the batch asks for a ranking")
        _, _, col = item_query(batch)
        pred = self.base(np.asarray(batch.query_user), self.cold_item_bias(batch)[col])
        return np.clip(pred, self.low, self.high)


def make_item_baseline(
    view: TrainView, rows: TrainRows, biases: tuple[Biases, Biases], lambda_cold: float
) -> ItemBaseline:
    target, source = biases
    d = view.domain_index(view.target_domain)
    on_target = (rows.domain == d) & np.isfinite(rows.rating)
    ratings = rows.rating[on_target]
    rated = np.bincount(rows.user[on_target], minlength=view.n_users) > 0
    user = np.where(rated, target.user, source.user)
    low, high = float(ratings.min()), float(ratings.max())
    return ItemBaseline(float(target.mu[d]), user, target.item, float(lambda_cold), low, high)


def fit_baselines(
    view: TrainView, rows: TrainRows, config: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[tuple[float, float], tuple[Biases, Biases]]]:
    """The grid of ``GRID`` configurations and the target/source biases of each (lambda_item, lambda_user)."""
    rated = rows.where(np.isfinite(rows.rating))
    target = view.domain_index(view.target_domain)
    on_target = rated.domain == target
    if not on_target.any():
        raise ValueError(f"task {view.task_id}: no ratings in target domain {view.target_domain!r}")
    shape = (view.n_users, view.n_items, len(view.domains))
    configs = list(grid(config, GRID))
    fitted: dict[tuple[float, float], tuple[Biases, Biases]] = {}
    for cfg in configs:
        key = (cfg["lambda_item"], cfg["lambda_user"])
        if key not in fitted:
            args = (shape, *key, int(config["iterations"]))
            fitted[key] = (
                fit_biases(rated.where(on_target), *args),
                fit_biases(rated.where(~on_target), *args),
            )
    return configs, fitted


def make_baseline(
    view: TrainView, rows: TrainRows, biases: tuple[Biases, Biases], lambda_cold: float
) -> Baseline:
    target = view.domain_index(view.target_domain)
    ratings = rows.rating[(rows.domain == target) & np.isfinite(rows.rating)]
    low, high = float(ratings.min()), float(ratings.max())
    return Baseline(target, view.item_domain, *biases, float(lambda_cold), low, high)


class BiasTransfer(ClassicalMethod):
    families = ("R", "IR")
    summary = "mu + b_i + b_u; a cold user's b_u is their shrunk source-domain rating offset (+ support)"
    paper = "Koren. Factor in the Neighbors: Scalable and Accurate Collaborative Filtering. ACM TKDD 2010"
    not_applicable: ClassVar[Mapping[str, str]] = {
        "IL": "a rating-bias model: implicit interactions carry no rating level to model"
    }

    def fit(self, view: TrainView, budget: Budget) -> None:
        rows = read_rows(view)
        if cold_items(view):
            self.fit_item_rows(view, rows)
        else:
            self.fit_rows(view, rows)
        self.finish_fit(view)

    def fit_rows(self, view: TrainView, rows: TrainRows) -> Baseline:
        """Fit and select the baseline on ``rows`` (shared with user-knn, which builds on it)."""
        configs, fitted = fit_baselines(view, rows, self.config)
        self.flops += 8.0 * len(rows) * int(self.config["iterations"]) * len(fitted)

        def build(cfg: dict[str, Any]) -> Baseline:
            biases = fitted[(cfg["lambda_item"], cfg["lambda_user"])]
            return make_baseline(view, rows, biases, cfg["lambda_cold"])

        self.select(view, configs, build)
        return self.baseline

    def fit_item_rows(self, view: TrainView, rows: TrainRows) -> ItemBaseline:
        """``fit_rows`` for cold items (IR): the same biases, a cold item's ``b_i`` from its support."""
        configs, fitted = fit_baselines(view, rows, self.config)
        self.flops += 8.0 * len(rows) * int(self.config["iterations"]) * len(fitted)

        def build(cfg: dict[str, Any]) -> ItemBaseline:
            biases = fitted[(cfg["lambda_item"], cfg["lambda_user"])]
            return make_item_baseline(view, rows, biases, cfg["lambda_cold"])

        self.select(view, configs, build)
        return self.baseline

    def use(self, state: Baseline | ItemBaseline) -> None:
        self.baseline = state

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        return self.baseline.rating(batch)

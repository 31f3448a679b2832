"""Classical baselines (bias-transfer, user-knn, item-knn, ease): closed forms, transfer on planted tastes.

The planted task: users belong to one of four taste groups, each group owning a block of items in every
domain; a user interacts mostly with their group's block in each domain, and in family R rates with a
personal offset (generous or harsh) shared across domains. Popularity and item means cannot see either, so
every baseline must beat the floor of its family by a clear margin.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from benchmark import harness
from benchmark.api import ColdBatch, Interactions, TrainView
from benchmark.registry import load_method
from benchmark.seeding import seed_everything
from methods.bias_transfer import fit_biases
from methods.knn import TrainRows, top_k_rows, top_k_sparse
from tasks.schema import canonical
from tasks.split import split_leave_one_domain_out, split_published, split_rating_transfer
from tests.tiny_tasks import _encode, _spec

BASELINES = {"R": ("bias-transfer", "user-knn"), "L": ("user-knn", "item-knn", "ease")}
BASELINES["C"] = BASELINES["L"]
FLOOR = {"R": "item-mean", "L": "popularity", "C": "popularity"}
GROUPS = 4


def planted(domains: tuple[str, ...], explicit: bool, n_users: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = np.arange(n_users) % GROUPS
    generosity = rng.choice([-1.0, 1.0], size=n_users)
    frames = []
    for domain in domains:
        n_items, per_user = 48, 10
        # each user: items of their group's block (item % GROUPS == group) with probability 0.85
        keys = rng.random((n_users, n_items)) + 0.85 * (
            np.arange(n_items)[None, :] % GROUPS == group[:, None]
        )
        chosen = np.argsort(-keys, axis=1)[:, :per_user]
        user, item = np.repeat(np.arange(n_users), per_user), chosen.ravel()
        liked = item % GROUPS == group[user]
        noise = rng.normal(scale=0.3, size=len(user))
        rating = np.clip(np.round(3.2 + generosity[user] + 0.6 * liked + noise), 1, 5)
        frames.append(
            pd.DataFrame(
                {
                    "domain": domain,
                    "user": [f"U{u:03d}" for u in user],
                    "item": [f"{domain}-{i:03d}" for i in item],
                    "rating": rating if explicit else np.nan,
                    "ts": rng.integers(1_000_000, 2_000_000, size=len(user)),
                }
            )
        )
    return canonical(pd.concat(frames, ignore_index=True))


@functools.cache
def planted_task(family: str) -> harness.EncodedTask:
    if family == "R":
        metrics = ("mae", "rmse", "user_mae", "user_rmse")
        spec = _spec("R", ("A",), "B", 3, metrics, beta=0.3, valid_fraction=0.2, filters={"pool": 5})
        return _encode(spec, split_rating_transfer(planted(("A", "B"), explicit=True), spec))
    metrics = ("ndcg@10", "hr@10", "recall@10", "mrr")
    if family == "L":
        filters = {"min_target": 6, "min_other": 1}
        spec = _spec("L", ("A", "B"), "C", 1, metrics, beta=0.3, valid_fraction=0.2, filters=filters)
        return _encode(spec, split_leave_one_domain_out(planted(("A", "B", "C"), explicit=False), spec))
    spec = _spec("C", ("A",), "B", 0, metrics)
    table = planted(("A", "B"), explicit=False)
    target, source = table[table["domain"] == "B"], table[table["domain"] == "A"]
    users = np.sort(target["user"].unique())
    cold = np.isin(target["user"].to_numpy(dtype=object), users[-len(users) // 4 :])
    coin = np.random.default_rng(3).random(len(target)) < 0.5
    parts = {"train": target[~cold], "valid": target[cold & coin], "test": target[cold & ~coin]}
    return _encode(spec, split_published(parts, {"train": source}, spec))


def evaluate(name: str, family: str) -> tuple[float, Any, TrainView]:
    """The test score of ``name`` on the planted task (user MAE in R, NDCG@10 in L, C), method and view."""
    enc = planted_task(family)
    cls = load_method(name)
    seed_everything(0, 1)
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    view = harness.make_view(enc, budget, deadline=float("inf"))
    method = cls(cls.default_config(family), 0, "cpu")
    method.fit(view, budget)
    result = harness.evaluate(enc, view, method.predict, "support", "query", budget.adapt_steps)
    return result.pooled["user_mae" if family == "R" else "ndcg@10"], method, view


@pytest.mark.parametrize(
    ("name", "family"),
    [pytest.param(n, f, id=f"{n}-{f}") for f, names in BASELINES.items() for n in names],
)
def test_each_baseline_beats_its_floor_on_planted_cross_domain_tastes(name: str, family: str) -> None:
    floor, *_ = evaluate(FLOOR[family], family)
    score, method, view = evaluate(name, family)
    if family == "R":
        assert score < floor - 0.2, (score, floor)
    else:
        assert score > floor + 0.1, (score, floor)
    assert view.examples_used == view.n_train  # each domain read once, whatever the grid size
    assert method.selected and method.validation_score is not None
    flops = method.train_flops()
    assert flops is not None and flops > 0 and method.train_flops_estimate(view.examples_used) == flops


def rows_of(user, item, rating, domain) -> TrainRows:
    return TrainRows(*(np.asarray(v) for v in (user, item, rating, domain)))


def test_fit_biases_matches_the_closed_form_of_one_alternating_step() -> None:
    # one domain, two users, two items: mu = 3; b_i = sum(r - mu) / (lam_i + n_i) with b_u = 0 first
    rows = rows_of([0, 0, 1], [0, 1, 0], [5.0, 3.0, 1.0], [0, 0, 0])
    b = fit_biases(rows, (2, 2, 1), lambda_item=1.0, lambda_user=2.0, iterations=1)
    assert b.mu.tolist() == [3.0]
    np.testing.assert_allclose(b.item, [(2 - 2) / 3, 0 / 2])
    np.testing.assert_allclose(b.user, [(2 + 0) / 4, -2 / 3])
    many = fit_biases(rows, (2, 2, 1), lambda_item=0.0, lambda_user=0.0, iterations=50)
    fitted = many.mu[0] + many.item[rows.item] + many.user[rows.user]
    np.testing.assert_allclose(fitted, rows.rating, atol=1e-6)  # unregularized: exact on 3 ratings


def test_a_cold_users_offset_is_the_shrunk_mean_residual_of_source_and_support() -> None:
    enc = planted_task("R")
    view = harness.make_view(enc, harness.budget_of(enc.spec, 10**6), deadline=float("inf"))
    config = {"iterations": 3, "lambda_item": 1.0, "lambda_user": 1.0, "lambda_cold": 4.0}
    method = load_method("bias-transfer")(config, 0)
    method.fit(view, view.budget)
    base = method.baseline
    src, tgt = view.items_of("A")[:2], view.items_of("B")[:1]

    def one(items: np.ndarray, ratings: list[float]) -> Interactions:
        n = len(items)
        return Interactions(np.zeros(n, dtype=np.int64), items, np.array(ratings), np.full(n, -1))

    batch = ColdBatch(np.array([0]), one(tgt, [5.0]), one(src, [4.0, 2.0]), np.array([0]), tgt)
    d_a = view.domain_index("A")
    resid = [4.0 - base.source.mu[d_a] - base.source.item[src[0]], 2.0 - base.source.mu[d_a]]
    resid[1] -= base.source.item[src[1]]
    resid.append(5.0 - base.target.mu[base.target_domain] - base.target.item[tgt[0]])
    np.testing.assert_allclose(base.cold_user_bias(batch), [sum(resid) / (4.0 + 3)])
    expected = base.target.mu[base.target_domain] + base.target.item[tgt[0]] + sum(resid) / 7
    np.testing.assert_allclose(method.predict(batch), np.clip(expected, base.low, base.high))


def test_top_k_keeps_the_largest_positive_entries_per_row() -> None:
    dense = np.array([[0.1, 0.5, 0.0, 0.3], [0.0, 0.0, 0.2, -1.0]])
    assert top_k_rows(dense, 2).toarray().tolist() == [[0, 0.5, 0, 0.3], [0, 0, 0.2, 0]]
    assert top_k_rows(dense, 0).toarray().tolist() == [[0.1, 0.5, 0, 0.3], [0, 0, 0.2, 0]]
    kept = top_k_sparse(sp.csr_matrix(dense), 1).toarray()
    assert kept.tolist() == [[0, 0.5, 0, 0], [0, 0, 0.2, 0]]


def test_ease_weights_are_the_closed_form_with_a_zero_diagonal() -> None:
    enc = planted_task("L")
    view = harness.make_view(enc, harness.budget_of(enc.spec, 10**6), deadline=float("inf"))
    method = load_method("ease")({"cap": 40, "lambda": 5.0, "target_share": 0.5, "pop_weight": 0.0}, 0)
    method.fit(view, view.budget)
    train = enc.tables["train"].rows
    x = sp.csr_matrix((np.ones(len(train)), (train.user, train.item)), shape=(len(enc.users), len(enc.items)))
    x = (x[:, method.items] > 0).astype(np.float64).toarray()
    p = np.linalg.inv(x.T @ x + 5.0 * np.eye(len(method.items)))
    b = np.eye(len(p)) - p / np.diag(p)[None, :]
    cols = np.flatnonzero(np.isin(method.items, view.items_of("C")))
    np.testing.assert_allclose(method.weights.numpy(), b[:, cols], atol=1e-4)
    assert (method.weights.numpy()[cols, np.arange(len(cols))] == 0).all()
    assert len(method.items) == 40 and len(cols) == 20


def test_blend_scales_each_user_and_mixes_in_popularity() -> None:
    """Hand-computed: a row is divided by its largest magnitude, then mixed with popularity."""
    from methods.knn import TIE_BREAK, ClassicalMethod

    method = ClassicalMethod({}, 0)
    method.popularity = np.array([1.0, 0.5, 0.0, 0.25])
    cands = np.array([0, 1, 2])
    scores = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    out = method.blend(scores, cands, 0.5)
    expected_first = 0.5 * np.array([1.0, 0.0, -0.5]) + (0.5 + TIE_BREAK) * np.array([1.0, 0.5, 0.0])
    np.testing.assert_allclose(out[0], expected_first)
    # a user with no signal gets the popularity ranking, not a constant score
    assert list(np.argsort(-out[1])) == [0, 1, 2]
    # weight 0 keeps the method's own order
    assert list(np.argsort(-method.blend(scores, cands, 0.0)[0])) == [0, 1, 2]

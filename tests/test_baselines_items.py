"""Classical baselines on cold items (families IR, IL): hand-computed item paths, then the real data.

A tiny two-domain training view (Books items 0, 1; Movies items 2..6, of which 5 and 6 are cold and never
trained on) and a hand-built ``ColdItemBatch``: every expected value below is written out from the
methods' formulas (``methods/bias_transfer.py``, ``user_knn.py``, ``item_knn.py``, ``ease.py``). The view's
validator returns a constant, so a one-value configuration is what ``fit`` selects. The real-data checks
(each method beats the family's floor on I-movies-k5 / I-beauty-k5) skip when the data root is absent.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark import harness, runner
from benchmark.api import Budget, ColdItemBatch, Interactions, TrainView
from benchmark.registry import load_method
from tasks import artifact
from tasks.spec import all_specs

BUDGET = Budget(train_examples=1000, adapt_steps=0, wall_seconds=60.0)
ITEM_DOMAIN = np.array([0, 0, 1, 1, 1, 1, 1])  # Books 0, 1; Movies 2..6 (5, 6: cold items)
# (user, item, rating). Users' item sets (all domains): 0 {0, 2, 3}, 1 {2, 4}, 2 {1, 2}, 3 {0, 1}
ROWS = [(0, 0, 5.0), (0, 2, 4.0), (0, 3, 2.0), (1, 2, 5.0), (1, 4, 3.0), (2, 1, 1.0), (2, 2, 3.0)]
ROWS += [(3, 0, 5.0), (3, 1, 2.0)]  # user 3 has no Movies rating: their b_u is their Books offset
BIAS = {"iterations": 1, "lambda_item": 1.0, "lambda_user": 1.0, "lambda_cold": 2.0}


def rows(values: list[tuple[int, int, float]], explicit: bool = True) -> Interactions:
    user = np.array([v[0] for v in values], dtype=np.int64)
    item = np.array([v[1] for v in values], dtype=np.int64)
    rating = np.array([v[2] for v in values], dtype=np.float64) if explicit else np.full(len(values), np.nan)
    return Interactions(user, item, rating, np.arange(len(values), dtype=np.int64))


def make_view(family: str) -> TrainView:
    explicit = family == "IR"
    train = rows(ROWS, explicit)
    return TrainView(
        task_id=f"tiny-{family}",
        family=family,
        domains=("Books", "Movies"),
        source_domains=("Books",),
        target_domain="Movies",
        explicit=explicit,
        n_users=5,  # user 4 has no training row
        item_domain=ITEM_DOMAIN,
        train=train,
        train_domain=ITEM_DOMAIN[train.item],
        budget=BUDGET,
        validator=lambda predict: 0.0,
        deadline=time.monotonic() + 60,
    )


def item_batch(support: list[tuple[int, int, float]], explicit: bool, **query: np.ndarray) -> ColdItemBatch:
    s = rows(sorted(support, key=lambda r: (r[1], r[0])), explicit)
    return ColdItemBatch(
        items=np.unique(s.item),
        support=s,
        support_users=np.unique(s.user),
        history=rows([]),
        **query,
    )


def fitted(name: str, family: str, config: dict[str, Any]):
    method = load_method(name)(config, 0)
    method.fit(make_view(family), BUDGET)
    return method


# -- the target biases of the tiny view, by hand (mu = 17/5, one alternating step, lambdas 1) ------------
MU = 17 / 5
B_ITEM = {2: (0.6 + 1.6 - 0.4) / 4, 3: -1.4 / 2, 4: -0.4 / 2}
B_USER = {
    0: ((4 - MU - B_ITEM[2]) + (2 - MU - B_ITEM[3])) / 3,
    1: ((5 - MU - B_ITEM[2]) + (3 - MU - B_ITEM[4])) / 3,
    2: (3 - MU - B_ITEM[2]) / 2,
}
# user 3 (Books only): Books mu 13/4, b_0 = (1.75 + 1.75) / 3, b_1 = (-2.25 - 1.25) / 3, then their offset
_MU_S, _B0, _B1 = 13 / 4, 3.5 / 3, -3.5 / 3
B_USER[3] = ((5 - _MU_S - _B0) + (2 - _MU_S - _B1)) / 3
# cold item 5: rated 5 by user 0 and 2 by user 1; its bias shrunk by lambda_cold = 2
B_COLD = ((5 - MU - B_USER[0]) + (2 - MU - B_USER[1])) / (2 + 2)
IR_SUPPORT = [(0, 5, 5.0), (1, 5, 2.0)]
IR_QUERY = {"query_user": np.array([2, 3]), "query_item": np.array([5, 5])}


def test_bias_transfer_cold_item_bias_is_the_shrunk_support_residual() -> None:
    method = fitted("bias-transfer", "IR", BIAS)
    base = method.baseline
    assert base.mu == pytest.approx(MU)
    np.testing.assert_allclose(base.user, [B_USER[u] for u in range(4)] + [0.0])
    batch = item_batch(IR_SUPPORT, True, **IR_QUERY)
    np.testing.assert_allclose(base.cold_item_bias(batch), [B_COLD])
    expected = np.clip([MU + B_USER[2] + B_COLD, MU + B_USER[3] + B_COLD], 2.0, 5.0)
    np.testing.assert_allclose(method.predict(batch), expected)
    assert "IL" in method.not_applicable and "IR" in method.families


def test_user_knn_cold_item_rating_adds_the_support_users_weighted_residuals() -> None:
    config = {**BIAS, "k": 0, "vectors": "all", "shrink": 0.0, "residual_shrink": 1.0}
    method = fitted("user-knn", "IR", config)
    res = {0: 5 - MU - B_USER[0] - B_COLD, 1: 2 - MU - B_USER[1] - B_COLD}
    # cosines over all items: user 2 {1, 2} shares item 2 with user 0 {0, 2, 3} and user 1 {2, 4};
    # user 3 {0, 1} shares item 0 with user 0 only
    s20, s21, s30 = 1 / math.sqrt(6), 1 / 2, 1 / math.sqrt(6)
    off2 = (s20 * res[0] + s21 * res[1]) / (s20 + s21 + 1.0)
    off3 = s30 * res[0] / (s30 + 1.0)
    expected = np.clip([MU + B_USER[2] + B_COLD + off2, MU + B_USER[3] + B_COLD + off3], 2.0, 5.0)
    np.testing.assert_allclose(method.predict(item_batch(IR_SUPPORT, True, **IR_QUERY)), expected)


IL_SUPPORT = [(0, 5, np.nan), (1, 6, np.nan), (3, 6, np.nan)]  # item 5: user 0; item 6: users 1 and 3
IL_QUERY = {"query_users": np.array([2, 3])}


@pytest.mark.parametrize("aggregate", ["sum", "max"])
def test_user_knn_cold_item_ranking_sums_the_similarities_to_its_support_users(aggregate: str) -> None:
    config = {"k": 0, "vectors": "all", "shrink": 0.0, "aggregate": aggregate}
    method = fitted("user-knn", "IL", config)
    out = method.predict(item_batch(IL_SUPPORT, False, **IL_QUERY))
    assert out.shape == (2, 2) and np.isfinite(out).all()
    # user 2: cos with user 0 = 1/sqrt(6) (item 5); with user 1 = 1/2, with user 3 = 1/2 (item 6)
    s5, s6 = 1 / math.sqrt(6), (1 / 2 + 1 / 2) if aggregate == "sum" else 1 / 2
    np.testing.assert_allclose(out[0], [s5 / max(s5, s6), s6 / max(s5, s6)], atol=1e-6)
    # user 3 {0, 1}: cos with user 0 = 1/sqrt(6); with user 1 = 0; user 3 is item 6's own support user
    # (the harness leaves that item out of user 3's ranking), and a user is similar to themself
    s6_3 = 0.0 + 1.0 if aggregate == "sum" else 1.0
    np.testing.assert_allclose(out[1], [s5 / s6_3, 1.0], atol=1e-6)


def test_item_knn_cold_item_similarities_come_from_the_support_users_items() -> None:
    method = fitted("item-knn", "IL", {"items": "all", "k": 0, "shrink": 0.0, "pop_weight": 0.0})
    batch = item_batch(IL_SUPPORT, False, **IL_QUERY)
    sims = method.cold_sims(batch).toarray()
    # item counts: 0: 2 users, 1: 2, 2: 3, 3: 1, 4: 1. Item 5's support (user 0) holds 0, 2, 3 (K = 1);
    # item 6's (users 1 and 3, K = 2) holds 2, 4 (user 1) and 0, 1 (user 3)
    r2, r3 = math.sqrt(2), math.sqrt(3)
    expected = np.zeros((2, 7))
    expected[0, [0, 2, 3]] = [1 / r2, 1 / r3, 1.0]
    expected[1, [0, 1, 2, 4]] = [1 / (r2 * r2), 1 / (r2 * r2), 1 / (r3 * r2), 1 / r2]
    np.testing.assert_allclose(sims, expected)
    out = method.predict(batch)
    # user 2 holds items 1, 2; user 3 holds 0, 1
    s2 = np.array([expected[0, 1] + expected[0, 2], expected[1, 1] + expected[1, 2]])
    s3 = np.array([expected[0, 0] + expected[0, 1], expected[1, 0] + expected[1, 1]])
    np.testing.assert_allclose(out, np.stack([s2 / s2.max(), s3 / s3.max()]), atol=1e-6)


def test_item_knn_cold_item_rating_adds_the_users_residuals_on_similar_items() -> None:
    config = {**BIAS, "items": "target", "k": 0, "shrink": 0.0, "residual_shrink": 1.0, "pop_weight": 0.0}
    method = fitted("item-knn", "IR", config)
    # item 5's support users 0 {2, 3} and 1 {2, 4} (target items): co-occurrence 2, 1, 1; n_i = 2
    sim = {2: 2 / (math.sqrt(3) * math.sqrt(2)), 3: 1 / math.sqrt(2), 4: 1 / math.sqrt(2)}
    # user 2 rated item 2 (3 stars); user 3 rated no target item: the baseline alone
    res22 = 3 - MU - B_USER[2] - B_ITEM[2]
    off2 = sim[2] * res22 / (sim[2] + 1.0)
    expected = np.clip([MU + B_USER[2] + B_COLD + off2, MU + B_USER[3] + B_COLD], 2.0, 5.0)
    np.testing.assert_allclose(method.predict(item_batch(IR_SUPPORT, True, **IR_QUERY)), expected)


def test_ease_folds_a_cold_items_column_in_from_its_support_users_rows() -> None:
    lam = 2.0
    config = {"cap": 10, "lambda": lam, "target_share": 0.5, "pop_weight": 0.0}
    method = fitted("ease", "IL", config)
    assert set(method.fold_in.items.tolist()) == set(range(7))  # the cap covers every item
    x = np.zeros((4, 7))
    for u, i, _ in ROWS:
        x[u, i] = 1.0
    items = method.fold_in.items
    x = x[:, items]
    y = np.zeros((4, 2))  # the cold items' user columns: their support
    y[0, 0] = y[1, 1] = y[3, 1] = 1.0
    w = np.linalg.solve(x.T @ x + lam * np.eye(len(items)), x.T @ y)  # EASE's ridge column of each
    scores = x[[2, 3]] @ w
    out = method.predict(item_batch(IL_SUPPORT, False, **IL_QUERY))
    np.testing.assert_allclose(out, scores / np.abs(scores).max(axis=1, keepdims=True), atol=1e-5)
    assert "IR" in method.not_applicable and "IR" not in method.families


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("user-knn", {"k": 0, "vectors": "all", "shrink": 0.0, "aggregate": "sum"}),
        ("item-knn", {"items": "all", "k": 0, "shrink": 0.0, "pop_weight": 0.0}),
        ("ease", {"cap": 10, "lambda": 2.0, "target_share": 0.5, "pop_weight": 0.0}),
    ],
)
def test_a_user_without_training_rows_gets_a_ranking_not_a_constant_score(name: str, config: dict) -> None:
    """A constant score ranks worst: the average training user's scores break the ties."""
    out = fitted(name, "IL", config).predict(item_batch(IL_SUPPORT, False, query_users=np.array([4])))
    assert out.shape == (1, 2) and np.isfinite(out).all() and np.ptp(out) > 0


# -- the real data: each method beats the family's floor (default configuration, grids pinned) -----------
FLOORS = {"IR": ("I-movies-k5", "global-mean", "item_mae"), "IL": ("I-beauty-k5", "random", "item_ndcg@10")}
CASES = [
    ("bias-transfer", "IR"),
    ("user-knn", "IR"),
    ("item-knn", "IR"),
    ("user-knn", "IL"),
    ("item-knn", "IL"),
    ("ease", "IL"),
]


@pytest.fixture(scope="module")
def real_tasks(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, harness.EncodedTask]:
    out = tmp_path_factory.mktemp("item-tasks")
    specs = all_specs()
    encoded = {}
    for task_id, _, _ in FLOORS.values():
        artifact.build(specs[task_id], data_dir, out)
        encoded[task_id] = harness.encode(artifact.load(out / task_id), specs[task_id])
    return encoded


def first_values(config: dict[str, Any]) -> dict[str, Any]:
    """The default configuration: every in-fit grid pinned to its first value (one validation each)."""
    return {k: v[0] if isinstance(v, list) else v for k, v in config.items()}


def score(enc: harness.EncodedTask, name: str, metric: str) -> float:
    cls = load_method(name)
    outcome = runner.execute(enc, cls, first_values(cls.default_config(enc.spec.family)), 0)
    assert outcome.status == "ok", outcome.error
    assert outcome.evaluation is not None
    return outcome.evaluation.pooled[metric]


@pytest.mark.parametrize(("name", "family"), [pytest.param(n, f, id=f"{n}-{f}") for n, f in CASES])
def test_each_baseline_beats_the_floor_on_real_cold_items(
    real_tasks: dict[str, harness.EncodedTask], name: str, family: str
) -> None:
    task_id, floor_name, metric = FLOORS[family]
    enc = real_tasks[task_id]
    floor, value = score(enc, floor_name, metric), score(enc, name, metric)
    if family == "IR":
        assert value < floor - 0.05, (value, floor)
    else:
        assert value > 2 * floor, (value, floor)

"""The issue-11 heuristic of ``benchmarks/heuristic_check.py``, pinned on hand-computed tiny cases.

The check compares the classical baselines with this heuristic, so its formulas must be exactly the ones the
report states: item mean + the shrunk mean source residual (R), overlap-weighted popularity (L, C).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark import runner
from benchmark.api import Budget, ColdBatch, Interactions, TrainView
from benchmarks.heuristics import TIE_BREAK, Heuristic
from tests.tiny_tasks import tiny_task


def interactions(user=(), item=(), rating=None) -> Interactions:
    user, item = np.asarray(user, dtype=np.int64), np.asarray(item, dtype=np.int64)
    rating = np.full(len(user), np.nan) if rating is None else np.asarray(rating, dtype=np.float64)
    return Interactions(user, item, rating, np.full(len(user), -1, dtype=np.int64))


def make_view(
    family: str,
    domains: tuple[str, ...],
    item_domain: list[int],
    rows: list[tuple],
    validator=lambda predict: 0.0,
) -> TrainView:
    """A hand-built view over ``rows`` = (user, item[, rating]) with one target domain (the last)."""
    item_domain = np.asarray(item_domain)
    user, item = [r[0] for r in rows], [r[1] for r in rows]
    rating = [r[2] for r in rows] if family == "R" else None
    train = interactions(user, item, rating)
    return TrainView(
        task_id=f"tiny-heuristic-{family}",
        family=family,
        domains=domains,
        source_domains=domains[:-1],
        target_domain=domains[-1],
        explicit=family == "R",
        n_users=1 + max(user),
        item_domain=item_domain,
        train=train,
        train_domain=item_domain[train.item],
        budget=Budget(10_000, 0, 60.0),
        validator=validator,
        deadline=time.monotonic() + 60,
    )


# R: Books items 0, 1; Movies items 2, 3, 4 (item 4 has no training rating). Users 2 and 3 are cold.
R_ITEM_DOMAIN = [0, 0, 1, 1, 1]
R_ROWS = [
    (0, 0, 4.0), (0, 1, 2.0), (0, 2, 5.0), (0, 3, 3.0),
    (1, 0, 2.0), (1, 2, 3.0),
    (2, 0, 5.0), (2, 1, 4.0),
    (3, 0, 1.0),
]  # fmt: skip
# source item means: item 0 (4+2+5+1)/4 = 3, item 1 (2+4)/2 = 3; target: item 2 = 4, item 3 = 3,
# global target mean (5+3+3)/3 = 11/3 for item 4; rating range [3, 5]


def r_batch(support: Interactions | None = None) -> ColdBatch:
    """Cold users 2 and 3 (positions 0, 1), their Books history, asked for every Movies item."""
    history = interactions([0, 0, 1], [0, 1, 0], [5.0, 4.0, 1.0])
    return ColdBatch(
        users=np.array([2, 3]),
        support=support if support is not None else interactions(rating=[]),
        history=history,
        query_user=np.array([0, 0, 0, 1, 1]),
        query_item=np.array([2, 3, 4, 2, 3]),
    )


def fitted(shrink: float | list[float], view: TrainView) -> Heuristic:
    method = Heuristic({"shrink": shrink}, seed=0)
    method.fit(view, view.budget)
    return method


def test_r_is_item_mean_plus_the_shrunk_mean_source_residual_clipped_to_the_range() -> None:
    view = make_view("R", ("Books", "Movies"), R_ITEM_DOMAIN, R_ROWS)
    method = fitted(1.0, view)
    # user 2: residuals 5-3, 4-3 -> offset 3 / (2 + 1) = 1; user 3: residual 1-3 -> offset -2 / (1 + 1) = -1
    expected = [4 + 1, 3 + 1, 11 / 3 + 1, 4 - 1, 3.0]  # the last one is 3 - 1 = 2, clipped to 3
    np.testing.assert_allclose(method.predict(r_batch()), expected)
    assert method.shrink == 1.0 and method.trials == 1
    assert view.examples_used == view.n_train  # every domain read, once


def test_r_adds_support_residuals_against_target_item_means() -> None:
    view = make_view("R", ("Books", "Movies"), R_ITEM_DOMAIN, R_ROWS)
    method = fitted(1.0, view)
    support = interactions([0], [2], [3.0])  # user 2 rated item 2 (mean 4) a 3: residual -1
    # user 2: (2 + 1 - 1) / (3 + 1) = 0.5; user 3 unchanged
    expected = [4.5, 3.5, 11 / 3 + 0.5, 3.0, 3.0]
    np.testing.assert_allclose(method.predict(r_batch(support)), expected)


def test_shrink_is_chosen_on_the_validator_first_best_in_grid_order() -> None:
    def validator(predict) -> float:
        """Minus the distance of user 2's item-2 prediction to 4.5 (offsets 1.5, 1, 0.6, 0.25, 0.6)."""
        return -round(abs(float(predict(r_batch())[0]) - 4.5), 9)

    view = make_view("R", ("Books", "Movies"), R_ITEM_DOMAIN, R_ROWS, validator)
    method = fitted([0.0, 1.0, 3.0, 10.0, 3.0 + 1e-12], view)
    assert method.shrink == 3.0 and method.trials == 5
    assert method.validation_score == pytest.approx(-0.1)
    assert Heuristic.log[(view.task_id, 0)]["shrink"] == 3.0


# L: source items 0, 1 (domain A) and 2 (domain B); target items 3, 4, 5 (domain C).
L_ITEM_DOMAIN = [0, 0, 1, 2, 2, 2]
L_ROWS = [
    (0, 0), (0, 1), (0, 2), (0, 3), (0, 4),
    (1, 0), (1, 4), (1, 5),
    (2, 2), (2, 5),
    (3, 0), (3, 2),
    (4, 1),
]  # fmt: skip
# warm users (with target rows): 0, 1, 2; users 3 and 4 have source rows only


def test_l_scores_are_overlap_weighted_target_popularity_plus_shrunk_global_share() -> None:
    view = make_view("L", ("A", "B", "C"), L_ITEM_DOMAIN, L_ROWS)
    batch = ColdBatch(
        users=np.array([3, 4, 5]),
        support=interactions(),
        history=interactions([0, 0, 1], [0, 2, 1]),  # position 2 has no history at all
        candidates=np.array([3, 4, 5]),
    )
    share = np.array([1, 2, 2]) / 3  # warm users with each target item
    # position 0, history {0, 2}: overlaps 2 (user 0), 1 (user 1), 1 (user 2) -> item 3: 2, 4: 2+1, 5: 1+1
    # position 1, history {1}: overlap 1 with user 0 only -> items 3, 4: 1; user 4 is not warm
    local = np.array([[2.0, 3.0, 2.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    for shrink in (0.0, 3.0):
        method = fitted(shrink, view)
        np.testing.assert_allclose(method.predict(batch), local + (shrink + TIE_BREAK) * share, rtol=1e-12)
    scores = fitted(0.0, view).predict(batch)
    assert scores[0, 2] > scores[0, 0]  # equal overlap, the tie broken by global popularity
    assert scores[2, 1] > scores[2, 0]  # no overlap: the popularity ranking, not a constant score


@pytest.mark.parametrize("family", ["R", "L", "C"])
def test_runs_through_the_harness_and_every_seed_gives_the_same_values(family: str) -> None:
    enc = tiny_task(family)
    config = Heuristic.default_config(family)
    outcomes = [runner.execute(enc, Heuristic, config, seed) for seed in (0, 1)]
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]
    first, second = (o.evaluation for o in outcomes)
    assert first.pooled == second.pooled
    assert outcomes[0].method.trials == len(config["shrink"])

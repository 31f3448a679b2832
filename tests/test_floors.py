"""Floors on a tiny hand-made training view: exact means and counts, random scores independent of batching."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark import metrics
from benchmark.api import Budget, ColdBatch, Interactions, TrainView
from methods.floors import GlobalMean, ItemMean, Popularity, Random

BUDGET = Budget(train_examples=100, adapt_steps=0, wall_seconds=60.0)
# items 0, 1 are Books; items 2..5 are Movies (item 5 never interacted with)
ITEM_DOMAIN = np.array([0, 0, 1, 1, 1, 1])
# (user, item, rating): Books ratings 5 and 1 must not leak into the Movies floors
ROWS = np.array(
    [
        (0, 0, 5.0),
        (0, 2, 4.0),
        (0, 3, 2.0),
        (1, 2, 5.0),
        (1, 4, 3.0),
        (2, 1, 1.0),
        (2, 2, 3.0),
    ]
)


def interactions(user=(), item=(), rating=()) -> Interactions:
    n = len(user)
    return Interactions(
        np.asarray(user, dtype=np.int64),
        np.asarray(item, dtype=np.int64),
        np.asarray(rating, dtype=np.float64),
        np.full(n, -1, dtype=np.int64),
    )


def make_view(explicit: bool = True) -> TrainView:
    user, item, rating = ROWS[:, 0].astype(int), ROWS[:, 1].astype(int), ROWS[:, 2]
    if not explicit:
        rating = np.full(len(rating), np.nan)
    return TrainView(
        task_id="tiny",
        family="R" if explicit else "L",
        domains=("Books", "Movies"),
        source_domains=("Books",),
        target_domain="Movies",
        explicit=explicit,
        n_users=4,
        item_domain=ITEM_DOMAIN,
        train=interactions(user, item, rating),
        train_domain=ITEM_DOMAIN[item],
        budget=BUDGET,
        validator=lambda predict: 0.0,
        deadline=time.monotonic() + 60,
    )


def rating_batch(query_item) -> ColdBatch:
    return ColdBatch(
        users=np.array([3]),
        support=interactions(),
        history=interactions(),
        query_user=np.zeros(len(query_item), dtype=np.int64),
        query_item=np.asarray(query_item),
    )


def ranking_batch(users, candidates) -> ColdBatch:
    return ColdBatch(
        users=np.asarray(users),
        support=interactions(),
        history=interactions(),
        candidates=np.asarray(candidates),
    )


TARGET_ROWS = int((ITEM_DOMAIN[ROWS[:, 1].astype(int)] == 1).sum())  # 5 Movies rows


def fitted(cls, view: TrainView, seed: int = 0):
    method = cls({}, seed=seed)
    method.fit(view, BUDGET)
    # the target history they read is charged once, whatever the number of reads; Random reads nothing
    assert view.examples_used == (0 if cls is Random else TARGET_ROWS)
    return method


def test_floors_pay_for_the_target_history_once_and_fit_a_budget_of_that_size():
    view = make_view()
    fitted(ItemMean, view)
    GlobalMean({}, seed=0).fit(view, BUDGET)  # the same view: the rows are already held, no new charge
    assert view.examples_used == TARGET_ROWS
    tight = make_view()
    tight.budget = Budget(train_examples=TARGET_ROWS, adapt_steps=0, wall_seconds=60.0)
    ItemMean({}, seed=0).fit(tight, tight.budget)
    assert tight.examples_left == 0


def test_global_mean_is_the_mean_of_target_ratings_only():
    method = fitted(GlobalMean, make_view())
    np.testing.assert_allclose(method.predict(rating_batch([2, 5, 3])), [3.4, 3.4, 3.4])  # 17 / 5


def test_item_mean_uses_each_items_target_ratings_and_the_global_mean_for_unseen_items():
    method = fitted(ItemMean, make_view())
    pred = method.predict(rating_batch([2, 3, 4, 5, 2]))
    np.testing.assert_allclose(pred, [4.0, 2.0, 3.0, 3.4, 4.0])
    assert metrics.validate_predictions(pred, (5,)) is pred


def test_rating_floors_refuse_ranking_batches_and_unrated_targets():
    with pytest.raises(ValueError, match="family R"):
        fitted(GlobalMean, make_view()).predict(ranking_batch([3], [2, 3]))
    with pytest.raises(ValueError, match="no ratings in target domain 'Movies'"):
        fitted(ItemMean, make_view(explicit=False))


def test_popularity_counts_target_interactions():
    method = fitted(Popularity, make_view(explicit=False))
    scores = method.predict(ranking_batch([3, 1], [2, 3, 4, 5]))
    np.testing.assert_array_equal(scores, [[3, 1, 1, 0], [3, 1, 1, 0]])
    # through the harness: item 2 ranks first, item 3 ties with item 4 (pessimistic 3), item 5 is last
    ranks = metrics.query_ranks(scores, np.array([]), np.array([]), np.array([0, 0, 1]), np.array([0, 1, 3]))
    assert ranks.tolist() == [1, 3, 4]


def test_random_scores_have_the_batch_shape_and_lie_in_the_unit_interval():
    method = fitted(Random, make_view(explicit=False), seed=3)
    scores = method.predict(ranking_batch([0, 1, 2], [2, 3, 4, 5]))
    assert scores.shape == (3, 4) and scores.dtype == np.float64
    assert ((scores >= 0) & (scores < 1)).all()


def test_random_scores_do_not_depend_on_batching_or_candidate_order():
    method = fitted(Random, make_view(explicit=False), seed=3)
    cands = np.arange(2, 6)
    whole = method.predict(ranking_batch([0, 1, 2, 3], cands))
    parts = np.vstack(
        [method.predict(ranking_batch([0, 1], cands)), method.predict(ranking_batch([2, 3], cands))]
    )
    np.testing.assert_array_equal(whole, parts)
    reversed_cands = method.predict(ranking_batch([2, 1], cands[::-1]))
    np.testing.assert_array_equal(reversed_cands, whole[[2, 1]][:, ::-1])
    again = fitted(Random, make_view(explicit=False), seed=3).predict(ranking_batch([0, 1, 2, 3], cands))
    np.testing.assert_array_equal(again, whole)


def test_random_scores_change_with_the_seed_and_the_user_and_look_uniform():
    view = make_view(explicit=False)
    users, cands = np.arange(300), np.arange(700)
    a = fitted(Random, view, seed=1).predict(ranking_batch(users, cands))
    b = fitted(Random, view, seed=2).predict(ranking_batch(users, cands))
    assert not (a == b).any() and abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    assert len(np.unique(a)) == a.size  # no ties, and no two users share a row
    assert abs(a.mean() - 0.5) < 0.005 and abs(a.var() - 1 / 12) < 0.002
    # each user's top item is spread evenly over the candidates (no column bias)
    top = np.bincount(a.argmax(axis=1), minlength=len(cands))
    assert top.max() <= 5
    negative = fitted(Random, view, seed=-1).predict(ranking_batch(users[:2], cands[:3]))
    assert negative.shape == (2, 3)

"""Metrics against hand-computed values, pessimistic ties, exclusion, and a naive reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark import metrics as M

LOG3 = math.log2(3)


# -- registry -------------------------------------------------------------------------------------------


def test_every_required_metric_is_registered_with_its_direction_and_input():
    expected = {
        "mae": ("lower", "ratings"),
        "rmse": ("lower", "ratings"),
        "user_mae": ("lower", "ratings"),
        "user_rmse": ("lower", "ratings"),
        "ndcg@10": ("higher", "ranks"),
        "hr@10": ("higher", "ranks"),
        "recall@10": ("higher", "ranks"),
        "mrr": ("higher", "ranks"),
        "sampled_hr@10": ("higher", "sampled_ranks"),
        "sampled_ndcg@10": ("higher", "sampled_ranks"),
        "sampled_mrr": ("higher", "sampled_ranks"),
        "item_mae": ("lower", "item_ratings"),
        "item_rmse": ("lower", "item_ratings"),
        "item_ndcg@10": ("higher", "item_ranks"),
        "item_hr@10": ("higher", "item_ranks"),
        "item_mrr": ("higher", "item_ranks"),
    }
    assert {n: (m.direction, m.consumes) for n, m in M.METRICS.items()} == expected
    assert M.directions(["mae", "mrr"]) == {"mae": "lower", "mrr": "higher"}
    assert M.METRICS["mae"].better(0.7, 0.8) and M.METRICS["mrr"].better(0.8, 0.7)


def test_a_metric_without_a_valid_direction_or_input_cannot_be_registered():
    with pytest.raises(ValueError, match="direction"):
        M.Metric("bad", "up", "ranks")
    with pytest.raises(ValueError, match="direction"):
        M.Metric("bad", None, "ranks")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="consumes"):
        M.Metric("bad", "higher", "labels")
    with pytest.raises(ValueError, match="already registered"):
        M.register(M.Metric("mae", "lower", "ratings"))
    with pytest.raises(TypeError):
        M.register({"name": "x", "direction": "higher"})  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="not registered"):
        M.directions(["mae", "auc"])
    assert "bad" not in M.METRICS


# -- full-ranking ranks ---------------------------------------------------------------------------------

SCORES = np.array(
    [
        [0.9, 0.5, 0.5, 0.1, 0.7],
        [0.2, 0.2, 0.2, 0.2, 0.2],
    ]
)
NONE = np.array([], dtype=np.int64)


def test_a_tied_query_item_ranks_after_every_equal_scored_candidate():
    # row 0, column 1 (0.5): 0.9, 0.7 and the other 0.5 come first -> rank 4, not 3
    ranks = M.query_ranks(SCORES, NONE, NONE, np.array([0, 0, 0]), np.array([1, 3, 0]))
    assert ranks.tolist() == [4, 5, 1]


def test_constant_scores_give_the_worst_rank():
    ranks = M.query_ranks(SCORES, NONE, NONE, np.array([1]), np.array([2]))
    assert ranks.tolist() == [5]


def test_excluded_support_items_leave_the_candidates():
    # row 0 excludes column 0 (0.9): column 1 moves from rank 4 to 3, column 3 from 5 to 4;
    # row 1 excludes two columns: 3 candidates left, all tied -> rank 3;
    # excluding a lower-scored column changes nothing
    ranks = M.query_ranks(
        SCORES,
        exclude_user=np.array([0, 1, 1, 0]),
        exclude_col=np.array([0, 0, 4, 0]),  # the duplicated pair (0, 0) counts once
        query_user=np.array([0, 0, 1]),
        query_col=np.array([1, 3, 2]),
    )
    assert ranks.tolist() == [3, 4, 3]
    below = M.query_ranks(SCORES, np.array([0]), np.array([3]), np.array([0]), np.array([4]))
    assert below.tolist() == [2]


def test_other_query_items_of_the_user_are_candidates():
    # columns 1 and 2 are both query items tied at 0.5: each ranks after the other
    ranks = M.query_ranks(SCORES, NONE, NONE, np.array([0, 0]), np.array([1, 2]))
    assert ranks.tolist() == [4, 4]


def test_a_query_item_that_is_also_excluded_is_refused():
    with pytest.raises(ValueError, match=r"row 0, column 1"):
        M.query_ranks(SCORES, np.array([0]), np.array([1]), np.array([0]), np.array([1]))


def test_bad_ranking_inputs_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        M.query_ranks(np.array([[0.1, np.nan]]), NONE, NONE, np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="outside"):
        M.query_ranks(SCORES, NONE, NONE, np.array([2]), np.array([0]))
    with pytest.raises(ValueError, match="2-d"):
        M.query_ranks(SCORES[0], NONE, NONE, np.array([0]), np.array([0]))


def naive_ranks(scores, ex_u, ex_c, q_u, q_c):
    excluded = set(zip(ex_u.tolist(), ex_c.tolist(), strict=True))
    out = []
    for u, q in zip(q_u.tolist(), q_c.tolist(), strict=True):
        rank = 1
        for c in range(scores.shape[1]):
            if c != q and (u, c) not in excluded and scores[u, c] >= scores[u, q]:
                rank += 1
        out.append(rank)
    return np.array(out)


def test_chunked_ranks_equal_a_naive_reference_on_random_tied_scores():
    rng = np.random.default_rng(7)
    n_rows, n_cols = 37, 211
    scores = rng.integers(0, 15, size=(n_rows, n_cols)).astype(np.float32)  # many ties
    pairs = rng.choice(n_rows * n_cols, size=900, replace=False)
    ex_u, ex_c = np.divmod(pairs[:300], n_cols)
    q_u, q_c = np.divmod(pairs[300:], n_cols)
    expected = naive_ranks(scores, ex_u, ex_c, q_u, q_c)
    for chunk in (1, 250, 5000, 1 << 22):
        got = M.query_ranks(scores, ex_u, ex_c, q_u, q_c, chunk_elements=chunk)
        np.testing.assert_array_equal(got, expected)


# -- per-user ranking metrics ---------------------------------------------------------------------------


def test_ranking_metrics_per_user_by_hand():
    users = np.array([0, 0, 1, 3, 3, 3] + [4] * 12)
    ranks = np.array([1, 3, 12, 3, 7, 15, *range(1, 13)])
    got = M.ranking_per_user(ranks, users, n_users=5)
    idcg3 = 1 + 1 / LOG3 + 0.5
    # user 0: ranks 1, 3 | user 1: rank 12 | user 2: none | user 3: 3, 7, 15 | user 4: 12 items at 1..12
    np.testing.assert_allclose(
        got["ndcg@10"], [(1 + 0.5) / (1 + 1 / LOG3), 0.0, np.nan, (0.5 + 1 / 3) / idcg3, 1.0]
    )
    np.testing.assert_allclose(got["hr@10"], [1, 0, np.nan, 1, 1])
    np.testing.assert_allclose(got["recall@10"], [1, 0, np.nan, 2 / 3, 10 / 12])
    np.testing.assert_allclose(got["mrr"], [1, 1 / 12, np.nan, 1 / 3, 1])
    summary = M.summarize(got)
    assert summary["hr@10"] == pytest.approx(3 / 4)
    assert summary["mrr"] == pytest.approx((1 + 1 / 12 + 1 / 3 + 1) / 4)


def test_k_changes_the_cutoff_and_the_names():
    got = M.ranking_per_user(np.array([2, 4]), np.array([0, 0]), n_users=1, k=3)
    assert set(got) == {"ndcg@3", "hr@3", "recall@3", "mrr"}
    np.testing.assert_allclose(got["ndcg@3"], [(1 / LOG3) / (1 + 1 / LOG3)])
    np.testing.assert_allclose(got["recall@3"], [0.5])


def test_ranks_flow_from_scores_to_metrics():
    # row 0: query columns 1 (rank 4, pessimistic) and 4 (rank 2); row 1: column 0 among 5 ties (rank 5)
    ranks = M.query_ranks(SCORES, NONE, NONE, np.array([0, 0, 1]), np.array([1, 4, 0]))
    got = M.ranking_per_user(ranks, np.array([0, 0, 1]), n_users=2, k=3)
    np.testing.assert_allclose(got["ndcg@3"], [(1 / LOG3) / (1 + 1 / LOG3), 0.0])
    np.testing.assert_allclose(got["mrr"], [1 / 2, 1 / 5])


# -- sampled ranking ------------------------------------------------------------------------------------


def test_sampled_ranks_are_pessimistic_among_the_negatives():
    pos = np.array([0.5, 0.9, 0.2])
    neg = np.array([[0.5, 0.4, 0.6], [0.1, 0.2, 0.3], [0.3, 0.4, 0.5]])
    assert M.sampled_ranks(pos, neg).tolist() == [3, 1, 4]
    rng = np.random.default_rng(0)
    flat = np.full((2, 999), 0.25)
    assert M.sampled_ranks(np.array([0.25, 0.3]), flat).tolist() == [1000, 1]
    neg999 = rng.random((1, 999))
    pos999 = np.sort(neg999[0])[::-1][[9]]  # the 10th highest negative: 10 negatives are >= it
    assert M.sampled_ranks(pos999, neg999).tolist() == [11]
    with pytest.raises(ValueError, match="scores_pos"):
        M.sampled_ranks(pos, neg[:2])


def test_sampled_metrics_per_pair_by_hand():
    got = M.sampled_per_pair(np.array([3, 1, 4, 11]))
    np.testing.assert_allclose(got["sampled_hr@10"], [1, 1, 1, 0])
    np.testing.assert_allclose(got["sampled_ndcg@10"], [0.5, 1, 1 / math.log2(5), 0])
    np.testing.assert_allclose(got["sampled_mrr"], [1 / 3, 1, 1 / 4, 1 / 11])
    assert M.summarize(got)["sampled_hr@10"] == pytest.approx(0.75)


# -- ratings --------------------------------------------------------------------------------------------

PRED = np.array([3.0, 4.0, 5.0, 2.0])
TRUTH = np.array([4.0, 4.0, 3.0, 2.0])
USERS = np.array([0, 0, 1, 2])


def test_pooled_rating_errors_by_hand():
    got = M.rating_pooled(PRED, TRUTH)  # errors -1, 0, 2, 0
    assert got["mae"] == pytest.approx(0.75)
    assert got["rmse"] == pytest.approx(math.sqrt(5 / 4))


def test_per_user_rating_errors_weigh_users_equally():
    got = M.rating_per_user(PRED, TRUTH, USERS, n_users=4)
    np.testing.assert_allclose(got["user_mae"], [0.5, 2.0, 0.0, np.nan])
    np.testing.assert_allclose(got["user_rmse"], [math.sqrt(0.5), 2.0, 0.0, np.nan])
    summary = M.summarize(got)
    assert summary["user_mae"] == pytest.approx(2.5 / 3)
    assert summary["user_rmse"] == pytest.approx((math.sqrt(0.5) + 2) / 3)
    with pytest.raises(ValueError, match="equal length"):
        M.rating_per_user(PRED, TRUTH[:3], USERS, n_users=4)


def test_summarize_gives_nan_when_no_user_has_queries():
    assert math.isnan(M.summarize({"mrr": np.array([np.nan, np.nan])})["mrr"])
    assert math.isnan(M.rating_pooled(np.array([]), np.array([]))["mae"])


# -- prediction checks ----------------------------------------------------------------------------------


def test_valid_predictions_pass_and_integers_become_floats():
    ok = np.zeros((2, 3), dtype=np.float32)
    assert M.validate_predictions(ok, (2, 3)) is ok
    assert M.validate_predictions(np.arange(3), (3,)).dtype == np.float64


@pytest.mark.parametrize(
    ("pred", "shape", "message"),
    [
        (np.zeros((2, 3)), (2, 4), r"shape \(2, 3\), expected \(2, 4\)"),
        (np.zeros(3), (3, 1), r"shape \(3,\), expected \(3, 1\)"),
        (np.array([1.0, np.nan, np.inf]), (3,), r"2 non-finite value\(s\).*index \(1,\)"),
        ([1.0, 2.0], (2,), "numpy array, got list"),
        (np.array([True, False]), (2,), "real numbers"),
        (np.array(["a", "b"]), (2,), "real numbers"),
    ],
)
def test_invalid_predictions_are_refused_with_a_clear_message(pred, shape, message):
    with pytest.raises(ValueError, match=message):
        M.validate_predictions(pred, shape)


# -- cold items (family IR, IL) -------------------------------------------------------------------------


def test_item_ratings_are_averaged_per_cold_item_by_hand():
    # item 0: errors 1 and 3 -> MAE 2, RMSE sqrt(5); item 1: error 0; item 2: no query -> NaN
    per_item = M.rating_per_item(np.array([4.0, 2.0, 3.0]), np.array([5.0, 5.0, 3.0]), np.array([0, 0, 1]), 3)
    assert per_item["item_mae"][:2].tolist() == [2.0, 0.0] and np.isnan(per_item["item_mae"][2])
    assert per_item["item_rmse"][:2] == pytest.approx([math.sqrt(5), 0.0])
    assert M.summarize(per_item) == pytest.approx({"item_mae": 1.0, "item_rmse": math.sqrt(5) / 2})


def test_a_cold_item_ranks_among_all_cold_items_for_each_query_user_by_hand():
    # rows = query users u0, u1; columns = the task's four cold items c0..c3
    scores = np.array(
        [
            [0.9, 0.5, 0.7, 0.5],
            [0.1, 0.8, 0.8, 0.3],
        ]
    )
    # u0 is in the support of c0: c0 leaves u0's candidates (its interaction with c0 is known)
    ex_u, ex_c = np.array([0]), np.array([0])
    # query pairs: (u0, c1), (u0, c2), (u1, c1), (u1, c3)
    q_u, q_c = np.array([0, 0, 1, 1]), np.array([1, 2, 1, 3])
    ranks = M.query_ranks(scores, ex_u, ex_c, q_u, q_c)
    # u0 without c0: c2 0.7 first, then c1 and c3 tied at 0.5 -> c1 rank 3 (pessimistic), c2 rank 1;
    # u1: c1 and c2 tied at 0.8 -> c1 rank 2; c3 after both -> rank 3
    assert ranks.tolist() == [3, 1, 2, 3]
    per_item = M.item_rank_per_item(ranks, q_c, 4, k=2)
    # c1: pairs of rank 3 and 2; c2: rank 1; c3: rank 3; c0: no query pair
    assert per_item["item_ndcg@2"][1:].tolist() == pytest.approx([(0 + 1 / LOG3) / 2, 1.0, 0.0])
    assert per_item["item_hr@2"][1:].tolist() == [0.5, 1.0, 0.0]
    assert per_item["item_mrr"][1:].tolist() == pytest.approx([(1 / 3 + 1 / 2) / 2, 1.0, 1 / 3])
    assert all(np.isnan(v[0]) for v in per_item.values())
    summary = M.summarize(M.item_rank_per_item(ranks, q_c, 4))  # k = 10: every pair is a hit
    assert summary["item_hr@10"] == 1.0
    assert summary["item_ndcg@10"] == pytest.approx(((1 / 2 + 1 / LOG3) / 2 + 1 + 1 / 2) / 3)


def test_bad_cold_item_rank_inputs_are_refused():
    with pytest.raises(ValueError, match="1-based"):
        M.item_rank_per_item(np.array([0]), np.array([0]), 1)
    with pytest.raises(ValueError, match="shape"):
        M.item_rank_per_item(np.array([1, 2]), np.array([0]), 1)
    with pytest.raises(ValueError, match="outside"):
        M.item_rank_per_item(np.array([1]), np.array([3]), 2)

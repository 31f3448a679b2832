"""Seed intervals, the user-cluster bootstrap and the rank rules of leaderboard.statistics, on toy data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leaderboard.statistics import (
    BOOTSTRAP_RESAMPLES,
    average_ranks,
    paired_bootstrap,
    paired_differences,
    paired_user_differences,
    rank_task,
    t_cdf,
    t_interval,
    t_quantile,
)


@pytest.mark.parametrize(
    "p, df, expected",
    [
        (0.975, 1, 12.706205),
        (0.975, 2, 4.302653),
        (0.975, 4, 2.776445),
        (0.975, 10, 2.228139),
        (0.975, 30, 2.042272),
        (0.975, 120, 1.979930),
        (0.995, 4, 4.604095),
        (0.9, 1, 3.077684),
        (0.025, 5, -2.570582),
    ],
)
def test_t_quantile_matches_published_table_values(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-6)


def test_t_cdf_has_closed_forms_for_one_and_two_degrees_of_freedom() -> None:
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_t_interval_on_a_hand_computed_case() -> None:
    # values 1, 2, 3: mean 2, sample sd 1, half-width t_{0.975,2} / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    interval = t_interval([3.0, 1.0, 2.0])
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.half_width == pytest.approx(2.484138, abs=1e-6)
    assert (interval.low, interval.high) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)


def test_one_seed_has_no_interval_and_bad_input_is_refused() -> None:
    single = t_interval([0.42])
    assert single.mean == 0.42 and not single.has_interval and not single.covers(0.42)
    with pytest.raises(ValueError):
        t_interval([])
    with pytest.raises(ValueError):
        t_interval([1.0, float("nan")])


def test_bootstrap_is_deterministic_and_matches_normal_theory() -> None:
    diff = np.random.default_rng(7).normal(0.5, 1.0, 400)
    first = paired_bootstrap(diff)
    assert first == paired_bootstrap(diff.copy())
    assert first != paired_bootstrap(diff, seed=1)
    assert first.mean == pytest.approx(diff.mean()) and first.n == 400
    se = diff.std(ddof=1) / math.sqrt(diff.size)
    assert first.low == pytest.approx(diff.mean() - 1.96 * se, abs=0.25 * se)
    assert first.high == pytest.approx(diff.mean() + 1.96 * se, abs=0.25 * se)
    assert BOOTSTRAP_RESAMPLES >= 2000


def test_bootstrap_of_identical_methods_is_exactly_zero() -> None:
    interval = paired_bootstrap(np.zeros(50))
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0) and interval.covers(0.0)
    assert paired_bootstrap(np.array([])).n == 0


def frame(users: list[str], seeds: list[int], values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"user": users, "seed": seeds, "value": values})


def test_pairs_are_joined_on_user_and_seed_and_sorted() -> None:
    method = frame(["b", "a", "c", "a"], [1, 1, 1, 2], np.array([10.0, 20.0, 30.0, 40.0]))
    leader = frame(["a", "b", "a", "d"], [1, 1, 2, 1], np.array([1.0, 2.0, np.nan, 4.0]))
    # pairs present in both: (a,1), (a,2), (b,1); (a,2) has a NaN and is dropped; order is (user, seed)
    assert paired_differences(method, leader).tolist() == [19.0, 8.0]
    shuffled = method.iloc[[3, 2, 1, 0]]
    assert paired_differences(shuffled, leader).tolist() == [19.0, 8.0]
    with pytest.raises(ValueError, match="duplicate"):
        paired_differences(pd.concat([method, method]), leader)


def test_pairs_carry_their_user_cluster() -> None:
    method = frame(["b", "a", "c", "a", "b"], [1, 1, 1, 2, 2], np.array([10.0, 20.0, 30.0, 40.0, 50.0]))
    leader = frame(["a", "b", "a", "c", "b"], [1, 1, 2, 1, 2], np.array([1.0, 2.0, 3.0, np.nan, 5.0]))
    diff, cluster = paired_user_differences(method, leader)
    # (c,1) has a NaN: user c drops out and the clusters stay dense, in (user, seed) order
    assert diff.tolist() == [19.0, 37.0, 8.0, 45.0] and cluster.tolist() == [0, 0, 1, 1]


def test_cluster_bootstrap_of_singletons_is_the_pair_bootstrap() -> None:
    diff = np.random.default_rng(5).normal(0.2, 1.0, 120)
    pairs = paired_bootstrap(diff, resamples=500)
    singletons = paired_bootstrap(diff, np.arange(120) * 7, resamples=500)  # one pair per cluster
    assert (singletons.mean, singletons.n) == (pairs.mean, pairs.n)
    assert singletons.low == pytest.approx(pairs.low) and singletons.high == pytest.approx(pairs.high)
    with pytest.raises(ValueError, match="cluster"):
        paired_bootstrap(diff, np.arange(3))


def null_per_user(rng: np.random.Generator, users: int, seeds: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two methods identical in distribution, scored on the same users under ``seeds`` seeds.

    Each user has a difficulty shared by both methods and a method-by-user effect shared across seeds (a
    method suits some users better than others whatever its seed), plus independent seed noise; the
    expected difference of the methods is exactly 0, and a user's differences are correlated across seeds.
    """
    difficulty = rng.normal(0.8, 0.3, users)
    names = [f"u{i:03d}" for i in range(users)] * seeds
    seed = np.repeat(np.arange(seeds), users)
    out = []
    for _ in range(2):
        effect = rng.normal(0.0, 0.2, users)
        noise = rng.normal(0.0, 0.2, users * seeds)
        out.append(frame(names, seed.tolist(), np.tile(difficulty + effect, seeds) + noise))
    return out[0], out[1]


def test_user_cluster_bootstrap_covers_a_null_difference_at_the_nominal_rate() -> None:
    """Under the null the user-cluster interval covers 0 about 95% of the time; the pair bootstrap does not.

    The pair bootstrap resamples (user, seed) pairs as if every seed were a new user: with the seed noise
    and the per-user effect of equal size, it sees about 2/3 of the true variance of the mean and covers
    0 about 83% of the time. 200 data sets of 100 users x 3 seeds keep the test at about a second.
    """
    rng = np.random.default_rng(11)
    replications, resamples = 200, 1000
    cluster_hits = pair_hits = 0
    for _ in range(replications):
        method, leader = null_per_user(rng, users=100, seeds=3)
        diff, cluster = paired_user_differences(method, leader)
        assert diff.size == 300 and cluster.max() == 99
        cluster_hits += paired_bootstrap(diff, cluster, resamples=resamples).covers(0.0)
        pair_hits += paired_bootstrap(diff, resamples=resamples).covers(0.0)
    cluster_rate, pair_rate = cluster_hits / replications, pair_hits / replications
    assert 0.91 <= cluster_rate <= 0.99, cluster_rate
    assert pair_rate < 0.9 and pair_rate < cluster_rate - 0.05, (pair_rate, cluster_rate)


def test_rank_task_resamples_users_not_pairs() -> None:
    """A difference significant only if the seeds of a user were independent users is a tie."""
    rng = np.random.default_rng(2)
    users, seeds = 60, 3
    effect = rng.normal(0.0, 1.0, users)
    effect -= effect.mean() - 0.2  # the mean difference is 0.2, with a per-user sd of 1 shared by seeds
    names = [f"u{i}" for i in range(users)] * seeds
    seed = np.repeat(np.arange(seeds), users).tolist()
    leader_values = np.zeros(users * seeds)
    method_values = np.tile(effect, seeds) + rng.normal(0.0, 0.01, users * seeds)
    per_user = {"A": frame(names, seed, leader_values), "B": frame(names, seed, method_values)}
    ranks = rank_task({"A": 0.0, "B": float(method_values.mean())}, per_user, "lower")
    assert ranks["B"].tied and ranks["B"].rank == 1
    diff, _ = paired_user_differences(per_user["B"], per_user["A"])
    assert not paired_bootstrap(diff).covers(0.0)  # resampling pairs would have called it worse


def synthetic_task(direction: str) -> tuple[dict, dict]:
    """A leads; B is within noise of A; C is clearly worse; D is worse than C and has no per-user data."""
    rng = np.random.default_rng(3)
    users = [f"u{i}" for i in range(300)] * 2
    seeds = [1] * 300 + [2] * 300
    base = rng.uniform(0.0, 1.0, 600)
    noise = rng.normal(0.0, 0.3, 600)
    worse = 1.0 if direction == "lower" else -1.0
    values = {"A": base, "B": base + worse * 0.002 + noise - noise.mean(), "C": base + worse * 0.2}
    per_user = {key: frame(users, seeds, v) for key, v in values.items()}
    per_user["D"] = None
    means = {key: float(v.mean()) for key, v in values.items()}
    means["D"] = means["C"] + worse * 0.1
    return means, per_user


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_tied_method_shares_rank_one_and_the_rest_follow(direction: str) -> None:
    means, per_user = synthetic_task(direction)
    ranks = rank_task(means, per_user, direction)
    assert ranks["A"].leader and ranks["A"].rank == 1 and ranks["A"].difference is None
    assert ranks["B"].tied and ranks["B"].rank == 1 and ranks["B"].difference.covers(0.0)
    assert ranks["B"].difference.n == 600
    assert not ranks["C"].tied and ranks["C"].rank == 3
    assert not ranks["D"].paired and not ranks["D"].tied and ranks["D"].rank == 4
    assert rank_task(means, per_user, direction) == ranks  # fixed resampling seed


def test_leader_follows_the_declared_direction() -> None:
    means, per_user = synthetic_task("lower")
    flipped = rank_task(means, per_user, "higher")
    assert flipped["D"].leader  # the largest mean leads when higher is better
    with pytest.raises(ValueError, match="direction"):
        rank_task(means, per_user, "bigger")  # type: ignore[arg-type]


def test_equal_means_share_a_rank_after_the_tie_group() -> None:
    means = {"A": 0.1, "B": 0.5, "C": 0.5, "D": 0.9}
    ranks = rank_task(means, {key: None for key in means}, "lower")
    assert [ranks[k].rank for k in "ABCD"] == [1, 2, 2, 4]


def test_average_rank_needs_every_task() -> None:
    ranks = {"t1": {"A": 1, "B": 3}, "t2": {"A": 2, "B": 1, "C": 1}}
    assert average_ranks(ranks) == {"A": 1.5, "B": 2.0, "C": None}

"""Seed intervals, the paired bootstrap and the rank rules of leaderboard.statistics, on hand-made data."""

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

"""Statistics behind every number and rank on the leaderboard: seed intervals, user-cluster bootstrap, ranks.

Pure functions over numbers and small frames; no file access, so the page generator and the tests share one
implementation. The rules (docs/protocol.md, Statistics):

* Per task and method: the mean over seeds of the run's metric with a two-sided 95% Student-t interval
  (``t_interval``). With a single seed there is no interval (``low``/``high`` are NaN).
* Per task: the *leader* is the method with the best mean, in the direction the metric declares (ties of the
  mean are broken by the method key, so the choice is deterministic). Every other method is compared with the
  leader on per-user values paired by ``(user, seed)`` (inner join: only pairs both methods scored, rows with
  a NaN value dropped). The statistic is the mean of ``method - leader`` over the pairs; the interval is the
  95% percentile interval of ``BOOTSTRAP_RESAMPLES`` resamples drawn from
  ``numpy.random.default_rng(BOOTSTRAP_SEED)``. The same seed is used for every comparison, so adding a
  method never changes another method's interval.
* The unit of resampling is a *user*, with all of its seeds (a user-cluster bootstrap). Users are the unit of
  sampling: the test users are a sample of a population of cold users, while the seeds are repeated runs
  nested inside each user, and a user's values under different seeds share that user's difficulty (the
  per-user differences of one user are correlated across seeds). Resampling ``(user, seed)`` pairs
  independently treats three seeds of one user as three independent users, so it underestimates the
  variance and calls too many differences significant. A resample draws as many users as were paired, with
  replacement, and takes the mean over all pairs of the drawn users (so a user weighs as many pairs as it
  has, as in the point estimate). In a cold-item family (IR, IL) the unit is the *cold item* instead: the
  per-unit values are per cold item, paired by ``(item, seed)``, and cold items are the resampled clusters
  (the ``unit`` argument names the frames' ID column, ``leaderboard.families.unit_column`` decides it).
* A method whose interval covers 0 (``low <= 0 <= high``) *ties* the leader and shares rank 1. A method with
  no paired data cannot be shown to tie, and is ranked as not tied.
* The remaining methods follow the rank-1 group in standard competition ranking by mean ("1224"): rank =
  size of the rank-1 group + 1 + number of untied methods with a strictly better mean.
* Average rank per family: the mean of a method's ranks over the family's ranked tasks, only for methods
  ranked on every one of them (others get ``None``, shown as n/a), so an average never hides a missing task.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

Direction = Literal["higher", "lower"]

LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240601
_CHUNK_DRAWS = 4_000_000  # indices drawn per bootstrap chunk, bounds memory (16 MB of int32 indices)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval; ``low``/``high`` are NaN when no interval exists."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    def covers(self, value: float) -> bool:
        return self.has_interval and self.low <= value <= self.high


# --- Student-t quantiles (no scipy): regularized incomplete beta by continued fraction, then bisection ----


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function, evaluated by the modified Lentz method."""
    tiny = 1e-300
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            step = c * d
            h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), using the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges faster."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * _regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t, by bisection on ``t_cdf`` (absolute error below 1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    upper = max(p, 1.0 - p)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < upper:
        low, high = high, high * 2.0
    while high - low > 1e-11 * max(1.0, high):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < upper:
            low = mid
        else:
            high = mid
    value = (low + high) / 2.0
    return value if p > 0.5 else -value


def t_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """Mean over seeds with a two-sided Student-t interval (sample standard deviation, ``n - 1`` df)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("t_interval needs a non-empty 1-d sequence of values")
    if not np.all(np.isfinite(x)):
        raise ValueError("t_interval got a non-finite value")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = t_quantile(0.5 + level / 2.0, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, int(x.size))


# --- paired bootstrap ---------------------------------------------------------------------------------------


def paired_user_differences(
    method: pd.DataFrame, leader: pd.DataFrame, column: str = "value", unit: str = "user"
) -> tuple[np.ndarray, np.ndarray]:
    """``method - leader`` per ``(unit, seed)`` present in both frames, and each pair's unit cluster.

    Each frame has the columns named by ``unit`` (``user``, or ``item`` in a cold-item family), ``seed``
    and ``column``; pairs with a NaN on either side are dropped. Returns ``(diff, cluster)`` sorted by unit
    then seed, ``cluster`` numbering the units ``0 .. n-1`` in that order. Sorting makes the result
    independent of file and row order, so the bootstrap draws the same units.
    """
    for name, frame in (("method", method), ("leader", leader)):
        missing = {unit, "seed", column} - set(frame.columns)
        if missing:
            raise ValueError(f"{name} per-user frame lacks column(s) {sorted(missing)}")
    users = np.concatenate([method[unit].to_numpy(str), leader[unit].to_numpy(str)])
    seeds = np.concatenate([method["seed"].to_numpy(np.int64), leader["seed"].to_numpy(np.int64)])
    _, user_code = np.unique(users, return_inverse=True)
    seed_values, seed_code = np.unique(seeds, return_inverse=True)
    keys = user_code.astype(np.int64) * len(seed_values) + seed_code  # orders as (user, seed)
    split = len(method)
    method_keys, leader_keys = keys[:split], keys[split:]
    for name, part in (("method", method_keys), ("leader", leader_keys)):
        if np.unique(part).size != part.size:
            raise ValueError(f"{name} per-user frame has duplicate ({unit}, seed) rows")
    common, in_method, in_leader = np.intersect1d(
        method_keys, leader_keys, assume_unique=True, return_indices=True
    )
    diff = method[column].to_numpy(np.float64)[in_method] - leader[column].to_numpy(np.float64)[in_leader]
    kept = ~np.isnan(diff)
    _, cluster = np.unique(common[kept] // len(seed_values), return_inverse=True)
    return diff[kept], cluster.astype(np.int64).reshape(-1)


def paired_differences(
    method: pd.DataFrame, leader: pd.DataFrame, column: str = "value", unit: str = "user"
) -> np.ndarray:
    """The differences of ``paired_user_differences`` without their unit clusters."""
    return paired_user_differences(method, leader, column, unit)[0]


def paired_bootstrap(
    diff: np.ndarray,
    cluster: np.ndarray | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> Interval:
    """Mean of paired differences with a percentile bootstrap interval that resamples whole clusters.

    ``cluster`` gives each difference's cluster (the user, or the cold item, in the leaderboard); every
    resample draws as many clusters as there are, with replacement, and its statistic is the mean over all
    differences of the drawn clusters. Without ``cluster`` each difference is its own cluster (the plain
    pair bootstrap). Draws are made in chunks of whole resamples from one generator, so the result depends
    only on the inputs, ``resamples``, ``seed`` and ``level``. ``n`` of the result counts differences, not
    clusters.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError("paired_bootstrap needs a 1-d array of differences")
    if d.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if not np.all(np.isfinite(d)):
        raise ValueError("paired_bootstrap got a non-finite difference")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    if cluster is None:
        sums, counts = d, np.ones(d.size)
    else:
        c = np.asarray(cluster)
        if c.shape != d.shape:
            raise ValueError(f"cluster has shape {c.shape}, differences have {d.shape}")
        _, code = np.unique(c, return_inverse=True)
        code = code.reshape(-1)
        sums, counts = np.bincount(code, weights=d), np.bincount(code).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK_DRAWS // sums.size)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, sums.size, size=(stop - start, sums.size), dtype=np.int32)
        total = sums.size if cluster is None else counts[idx].sum(axis=1)
        means[start:stop] = sums[idx].sum(axis=1) / total
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(d.mean()), float(low), float(high), int(d.size))


# --- ranks --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankResult:
    """One method's place on one task.

    ``difference``: bootstrap interval of ``method - leader`` on per-unit values (None for the leader);
    ``tied``: the difference interval covers 0; ``paired``: paired data existed for the comparison.
    """

    rank: int
    leader: bool
    tied: bool
    paired: bool
    difference: Interval | None


def better(a: float, b: float, direction: Direction) -> bool:
    """``a`` is strictly better than ``b`` under ``direction``."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"unknown metric direction {direction!r}")
    return a > b if direction == "higher" else a < b


def rank_task(
    means: Mapping[Hashable, float],
    per_user: Mapping[Hashable, pd.DataFrame | None],
    direction: Direction,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
    unit: str = "user",
) -> dict[Hashable, RankResult]:
    """Rank the methods of one task (rules in the module docstring).

    ``means``: method key -> mean over seeds; keys must be mutually sortable. ``per_user``: method key ->
    frame with ``unit`` (the cluster: ``user``, or ``item`` for cold items), ``seed``, ``value`` (or None
    when the method has no per-unit values).
    """
    if not means:
        return {}
    if direction not in ("higher", "lower"):
        raise ValueError(f"unknown metric direction {direction!r}")
    sign = 1.0 if direction == "higher" else -1.0
    order = sorted(means, key=lambda key: (-sign * means[key], key))
    leader = order[0]
    leader_frame = per_user.get(leader)
    comparisons: dict[Hashable, tuple[Interval | None, bool]] = {leader: (None, True)}
    for key in order[1:]:
        frame = per_user.get(key)
        if frame is None or leader_frame is None:
            comparisons[key] = (None, False)
            continue
        diff, cluster = paired_user_differences(frame, leader_frame, unit=unit)
        interval = paired_bootstrap(diff, cluster, resamples=resamples, seed=seed, level=level)
        comparisons[key] = (interval, interval.n > 0)
    tied = {
        key for key, (interval, _) in comparisons.items() if interval is not None and interval.covers(0.0)
    }
    first = {leader} | tied
    untied = [key for key in order if key not in first]
    results: dict[Hashable, RankResult] = {}
    for key in order:
        interval, paired = comparisons[key]
        if key in first:
            rank = 1
        else:
            ahead = sum(better(means[other], means[key], direction) for other in untied)
            rank = len(first) + 1 + ahead
        results[key] = RankResult(rank, key == leader, key in tied, paired, interval)
    return results


def average_ranks(
    ranks: Mapping[str, Mapping[Hashable, int]], tasks: Sequence[str] | None = None
) -> dict[Hashable, float | None]:
    """Mean rank over ``tasks`` (default: every task in ``ranks``); None for a method missing any task."""
    chosen = sorted(ranks) if tasks is None else sorted(tasks)
    keys = sorted({key for task in chosen for key in ranks.get(task, {})})
    out: dict[Hashable, float | None] = {}
    for key in keys:
        values = [ranks.get(task, {}).get(key) for task in chosen]
        out[key] = None if any(v is None for v in values) else float(np.mean(values))
    return out

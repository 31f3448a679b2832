"""Every metric of ColdBench, computed by the harness from held-back labels (methods never see them).

Each metric declares its direction and what it consumes, so no reader guesses which way is better, and the
harness computes each input (``consumes``) a task's metrics need:

- ``ratings`` (family R): ``mae`` and ``rmse`` pooled over all query ratings (the PTUPCDR protocol), and
  ``user_mae`` / ``user_rmse``, the per-user MAE / RMSE averaged over users.
- ``ranks`` (families L and C, full ranking): ``ndcg@10``, ``hr@10``, ``recall@10``, ``mrr`` per user,
  averaged over users. A user's candidates are every target item except the user's support items.
- ``sampled_ranks`` (family C, CDRIB's protocol): ``sampled_hr@10``, ``sampled_ndcg@10``, ``sampled_mrr``
  with each test item ranked among its stored negatives (999), averaged over test pairs.
- ``item_ratings`` (family IR, cold items): ``item_mae`` / ``item_rmse``, the per-cold-item MAE / RMSE
  averaged over cold items (``rating_per_item``).
- ``item_ranks`` (family IL, cold items): for each query pair (user, cold item), the pessimistic rank of the
  cold item among all cold items of the task (the test ones for the test query, the validation ones for
  the validation query) under the user's scores, leaving out the cold items whose support holds that user
  (``query_ranks`` with rows = query users, columns = cold items); ``item_ndcg@10``, ``item_hr@10`` and
  ``item_mrr`` per pair, averaged per cold item, then over cold items (``item_rank_per_item``).
  The harness scorers of these two inputs come with the cold-item method API (issue 18, item 2).

Ranks are pessimistic: a query item ranks after every candidate with an equal score, so a method that
gives all items one constant score gets the worst rank, not the best. Other query items of the same user are
candidates like any other item (the usual full-ranking convention), so two query items tied with each other
both take the lower rank.

The per-user functions return arrays keyed by metric name with NaN for users without query rows;
``summarize`` averages them into the record's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "CONSUMES",
    "DIRECTIONS",
    "FED_BY",
    "METRICS",
    "Metric",
    "directions",
    "item_rank_per_item",
    "query_ranks",
    "ranking_per_user",
    "rating_per_item",
    "rating_per_user",
    "rating_pooled",
    "register",
    "sampled_per_pair",
    "sampled_ranks",
    "summarize",
    "validate_predictions",
]

DIRECTIONS = ("higher", "lower")
CONSUMES = ("ratings", "ranks", "sampled_ranks", "item_ratings", "item_ranks")
# The prediction kind (``tasks.protocols.PREDICTIONS``) each input is computed from: ratings from predicted
# ratings, full, sampled and cold-item ranks from the scores of every candidate.
FED_BY: dict[str, str] = {
    "ratings": "ratings",
    "ranks": "ranking",
    "sampled_ranks": "ranking",
    "item_ratings": "ratings",
    "item_ranks": "ranking",
}

# comparisons done per chunk in ``query_ranks``: 4M booleans (4 MiB) plus one gathered score block
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Metric:
    """A metric's name, which way is better (``higher``/``lower``) and what it consumes."""

    name: str
    direction: str
    consumes: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction {self.direction!r} is not one of {DIRECTIONS}")
        if self.consumes not in CONSUMES:
            raise ValueError(f"metric {self.name!r}: consumes {self.consumes!r} is not one of {CONSUMES}")

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "lower" else a > b


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to ``METRICS``; a duplicate name or an object that is not a ``Metric`` fails."""
    if not isinstance(metric, Metric):
        raise TypeError(f"register() takes a Metric, got {type(metric).__name__}")
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def directions(names: list[str] | tuple[str, ...] | dict[str, float]) -> dict[str, str]:
    """The declared direction of each named metric (for a run record); an unknown name fails."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise KeyError(f"metric(s) {unknown} are not registered; known: {sorted(METRICS)}")
    return {n: METRICS[n].direction for n in names}


for _name, _direction, _consumes, _text in (
    ("mae", "lower", "ratings", "mean absolute error pooled over all query ratings"),
    ("rmse", "lower", "ratings", "root mean squared error pooled over all query ratings"),
    ("user_mae", "lower", "ratings", "per-user MAE, averaged over users"),
    ("user_rmse", "lower", "ratings", "per-user RMSE, averaged over users"),
    ("ndcg@10", "higher", "ranks", "binary-relevance NDCG of the top 10 of the full ranking, per user"),
    ("hr@10", "higher", "ranks", "1 if any query item is in the top 10 of the full ranking, per user"),
    ("recall@10", "higher", "ranks", "query items in the top 10 over all query items, per user"),
    ("mrr", "higher", "ranks", "1 / rank of the user's best-ranked query item, per user"),
    ("sampled_hr@10", "higher", "sampled_ranks", "1 if the test item beats all but 9 of its negatives"),
    ("sampled_ndcg@10", "higher", "sampled_ranks", "1 / log2(rank + 1) among the negatives if rank <= 10"),
    ("sampled_mrr", "higher", "sampled_ranks", "1 / rank among the negatives"),
    ("item_mae", "lower", "item_ratings", "per-cold-item MAE, averaged over cold items"),
    ("item_rmse", "lower", "item_ratings", "per-cold-item RMSE, averaged over cold items"),
    (
        "item_ndcg@10",
        "higher",
        "item_ranks",
        "1 / log2(rank + 1) if rank <= 10, the cold item's rank among all cold items for a query user; "
        "per cold item, averaged over cold items",
    ),
    ("item_hr@10", "higher", "item_ranks", "1 if the cold item ranks in the top 10 of the cold items"),
    ("item_mrr", "higher", "item_ranks", "1 / the cold item's rank among the cold items"),
):
    register(Metric(_name, _direction, _consumes, _text))


# -- checks --------------------------------------------------------------------------------------------


def validate_predictions(pred: object, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Return ``pred`` as a float array, or raise ValueError saying what is wrong with it.

    A method must return a real-valued numpy array of exactly ``expected_shape`` with finite values; the
    runner records anything else as a failed run with this message.
    """
    if not isinstance(pred, np.ndarray):
        raise ValueError(f"predictions must be a numpy array, got {type(pred).__name__}")
    if pred.dtype == bool or not (
        np.issubdtype(pred.dtype, np.floating) or np.issubdtype(pred.dtype, np.integer)
    ):
        raise ValueError(f"predictions must be real numbers, got dtype {pred.dtype}")
    if pred.shape != tuple(expected_shape):
        raise ValueError(f"predictions have shape {pred.shape}, expected {tuple(expected_shape)}")
    bad = ~np.isfinite(pred)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"predictions contain {int(bad.sum())} non-finite value(s) (NaN/inf), the first at index {first}"
        )
    return pred if np.issubdtype(pred.dtype, np.floating) else pred.astype(np.float64)


def _check_index(values: np.ndarray, size: int, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or values.size == 0):
        raise ValueError(f"{what} must be a 1-d integer array, got shape {values.shape} dtype {values.dtype}")
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{what} has values outside 0..{size - 1}")
    return values


def _check_ranks(ranks: np.ndarray, index: np.ndarray, size: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks and the checked unit index (``_check_index``) they belong to, of the same shape."""
    ranks = np.asarray(ranks)
    index = _check_index(index, size, what)
    if ranks.shape != index.shape:
        raise ValueError(f"ranks has shape {ranks.shape}, {what} has {index.shape}")
    if ranks.size and ranks.min() < 1:
        raise ValueError("ranks are 1-based; found a rank below 1")
    return ranks, index


# -- full ranking ---------------------------------------------------------------------------------------


def query_ranks(
    scores: np.ndarray,
    exclude_user: np.ndarray,
    exclude_col: np.ndarray,
    query_user: np.ndarray,
    query_col: np.ndarray,
    chunk_elements: int = _CHUNK_ELEMENTS,
) -> np.ndarray:
    """1-based pessimistic rank of each query pair among its user's candidates.

    ``scores`` is (B, C): row = user position in the batch, column = candidate. The pairs
    (``exclude_user``, ``exclude_col``) are removed from their user's candidates (the support items);
    (``query_user``, ``query_col``) are the pairs to rank. ``rank = #{c candidate of u : score[u, c] >=
    score[u, q]}``, which counts ``q`` itself and every tied candidate (other query items included). Query
    pairs are processed in chunks of about ``chunk_elements`` comparisons, so memory stays bounded.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d (users, candidates), got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain non-finite values (NaN/inf); ranks would be meaningless")
    n_rows, n_cols = scores.shape
    ex_u = _check_index(exclude_user, n_rows, "exclude_user")
    ex_c = _check_index(exclude_col, n_cols, "exclude_col")
    q_u = _check_index(query_user, n_rows, "query_user")
    q_c = _check_index(query_col, n_cols, "query_col")
    if len(ex_u) != len(ex_c) or len(q_u) != len(q_c):
        raise ValueError("exclude_user/exclude_col and query_user/query_col must have equal lengths")

    ex_key = np.unique(ex_u * n_cols + ex_c)
    clash = np.isin(q_u * n_cols + q_c, ex_key)
    if clash.any():
        i = int(np.argmax(clash))
        raise ValueError(f"query pair {i} (row {q_u[i]}, column {q_c[i]}) is also an excluded candidate")

    # excluded scores as a padded (B, max excluded per row) block; NaN padding never compares >= anything
    ex_u, ex_c = np.divmod(ex_key, n_cols)
    counts = np.bincount(ex_u, minlength=n_rows)
    width = int(counts.max(initial=0))
    excluded = np.full((n_rows, width), np.nan, dtype=np.float64)
    if width:
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        excluded[ex_u, np.arange(len(ex_u)) - starts[ex_u]] = scores[ex_u, ex_c]

    q_score = scores[q_u, q_c]
    ranks = np.empty(len(q_u), dtype=np.int64)
    step = max(1, chunk_elements // max(n_cols, 1))
    for lo in range(0, len(q_u), step):
        hi = min(lo + step, len(q_u))
        rows, s = q_u[lo:hi], q_score[lo:hi, None]
        at_least = np.count_nonzero(scores[rows] >= s, axis=1)
        if width:
            at_least -= np.count_nonzero(excluded[rows] >= s, axis=1)
        ranks[lo:hi] = at_least
    return ranks


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ranking_per_user(
    ranks: np.ndarray, query_user: np.ndarray, n_users: int, k: int = 10
) -> dict[str, np.ndarray]:
    """Per-user ``ndcg@k``, ``hr@k``, ``recall@k``, ``mrr`` from the ranks of their query items.

    With Q the user's query items and T the top k: NDCG = sum over q in Q∩T of 1 / log2(rank_q + 1),
    divided by the ideal sum_{j=1}^{min(|Q|, k)} 1 / log2(j + 1); HR = 1 if Q∩T is non-empty; recall =
    |Q∩T| / |Q| (RecBole's convention, so a user with more than k query items cannot reach 1); MRR = 1 /
    the best rank in Q. Users without query rows get NaN in every array.
    """
    ranks, users = _check_ranks(ranks, query_user, n_users, "query_user")
    n_query = np.bincount(users, minlength=n_users)
    hit = ranks <= k
    gain = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    dcg = np.bincount(users, weights=gain, minlength=n_users)
    hits = np.bincount(users, weights=hit.astype(np.float64), minlength=n_users)
    ideal = np.concatenate([[0.0], np.cumsum(_discounts(k))])[np.minimum(n_query, k)]
    best = np.full(n_users, np.inf)
    np.minimum.at(best, users, ranks.astype(np.float64))

    has = n_query > 0
    out = {
        f"ndcg@{k}": dcg / np.where(has, ideal, 1.0),
        f"hr@{k}": (hits > 0).astype(np.float64),
        f"recall@{k}": hits / np.maximum(n_query, 1),
        "mrr": 1.0 / best,
    }
    for values in out.values():
        values[~has] = np.nan
    return out


# -- sampled ranking (CDRIB) ---------------------------------------------------------------------------


def sampled_ranks(scores_pos: np.ndarray, scores_neg: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank of each test item among its negatives: 1 + #{negatives scored >= it}."""
    pos = np.asarray(scores_pos)
    neg = np.asarray(scores_neg)
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0]:
        raise ValueError(f"expected scores_pos (P,) and scores_neg (P, N); got {pos.shape} and {neg.shape}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("sampled scores contain non-finite values (NaN/inf)")
    return 1 + np.count_nonzero(neg >= pos[:, None], axis=1)


def sampled_per_pair(ranks: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Per test pair: ``sampled_hr@k``, ``sampled_ndcg@k`` (1/log2(rank+1) if rank <= k), ``sampled_mrr``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks <= k
    return {
        f"sampled_hr@{k}": hit.astype(np.float64),
        f"sampled_ndcg@{k}": np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0),
        "sampled_mrr": 1.0 / ranks,
    }


# -- ratings --------------------------------------------------------------------------------------------


def _rating_inputs(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if pred.ndim != 1 or pred.shape != truth.shape:
        raise ValueError(f"pred and truth must be 1-d of equal length; got {pred.shape} and {truth.shape}")
    return pred, truth


def rating_pooled(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``mae`` and ``rmse`` pooled over all query ratings (each rating weighs the same, as in PTUPCDR)."""
    pred, truth = _rating_inputs(pred, truth)
    if pred.size == 0:
        return {"mae": float("nan"), "rmse": float("nan")}
    err = pred - truth
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt(np.square(err).mean()))}


def rating_per_user(
    pred: np.ndarray, truth: np.ndarray, query_user: np.ndarray, n_users: int
) -> dict[str, np.ndarray]:
    """Per-user ``user_mae`` and ``user_rmse`` (each user weighs the same); NaN for users without queries."""
    pred, truth = _rating_inputs(pred, truth)
    users = _check_index(query_user, n_users, "query_user")
    if users.shape != pred.shape:
        raise ValueError(f"query_user has shape {users.shape}, pred has {pred.shape}")
    err = pred - truth
    n = np.bincount(users, minlength=n_users).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = np.bincount(users, weights=np.abs(err), minlength=n_users) / n
        rmse = np.sqrt(np.bincount(users, weights=np.square(err), minlength=n_users) / n)
    return {"user_mae": mae, "user_rmse": rmse}


# -- cold items -----------------------------------------------------------------------------------------


def rating_per_item(
    pred: np.ndarray, truth: np.ndarray, query_item: np.ndarray, n_items: int
) -> dict[str, np.ndarray]:
    """Per cold item ``item_mae`` and ``item_rmse`` (each cold item weighs the same); NaN without queries."""
    per = rating_per_user(pred, truth, query_item, n_items)
    return {"item_mae": per["user_mae"], "item_rmse": per["user_rmse"]}


def item_rank_per_item(
    ranks: np.ndarray, query_item: np.ndarray, n_items: int, k: int = 10
) -> dict[str, np.ndarray]:
    """Per cold item: ``item_ndcg@k``, ``item_hr@k``, ``item_mrr``, each the mean over its query pairs.

    ``ranks[j]`` is the 1-based pessimistic rank of query pair j's cold item among the task's cold items,
    scored for pair j's user (``query_ranks``); ``query_item[j]`` its cold item's index (0 .. n_items-1).
    Per pair, one relevant candidate: NDCG@k = 1 / log2(rank + 1) if rank <= k, else 0; HR@k = 1 if rank <=
    k; reciprocal rank = 1 / rank. Cold items without query pairs get NaN.
    """
    ranks, items = _check_ranks(ranks, query_item, n_items, "query_item")
    hit = ranks <= k
    per_pair = {
        f"item_ndcg@{k}": np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0),
        f"item_hr@{k}": hit.astype(np.float64),
        "item_mrr": 1.0 / ranks,
    }
    n = np.bincount(items, minlength=n_items).astype(np.float64)
    out = {}
    for name, values in per_pair.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.bincount(items, weights=values, minlength=n_items) / n
    return out


# -- summary --------------------------------------------------------------------------------------------


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-user (or per-pair) array, ignoring NaN; NaN when nothing is left."""
    out = {}
    for name, values in per_user.items():
        values = np.asarray(values, dtype=np.float64)
        kept = values[~np.isnan(values)]
        out[name] = float(kept.mean()) if kept.size else float("nan")
    return out

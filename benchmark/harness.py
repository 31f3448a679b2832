"""From a verified split artifact to what a method sees, and from its predictions to metrics.

``encode`` turns string IDs into dense indices once; ``make_view`` builds the budgeted ``TrainView``;
``evaluate`` feeds cold users to ``predict`` in batches and scores the answers against labels that only
this module holds. Validation (for the method's model selection) and test go through the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark import metrics
from benchmark.api import Budget, ColdBatch, Interactions, TrainView, _AdaptMeter
from tasks.artifact import TaskData
from tasks.spec import TaskSpec

BATCH_USERS = 256
Predict = Callable[[ColdBatch], np.ndarray]


@dataclass(frozen=True)
class EncodedTable:
    rows: Interactions
    domain: np.ndarray


@dataclass(frozen=True)
class EncodedTask:
    spec: TaskSpec
    split_hash: str
    users: np.ndarray
    items: np.ndarray
    domains: tuple[str, ...]
    item_domain: np.ndarray
    tables: dict[str, EncodedTable]
    negatives: np.ndarray | None  # (query rows, n) item indices, family C

    @property
    def target_items(self) -> np.ndarray:
        return np.flatnonzero(self.item_domain == self.domains.index(self.spec.target))


def encode(task: TaskData, spec: TaskSpec) -> EncodedTask:
    """Dense indices: users sorted by raw ID, items sorted by (domain, raw ID), over every table."""
    frames = {name: t for name, t in task.tables.items() if name != "negatives"}
    domains = (*spec.source, spec.target)
    everything = pd.concat(frames.values(), ignore_index=True)
    users = np.sort(everything["user"].unique().to_numpy(dtype=object))
    pairs = everything[["domain", "item"]].drop_duplicates()
    pairs = pairs.assign(_d=pairs["domain"].map({d: i for i, d in enumerate(domains)}))
    pairs = pairs.sort_values(["_d", "item"], kind="stable")
    items = pairs["item"].to_numpy(dtype=object)
    item_domain = pairs["_d"].to_numpy(dtype=np.int64)
    item_index = pd.Index(items)
    if not item_index.is_unique:
        raise ValueError(f"task {spec.id}: an item ID appears in two domains")

    def enc(frame: pd.DataFrame) -> EncodedTable:
        rows = Interactions(
            user=np.searchsorted(users, frame["user"].to_numpy(dtype=object)),
            item=item_index.get_indexer(frame["item"]),
            rating=frame["rating"].to_numpy(dtype=np.float64, na_value=np.nan),
            ts=frame["ts"].fillna(-1).to_numpy(dtype=np.int64),
        )
        domain = frame["domain"].map({d: i for i, d in enumerate(domains)}).to_numpy(dtype=np.int64)
        return EncodedTable(rows, domain)

    negatives = None
    if "negatives" in task.tables:
        neg = task.tables["negatives"]
        flat = item_index.get_indexer(np.concatenate(neg["negatives"].to_numpy()))
        negatives = flat.reshape(len(neg), -1)
    return EncodedTask(
        spec,
        task.split_hash,
        users,
        items,
        domains,
        item_domain,
        {n: enc(f) for n, f in frames.items()},
        negatives,
    )


@dataclass
class Evaluation:
    """Per-user metric arrays (with the evaluated users), pooled metrics, and raw predictions."""

    users: np.ndarray
    per_user: dict[str, np.ndarray]
    pooled: dict[str, float]
    predictions: pd.DataFrame | None = None
    adapt_steps_used: int = 0
    seconds_predict: float = 0.0
    seconds_eval: float = 0.0
    extra: dict = field(default_factory=dict)


def _subset(rows: Interactions, keep: np.ndarray, positions: np.ndarray) -> Interactions:
    return Interactions(positions[rows.user[keep]], rows.item[keep], rows.rating[keep], rows.ts[keep])


def cold_batches(
    enc: EncodedTask, view: TrainView, support: str, query: str, adapt_limit: int
) -> Iterator[tuple[ColdBatch, np.ndarray, np.ndarray]]:
    """Batches of the users that have query rows; yields (batch, query row ids, support row ids)."""
    sup, qry = enc.tables[support].rows, enc.tables[query].rows
    users = np.unique(qry.user)
    candidates = enc.target_items
    for begin in range(0, len(users), BATCH_USERS):
        chunk = users[begin : begin + BATCH_USERS]
        pos = np.full(len(enc.users), -1)
        pos[chunk] = np.arange(len(chunk))
        s_keep = pos[sup.user] >= 0
        q_rows = np.flatnonzero(pos[qry.user] >= 0)
        batch = ColdBatch(
            users=chunk,
            support=_subset(sup, s_keep, pos),
            history=view.batch_history(chunk),
            _meter=_AdaptMeter(adapt_limit),
        )
        if enc.spec.family == "R":
            batch.query_user = pos[qry.user[q_rows]]
            batch.query_item = qry.item[q_rows]
        else:
            batch.candidates = candidates
        yield batch, q_rows, np.flatnonzero(s_keep)


def evaluate(
    enc: EncodedTask,
    view: TrainView,
    predict: Predict,
    support: str,
    query: str,
    adapt_limit: int,
    keep_predictions: bool = False,
) -> Evaluation:
    qry = enc.tables[query].rows
    sup = enc.tables[support].rows
    offset = int(enc.target_items[0]) if len(enc.target_items) else 0
    per_user: list[dict[str, np.ndarray]] = []
    users: list[np.ndarray] = []
    pred_parts: list[pd.DataFrame] = []
    pooled_pred: list[np.ndarray] = []
    sampled: list[dict[str, np.ndarray]] = []
    steps = 0
    t_predict = t_eval = 0.0
    for batch, q_rows, s_rows in cold_batches(enc, view, support, query, adapt_limit):
        start = time.perf_counter()
        out = np.asarray(predict(batch))
        t_predict += time.perf_counter() - start
        steps = max(steps, batch._meter.used)
        start = time.perf_counter()
        q_user = batch.query_user if batch.wants_ratings else np.searchsorted(batch.users, qry.user[q_rows])
        if batch.wants_ratings:
            metrics.validate_predictions(out, (len(q_rows),))
            truth = qry.rating[q_rows]
            per_user.append(metrics.rating_per_user(out, truth, q_user, len(batch)))
            pooled_pred.append(np.stack([out, truth]))
            if keep_predictions:
                pred_parts.append(
                    pd.DataFrame(
                        {
                            "user": enc.users[qry.user[q_rows]],
                            "item": enc.items[qry.item[q_rows]],
                            "prediction": out,
                            "rating": truth,
                        }
                    )
                )
        else:
            metrics.validate_predictions(out, (len(batch), len(batch.candidates)))
            q_col = qry.item[q_rows] - offset
            ranks = metrics.query_ranks(out, batch.support.user, sup.item[s_rows] - offset, q_user, q_col)
            per_user.append(metrics.ranking_per_user(ranks, q_user, len(batch)))
            if enc.negatives is not None and query == "query":
                neg = enc.negatives[q_rows] - offset
                s_ranks = metrics.sampled_ranks(out[q_user, q_col], out[q_user[:, None], neg])
                sampled.append(
                    {
                        "user": batch.users[q_user],
                        **metrics.sampled_per_pair(s_ranks),
                    }
                )
            if keep_predictions:
                pred_parts.append(
                    pd.DataFrame(
                        {
                            "user": enc.users[qry.user[q_rows]],
                            "item": enc.items[qry.item[q_rows]],
                            "rank": ranks,
                        }
                    )
                )
        users.append(batch.users)
        t_eval += time.perf_counter() - start
    start = time.perf_counter()
    all_users = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
    merged = {k: np.concatenate([p[k] for p in per_user]) for k in (per_user[0] if per_user else {})}
    pooled = metrics.summarize(merged)
    if pooled_pred:
        pred, truth = np.concatenate(pooled_pred, axis=1)
        pooled |= metrics.rating_pooled(pred, truth)
    if sampled:
        pairs = {k: np.concatenate([s[k] for s in sampled]) for k in sampled[0]}
        pair_user = pairs.pop("user")
        pooled |= metrics.summarize(pairs)  # CDRIB averages over test pairs
        frame = pd.DataFrame(pairs).assign(user=pair_user).groupby("user").mean()
        for name in pairs:  # per-user means of the pair metrics, for paired comparisons
            merged[name] = frame[name].reindex(all_users).to_numpy()
    t_eval += time.perf_counter() - start
    predictions = pd.concat(pred_parts, ignore_index=True) if pred_parts else None
    return Evaluation(all_users, merged, pooled, predictions, steps, t_predict, t_eval)


def make_view(enc: EncodedTask, budget: Budget, deadline: float) -> TrainView:
    train = enc.tables["train"]
    spec = enc.spec
    view: TrainView

    def validator(predict: Predict) -> float:
        result = evaluate(enc, view, predict, "valid_support", "valid_query", budget.adapt_steps)
        return -result.pooled["mae"] if spec.family == "R" else result.pooled["ndcg@10"]

    view = TrainView(
        task_id=spec.id,
        family=spec.family,
        domains=enc.domains,
        source_domains=tuple(spec.source),
        target_domain=spec.target,
        explicit=spec.family == "R",
        n_users=len(enc.users),
        item_domain=enc.item_domain,
        train=train.rows,
        train_domain=train.domain,
        budget=budget,
        validator=validator,
        deadline=deadline,
    )
    return view


def budget_of(spec: TaskSpec, n_train: int) -> Budget:
    return Budget(
        train_examples=int(spec.budget.train_examples_multiple * n_train),
        adapt_steps=spec.budget.adapt_steps,
        wall_seconds=spec.budget.wall_seconds,
    )

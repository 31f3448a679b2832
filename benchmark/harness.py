"""From a verified split artifact to what a method sees, and from its predictions to metrics.

``encode`` turns string IDs into dense indices once; ``make_view`` builds the budgeted ``TrainView``;
``evaluate`` feeds cold users to ``predict`` in batches and scores the answers against labels that only
this module holds. Validation (for the method's model selection) and test go through the same code.

What a batch asks for (ratings of query pairs, or scores of every candidate) is the family's declared
prediction kind, and which metric code runs is what the task's metrics consume (``Metric.consumes``): one
scorer per input, so no part of this module names a family.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmark import metrics, protocols
from benchmark.api import AdaptMeter, Budget, ColdBatch, ColdItemBatch, Interactions, TrainView
from benchmark.fitting import rating_range_of
from tasks.artifact import TaskData
from tasks.spec import TaskSpec
from tasks.split import POOL

BATCH_USERS = 256  # cold users per batch; also query users per batch of a cold-item ranking
BATCH_ITEMS = 256  # cold items per batch of a cold-item rating task
Predict = Callable[[ColdBatch | ColdItemBatch], np.ndarray]
# what ``cold_batches`` yields: the batch, its query and support row ids, and the cold units it scores
# (users, or items for the cold-item families), disjoint over the batches of one evaluation
Batch = tuple[ColdBatch | ColdItemBatch, np.ndarray, np.ndarray, np.ndarray]


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

    def rows_of(self, name: str | None) -> Interactions:
        """The rows of table ``name``; None is an empty table (a withheld support)."""
        if name is None:
            return Interactions(*(np.zeros(0, dtype=d) for d in (np.int64, np.int64, np.float64, np.int64)))
        return self.tables[name].rows

    @functools.cached_property
    def pretrain_digest(self) -> str:
        """sha256 over all that ``TrainView.validate_pretrain`` and training read: the user and item universe
        (IDs, item domains), the training table (source histories included) and the validation query.
        Once per task: cached on the (frozen) instance."""
        digest = hashlib.sha256()
        for ids in (self.users, self.items):
            digest.update("\0".join(map(str, ids)).encode() + b"\1")
        digest.update(np.ascontiguousarray(self.item_domain).tobytes())
        for name in ("train", "valid_query"):
            table = self.tables[name]
            for column in (table.rows.user, table.rows.item, table.rows.rating, table.rows.ts, table.domain):
                digest.update(name.encode() + np.ascontiguousarray(column).tobytes())
        return digest.hexdigest()


def _ids(columns: list[pd.Series]) -> pa.ChunkedArray:
    """String IDs of several tables as one Arrow column (no copy for pandas' Arrow-backed strings)."""
    chunks: list[pa.Array] = []
    for column in columns:
        arrow = pa.array(column, type=pa.large_string())  # a ChunkedArray when pandas holds one
        chunks.extend(arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow])
    ids = pa.chunked_array(chunks, type=pa.large_string())
    if ids.null_count:
        raise ValueError("a user, item or domain ID is missing")
    return ids


def _sort_codes(uniques: pa.Array | pa.Table, keys: list[tuple[str, str]] | None = None) -> np.ndarray:
    """Each unique's rank in sorted order. Arrow compares strings by UTF-8 bytes, i.e. by code point, the
    order of ``np.sort`` on Python strings, so the indices match those of the earlier ``np.sort`` encoder."""
    order = pc.sort_indices(uniques, sort_keys=keys) if keys else pc.sort_indices(uniques)
    order = order.to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


NEGATIVE_BLOCK = 256  # rows of string negatives looked up at once: bounds the Arrow copy of their IDs


def _negatives(column: pd.Series, items: pa.Array, target_items: np.ndarray) -> np.ndarray:
    """(query rows, n) item indices. The artifact stores each row's negatives either as raw item IDs
    (strings) or as positions in the sorted target item list (integers); both end as global indices."""
    rows = column.to_numpy()
    if len(rows) == 0:
        return np.zeros((0, 0), dtype=np.int64)
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("negatives: every query row needs the same number of sampled items")
    if np.asarray(rows[0]).dtype.kind in "iu":
        return target_items[np.stack(rows)]
    out = np.empty((len(rows), width), dtype=np.int64)
    for begin in range(0, len(rows), NEGATIVE_BLOCK):
        ids = pa.array(np.concatenate(rows[begin : begin + NEGATIVE_BLOCK]), type=pa.large_string())
        found = pc.index_in(ids, value_set=items)
        if found.null_count:
            raise ValueError("negatives: a sampled item is not an item of the task")
        out[begin : begin + NEGATIVE_BLOCK] = found.to_numpy().reshape(-1, width)
    return out


def encode(task: TaskData, spec: TaskSpec) -> EncodedTask:
    """Dense indices: users sorted by raw ID, items sorted by (domain order, raw ID), over every table
    (the pool too: the K tasks of a group share their item universe).

    Hash-based (Arrow ``unique`` / ``index_in``) rather than per-table ``get_indexer`` on an object Index:
    the same indices at a fraction of the cost, since every bench worker pays it once per task.
    """
    frames = {name: t for name, t in task.tables.items() if name != "negatives"}
    domains = (*spec.source, spec.target)
    sizes = np.cumsum([len(f) for f in frames.values()])[:-1]

    user_ids = _ids([f["user"] for f in frames.values()])
    user_set = pc.unique(user_ids)
    user_rank = _sort_codes(user_set)
    user_code = user_rank[pc.index_in(user_ids, value_set=user_set).to_numpy()]
    users = np.empty(len(user_set), dtype=object)
    users[user_rank] = user_set.to_numpy(zero_copy_only=False)

    domain_set = pa.array(domains, pa.large_string())
    row_domain = pc.index_in(_ids([f["domain"] for f in frames.values()]), value_set=domain_set)
    if row_domain.null_count:
        raise ValueError(f"task {spec.id}: a row's domain is not one of {domains}")
    row_domain = row_domain.to_numpy().astype(np.int64)
    item_ids = _ids([f["item"] for f in frames.values()])
    item_set = pc.unique(item_ids)
    item_code = pc.index_in(item_ids, value_set=item_set).to_numpy()
    set_domain = np.zeros(len(item_set), dtype=np.int64)
    set_domain[item_code] = row_domain
    if (set_domain[item_code] != row_domain).any():
        raise ValueError(f"task {spec.id}: an item ID appears in two domains")
    keys = [("domain", "ascending"), ("item", "ascending")]
    item_rank = _sort_codes(pa.table({"domain": set_domain, "item": item_set}), keys)
    item_code = item_rank[item_code]
    items = np.empty(len(item_set), dtype=object)
    items[item_rank] = item_set.to_numpy(zero_copy_only=False)
    item_domain = np.empty(len(item_set), dtype=np.int64)
    item_domain[item_rank] = set_domain

    tables = {}  # every table but the pool, which only widens the item universe (tasks.split.POOL)
    for (name, frame), user, item, domain in zip(
        frames.items(),
        np.split(user_code, sizes),
        np.split(item_code, sizes),
        np.split(row_domain, sizes),
        strict=True,
    ):
        if name == POOL:
            continue
        rating = frame["rating"].to_numpy(dtype=np.float64, na_value=np.nan)
        ts = frame["ts"].fillna(-1).to_numpy(dtype=np.int64)
        tables[name] = EncodedTable(Interactions(user, item, rating, ts), domain)

    negatives = None
    if "negatives" in task.tables:
        sorted_items = pa.array(items, type=pa.large_string())
        target = np.flatnonzero(item_domain == domains.index(spec.target))
        negatives = _negatives(task.tables["negatives"]["negatives"], sorted_items, target)
    return EncodedTask(spec, task.split_hash, users, items, domains, item_domain, tables, negatives)


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
    enc: EncodedTask, view: TrainView, support: str | None, query: str, adapt_limit: int
) -> Iterator[Batch]:
    """The batches of one evaluation, by what the family holds out (``FamilyProtocol.cold``).

    ``support`` None withholds the support: every batch has empty support rows (``validate_pretrain``)."""
    if protocols.get(enc.spec.family).cold == "items":
        return cold_item_batches(enc, view, support, query, adapt_limit)
    return cold_user_batches(enc, view, support, query, adapt_limit)


def cold_user_batches(
    enc: EncodedTask, view: TrainView, support: str | None, query: str, adapt_limit: int
) -> Iterator[Batch]:
    """Batches of the users that have query rows."""
    sup, qry = enc.rows_of(support), enc.tables[query].rows
    users = np.unique(qry.user)
    candidates = enc.target_items
    ratings = protocols.get(enc.spec.family).prediction == "ratings"
    for begin in range(0, len(users), BATCH_USERS):
        chunk = users[begin : begin + BATCH_USERS]
        pos = np.full(len(enc.users), -1)
        pos[chunk] = np.arange(len(chunk))
        s_keep = pos[sup.user] >= 0
        q_rows = np.flatnonzero(pos[qry.user] >= 0)
        batch = ColdBatch(
            users=chunk,
            support=_subset(sup, s_keep, pos),
            history=view._batch_history(chunk),  # the cold users' own input: not charged to the budget
            meter=AdaptMeter(adapt_limit),
        )
        if ratings:
            batch.query_user = pos[qry.user[q_rows]]
            batch.query_item = qry.item[q_rows]
        else:
            batch.candidates = candidates
        yield batch, q_rows, np.flatnonzero(s_keep), chunk


def _item_batch(
    enc: EncodedTask, view: TrainView, sup: Interactions, items: np.ndarray, adapt_limit: int
) -> tuple[ColdItemBatch, np.ndarray]:
    """A ``ColdItemBatch`` of ``items`` (its support and the support users' source history), and the
    support table's row ids it holds."""
    s_rows = np.flatnonzero(np.isin(sup.item, items))
    s_rows = s_rows[np.lexsort((sup.user[s_rows], sup.ts[s_rows], sup.item[s_rows]))]
    support = Interactions(sup.user[s_rows], sup.item[s_rows], sup.rating[s_rows], sup.ts[s_rows])
    support_users = np.unique(support.user)
    batch = ColdItemBatch(
        items=items,
        support=support,
        support_users=support_users,
        history=view._batch_history(support_users),  # the cold items' own input: not charged
        meter=AdaptMeter(adapt_limit),
    )
    return batch, s_rows


def cold_item_batches(
    enc: EncodedTask, view: TrainView, support: str | None, query: str, adapt_limit: int
) -> Iterator[Batch]:
    """Batches of cold items (families IR, IL): the cold items are those with query rows.

    Ratings (IR): the cold items in chunks, each batch with its items' query pairs. Ranking (IL): every
    cold item in every batch (a query pair's item is ranked among all of them), the query users in chunks;
    the first batch carries the units (all cold items), the others none."""
    sup, qry = enc.rows_of(support), enc.tables[query].rows
    items = np.unique(qry.item)
    if protocols.get(enc.spec.family).prediction == "ratings":
        for begin in range(0, len(items), BATCH_ITEMS):
            chunk = items[begin : begin + BATCH_ITEMS]
            batch, s_rows = _item_batch(enc, view, sup, chunk, adapt_limit)
            q_rows = np.flatnonzero(np.isin(qry.item, chunk))
            batch.query_user, batch.query_item = qry.user[q_rows], qry.item[q_rows]
            yield batch, q_rows, s_rows, chunk
        return
    whole, s_rows = _item_batch(enc, view, sup, items, adapt_limit)
    users = np.unique(qry.user)
    for begin in range(0, len(users), BATCH_USERS):
        chunk = users[begin : begin + BATCH_USERS]
        batch = dataclasses.replace(whole, query_users=chunk, meter=AdaptMeter(adapt_limit))
        q_rows = np.flatnonzero(np.isin(qry.user, chunk))
        yield batch, q_rows, s_rows, items if begin == 0 else items[:0]


@dataclass
class _Answer:
    """One batch's checked predictions with the rows they answer: query and support row ids of the tables
    evaluated, and each query row's position in the batch."""

    batch: ColdBatch | ColdItemBatch
    out: np.ndarray
    q_rows: np.ndarray
    s_rows: np.ndarray
    q_user: np.ndarray


class _Scorer:
    """The metrics of one input (``Metric.consumes``): fed batch by batch, summed up at the end.

    ``add`` keeps what the batch contributes and returns its rows of the predictions file, if this input
    writes them; ``finish`` returns the per-user arrays and pooled values. Nothing is returned when no batch
    was added, as before any scorer existed."""

    def __init__(self, enc: EncodedTask, support: str | None, query: str) -> None:
        self.enc = enc
        self.qry = enc.tables[query].rows
        self.sup = enc.rows_of(support)
        target = enc.target_items  # the candidates: a score matrix's columns, in this order
        self.column = np.full(len(enc.items), -1, dtype=np.int64)  # item index -> its column (any layout)
        self.column[target] = np.arange(len(target))

    @staticmethod
    def applies(enc: EncodedTask, query: str) -> bool:
        """Whether the table ``query`` of ``enc`` has what this input needs."""
        return True

    def add(self, answer: _Answer, keep_predictions: bool) -> pd.DataFrame | None:
        raise NotImplementedError

    def predictions(self, rows: np.ndarray, **columns: np.ndarray) -> pd.DataFrame:
        """The predictions file's rows for query ``rows``: user and item ids, then ``columns``."""
        users, items = self.enc.users[self.qry.user[rows]], self.enc.items[self.qry.item[rows]]
        return pd.DataFrame({"user": users, "item": items, **columns})

    def finish(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        raise NotImplementedError


class _Ratings(_Scorer):
    """``ratings``: per-user MAE/RMSE per batch, MAE/RMSE pooled over all query ratings at the end."""

    def __init__(self, enc: EncodedTask, support: str | None, query: str) -> None:
        super().__init__(enc, support, query)
        self.per_user: list[dict[str, np.ndarray]] = []
        self.pairs: list[np.ndarray] = []

    def add(self, answer: _Answer, keep_predictions: bool) -> pd.DataFrame | None:
        truth = self.qry.rating[answer.q_rows]
        if isinstance(answer.batch, ColdBatch):  # per cold item: ``_ItemRatings``
            self.per_user.append(metrics.rating_per_user(answer.out, truth, answer.q_user, len(answer.batch)))
        self.pairs.append(np.stack([answer.out, truth]))
        if not keep_predictions:
            return None
        return self.predictions(answer.q_rows, prediction=answer.out, rating=truth)

    def finish(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        if not self.pairs:
            return {}, {}
        parts = self.per_user  # none in a cold-item family: its per-item errors are ``_ItemRatings``'s
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
        pred, truth = np.concatenate(self.pairs, axis=1)
        return merged, metrics.summarize(merged) | metrics.rating_pooled(pred, truth)


class _Ranks(_Scorer):
    """``ranks``: each query item's pessimistic rank among every target item but the user's support."""

    def __init__(self, enc: EncodedTask, support: str | None, query: str) -> None:
        super().__init__(enc, support, query)
        self.per_user: list[dict[str, np.ndarray]] = []

    def add(self, answer: _Answer, keep_predictions: bool) -> pd.DataFrame | None:
        q_col = self.column[self.qry.item[answer.q_rows]]
        s_col = self.column[self.sup.item[answer.s_rows]]
        ranks = metrics.query_ranks(answer.out, answer.batch.support.user, s_col, answer.q_user, q_col)
        self.per_user.append(metrics.ranking_per_user(ranks, answer.q_user, len(answer.batch)))
        if not keep_predictions:
            return None
        return self.predictions(answer.q_rows, rank=ranks)

    def finish(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        if not self.per_user:
            return {}, {}
        merged = {k: np.concatenate([p[k] for p in self.per_user]) for k in self.per_user[0]}
        return merged, metrics.summarize(merged)


class _SampledRanks(_Scorer):
    """``sampled_ranks`` (CDRIB's protocol): each test item's rank among its stored negatives. Pooled over
    test pairs as CDRIB does; per user, the mean over the user's pairs, for paired comparisons. Only the
    test query has stored negatives, so validation computes none."""

    def __init__(self, enc: EncodedTask, support: str | None, query: str) -> None:
        super().__init__(enc, support, query)
        self.pairs: list[dict[str, np.ndarray]] = []

    @staticmethod
    def applies(enc: EncodedTask, query: str) -> bool:
        return enc.negatives is not None and query == "query"

    def add(self, answer: _Answer, keep_predictions: bool) -> pd.DataFrame | None:
        assert self.enc.negatives is not None
        q_user, q_col = answer.q_user, self.column[self.qry.item[answer.q_rows]]
        neg = self.column[self.enc.negatives[answer.q_rows]]
        ranks = metrics.sampled_ranks(answer.out[q_user, q_col], answer.out[q_user[:, None], neg])
        self.pairs.append({"user": answer.batch.users[q_user], **metrics.sampled_per_pair(ranks)})
        return None

    def finish(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        if not self.pairs:
            return {}, {}
        pairs = {k: np.concatenate([s[k] for s in self.pairs]) for k in self.pairs[0]}
        pair_user = pairs.pop("user")
        frame = pd.DataFrame(pairs).assign(user=pair_user).groupby("user").mean()
        per_user = {name: frame[name].reindex(users).to_numpy() for name in pairs}
        return per_user, metrics.summarize(pairs)


class _ItemRatings(_Scorer):
    """``item_ratings`` (IR): per cold item MAE/RMSE, batch by batch (a batch holds whole items). The pooled
    errors and the predictions file come from ``_Ratings``, which every rating family runs."""

    def __init__(self, enc: EncodedTask, support: str | None, query: str) -> None:
        super().__init__(enc, support, query)
        self.per_item: list[dict[str, np.ndarray]] = []

    def add(self, answer: _Answer, keep_predictions: bool) -> pd.DataFrame | None:
        batch, truth = answer.batch, self.qry.rating[answer.q_rows]
        assert isinstance(batch, ColdItemBatch)
        unit = np.searchsorted(batch.items, batch.query_item)
        self.per_item.append(metrics.rating_per_item(answer.out, truth, unit, len(batch)))
        return None

    def finish(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        if not self.per_item:
            return {}, {}
        merged = {k: np.concatenate([p[k] for p in self.per_item]) for k in self.per_item[0]}
        return merged, metrics.summarize(merged)


class _ItemRanks(_Scorer):
    """``item_ranks`` (IL): each query pair's cold item ranked among all cold items for the pair's user,
    leaving out the cold items whose support holds that user; per cold item at the end."""

    def __init__(self, enc: EncodedTask, support: str | None, query: str) -> None:
        super().__init__(enc, support, query)
        self.ranks: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []

    def add(self, answer: _Answer, keep_predictions: bool) -> pd.DataFrame | None:
        batch = answer.batch
        assert isinstance(batch, ColdItemBatch)
        users = batch.users
        q_col = np.searchsorted(batch.items, self.qry.item[answer.q_rows])
        s_row = np.minimum(np.searchsorted(users, batch.support.user), max(len(users) - 1, 0))
        held = users[s_row] == batch.support.user if len(users) else np.zeros(0, dtype=bool)
        ranks = metrics.query_ranks(answer.out, s_row[held], batch.support_of()[held], answer.q_user, q_col)
        self.ranks.append(ranks)
        self.cols.append(q_col)
        if not keep_predictions:
            return None
        return self.predictions(answer.q_rows, rank=ranks)

    def finish(self, users: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        if not self.ranks:
            return {}, {}
        ranks, cols = np.concatenate(self.ranks), np.concatenate(self.cols)
        per_item = metrics.item_rank_per_item(ranks, cols, len(users))
        return per_item, metrics.summarize(per_item)


SCORERS: dict[str, type[_Scorer]] = {
    "ratings": _Ratings,
    "ranks": _Ranks,
    "sampled_ranks": _SampledRanks,
    "item_ratings": _ItemRatings,
    "item_ranks": _ItemRanks,
}


def _scorers(enc: EncodedTask, support: str | None, query: str) -> list[_Scorer]:
    """One scorer per input the task's metrics consume, in ``metrics.CONSUMES`` order (the record's order)."""
    kinds = [SCORERS[kind] for kind in protocols.consumed(enc.spec)]
    return [cls(enc, support, query) for cls in kinds if cls.applies(enc, query)]


def evaluate(
    enc: EncodedTask,
    view: TrainView,
    predict: Predict,
    support: str | None,
    query: str,
    adapt_limit: int,
    keep_predictions: bool = False,
) -> Evaluation:
    """Predict for the cold units (users or items) of ``query`` in batches and score them with the task's
    scorers; ``Evaluation.users`` holds the units (cold items in the cold-item families)."""
    qry = enc.tables[query].rows
    scorers = _scorers(enc, support, query)
    users: list[np.ndarray] = []
    pred_parts: list[pd.DataFrame] = []
    steps = 0
    t_predict = t_eval = 0.0
    for batch, q_rows, s_rows, units in cold_batches(enc, view, support, query, adapt_limit):
        start = time.perf_counter()
        out = np.asarray(predict(batch))
        t_predict += time.perf_counter() - start
        steps = max(steps, batch.adapt_steps_used)
        start = time.perf_counter()
        if batch.wants_ratings:
            metrics.validate_predictions(out, (len(q_rows),))
            q_user = batch.query_user
        else:
            metrics.validate_predictions(out, (len(batch.users), len(batch.candidates)))
            q_user = np.searchsorted(batch.users, qry.user[q_rows])
        answer = _Answer(batch, out, q_rows, s_rows, q_user)
        for scorer in scorers:
            part = scorer.add(answer, keep_predictions)
            if part is not None:
                pred_parts.append(part)
        users.append(units)
        t_eval += time.perf_counter() - start
    start = time.perf_counter()
    all_users = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
    merged: dict[str, np.ndarray] = {}
    pooled: dict[str, float] = {}
    for scorer in scorers:
        per_user, values = scorer.finish(all_users)
        merged |= per_user
        pooled |= values
    t_eval += time.perf_counter() - start
    predictions = pd.concat(pred_parts, ignore_index=True) if pred_parts else None
    return Evaluation(all_users, merged, pooled, predictions, steps, t_predict, t_eval)


def make_view(enc: EncodedTask, budget: Budget, deadline: float) -> TrainView:
    train = enc.tables["train"]
    spec = enc.spec
    view: TrainView

    def validator(predict: Predict) -> float:
        """The family's rank metric on the validation users, signed so that higher is better: selection
        optimizes what the leaderboard ranks (``protocols.selection_score``)."""
        result = evaluate(enc, view, predict, "valid_support", "valid_query", budget.adapt_steps)
        return protocols.selection_score(spec.family, result.pooled)

    def pretrain_validator(predict: Predict) -> float:
        """The same score with the support withheld: the same for every K of a task group."""
        result = evaluate(enc, view, predict, None, "valid_query", budget.adapt_steps)
        return protocols.selection_score(spec.family, result.pooled)

    view = TrainView(
        task_id=spec.id,
        family=spec.family,
        domains=enc.domains,
        source_domains=tuple(spec.source),
        target_domain=spec.target,
        explicit=protocols.get(spec.family).explicit,
        n_users=len(enc.users),
        item_domain=enc.item_domain,
        train=train.rows,
        train_domain=train.domain,
        budget=budget,
        validator=validator,
        deadline=deadline,
        rating_range=rating_range(enc),
        pretrain_validator=pretrain_validator,
    )
    return view


def rating_range(enc: EncodedTask) -> tuple[float, float] | None:
    """The task's rating scale: lowest and highest target-domain training rating; None for implicit data."""
    if not protocols.get(enc.spec.family).explicit:
        return None
    train = enc.tables["train"]
    return rating_range_of(train.rows.rating[train.domain == enc.domains.index(enc.spec.target)])


def budget_of(spec: TaskSpec, n_train: int) -> Budget:
    return Budget(
        train_examples=int(spec.budget.train_examples_multiple * n_train),
        adapt_steps=spec.budget.adapt_steps,
        wall_seconds=spec.budget.wall_seconds,
    )

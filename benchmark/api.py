"""The public method API: the one module of ColdBench that a method imports.

A method is a ``Method`` subclass. The harness calls ``fit(view, budget)`` once, then ``predict(batch)`` on
batches of cold users. Everything a method sees arrives through a ``TrainView`` (training interactions,
counted against the budget, and validation cold users for model selection) or a ``ColdBatch`` (a cold
user's support, source-domain history and what to predict). Query labels of test users never cross this
API: the harness keeps them and computes every metric.

Users and items are dense integer indices: ``0 .. n_users-1`` and ``0 .. n_items-1`` over all domains of the
task, with ``view.item_domain[i]`` giving item ``i``'s domain index into ``view.domains``.
"""

from __future__ import annotations

import functools
import inspect
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.fitting import (
    PREDICT,
    MethodConfig,
    Selection,
    batch_seed,
    cold_batch_keys,
    init_linear,
    rating_range_of,
    run_generators,
    select_epochs,
)
from benchmark.protocols import METHOD_DEFAULT_FAMILIES

__all__ = [
    "AdaptMeter",
    "Budget",
    "BudgetExceeded",
    "ColdBatch",
    "ColdItemBatch",
    "Episode",
    "Interactions",
    "Method",
    "MethodConfig",
    "Selection",
    "TrainView",
    "batch_seed",
    "init_linear",
    "select_epochs",
]


class BudgetExceeded(RuntimeError):
    """A method asked for more than its budget allows; the run is ``over_budget``.

    Raised for adaptation steps beyond ``adapt_steps``, and for a domain's history (or the source merge of
    ``batch_history``) read when fewer training examples are left than it has rows: a history is handed out
    whole or not at all, while ``batches`` and ``episodes`` simply stop at the budget.
    """


@dataclass(frozen=True)
class Budget:
    """Compute limits of one run, fixed by the task spec.

    ``train_examples``: interactions the training view hands out during ``fit``: batches and episodes, and
    each domain's rows once, the first time ``history`` or ``batch_history`` hands them out.
    ``adapt_steps``: gradient steps a method may take per cold user at prediction time.
    ``wall_seconds``: wall-clock ceiling for fit plus prediction on the reference machine (2 CPU cores).
    """

    train_examples: int
    adapt_steps: int
    wall_seconds: float


@dataclass(frozen=True)
class Interactions:
    """A ragged set of interactions in flat form, sorted by ``user``.

    ``user`` is a position in the enclosing batch (``0 .. B-1``) for batches and episodes, and a global user
    index for ``TrainView.history``. ``rating`` is NaN for implicit data; ``ts`` is -1 when unknown.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def counts(self, n_users: int) -> np.ndarray:
        return np.bincount(self.user, minlength=n_users)

    def padded(self, n_users: int, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(items, ratings, mask)`` of shape ``(n_users, L)``, keeping each user's last ``L`` rows.

        Padding items are 0 with mask False, so they can index an embedding table safely.
        """
        counts = self.counts(n_users)
        width = int(counts.max(initial=0)) if max_len is None else max_len
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        index = np.arange(len(self.user)) - starts[self.user]
        skip = np.maximum(counts - width, 0)[self.user]
        keep = index >= skip
        col = (index - skip)[keep]
        items = np.zeros((n_users, width), dtype=np.int64)
        ratings = np.zeros((n_users, width), dtype=np.float32)
        mask = np.zeros((n_users, width), dtype=bool)
        items[self.user[keep], col] = self.item[keep]
        ratings[self.user[keep], col] = np.nan_to_num(self.rating[keep])
        mask[self.user[keep], col] = True
        return items, ratings, mask


class AdaptMeter:
    """The per-user adaptation steps a batch may take (``limit``) and the most any user took (``used``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, steps: int) -> None:
        if steps > self.limit:
            raise BudgetExceeded(f"{steps} adaptation steps per user asked, budget is {self.limit}")
        self.used = max(self.used, steps)


class _Metered:
    """A cold batch's adaptation budget per cold unit (a user, or a cold item), kept by its ``meter``."""

    meter: AdaptMeter

    @property
    def adapt_steps(self) -> int:
        """The per-unit adaptation budget."""
        return self.meter.limit

    @property
    def adapt_steps_used(self) -> int:
        """The most adaptation steps per unit declared so far (what the record reports)."""
        return self.meter.used

    def spend_adapt_steps(self, steps: int) -> None:
        """Declare ``steps`` gradient steps per unit before taking them; over the budget raises."""
        self.meter.spend(steps)


@dataclass
class ColdBatch(_Metered):
    """Cold users to predict for.

    ``support``: the users' target-domain support (K per user; empty at K=0). ``history``: their
    source-domain interactions from the training data. Family R asks for ratings of the pairs
    (``query_user``, ``query_item``); families L and C ask for scores of every item in ``candidates``
    (the target domain's items; the harness excludes each user's support items when ranking).
    """

    users: np.ndarray
    support: Interactions
    history: Interactions
    query_user: np.ndarray | None = None
    query_item: np.ndarray | None = None
    candidates: np.ndarray | None = None
    meter: AdaptMeter = field(default_factory=lambda: AdaptMeter(0), repr=False)  # set by the harness

    def __len__(self) -> int:
        return len(self.users)

    @property
    def wants_ratings(self) -> bool:
        return self.query_item is not None


@dataclass
class ColdItemBatch(_Metered):
    """Cold items (new target-domain products) to predict for: the cold-item families (IR, IL).

    The same view a cold user gets, turned around. ``items``: the cold items, global item indices, sorted.
    ``support``: their support, K rows per item (none when the support is withheld), ``user`` = the global
    index of the user who rated or bought the item and ``item`` = the cold item's global index, sorted by
    (item, ts, user). ``support_users``: the distinct users of ``support`` (global, sorted); ``history``:
    their source-domain interactions from the training data, ``user`` = position in ``support_users`` (the
    cold items' own input, free of budget like a cold user's history). Every other row of a cold item is
    out of the training data.

    Family IR asks for ratings of the pairs (``query_user``, ``query_item``), both global indices, each
    ``query_item`` one of ``items``. Family IL asks, for each user of ``query_users`` (global), for a score
    of every item of ``items``: shape ``(len(query_users), len(items))``; the harness ranks each query
    pair's cold item among all of them, leaving out the cold items whose support holds that user. Query
    users are ordinary users of the task: what a method knows of them, it learned from the training view.
    """

    items: np.ndarray
    support: Interactions
    support_users: np.ndarray
    history: Interactions
    query_user: np.ndarray | None = None
    query_item: np.ndarray | None = None
    query_users: np.ndarray | None = None
    meter: AdaptMeter = field(default_factory=lambda: AdaptMeter(0), repr=False)  # set by the harness

    def __len__(self) -> int:
        return len(self.items)

    @property
    def users(self) -> np.ndarray:
        """The users a prediction is for: ``query_users`` (IL), else the distinct ``query_user`` (IR)."""
        if self.query_users is not None:
            return self.query_users
        return np.unique(self.query_user) if self.query_user is not None else np.zeros(0, dtype=np.int64)

    @property
    def wants_ratings(self) -> bool:
        return self.query_item is not None

    @property
    def candidates(self) -> np.ndarray:
        """What a ranking scores, in column order: the cold items."""
        return self.items

    def support_of(self, position: np.ndarray | None = None) -> np.ndarray:
        """Each support row's cold item as a position in ``items`` (of the given rows, default all)."""
        item = self.support.item if position is None else self.support.item[position]
        return np.searchsorted(self.items, item)


@dataclass(frozen=True)
class Episode:
    """A meta-training episode over warm users: per-user support and query of fixed sizes, with labels.

    Rows are sorted by user, so ``support.item.reshape(len(users), -1)`` is the support matrix.
    """

    users: np.ndarray
    support: Interactions
    query: Interactions
    history: Interactions


class TrainView:
    """What a method may learn from, with every handed-out training example counted.

    ``batches`` and ``episodes`` stop once ``budget.train_examples`` interactions were handed out or the wall
    clock ceiling passed. ``history`` gives per-user interactions of one domain (the same rows ``batches``
    serves) and ``batch_history`` the source domains' rows of some users. Rows read as features are rows
    learned from (a floor is fitted on nothing else), so each domain's rows are charged once per view, the
    first time either hands them out; later reads are free, since the method already holds those rows. The
    source history inside ``episodes`` and in the ``ColdBatch`` of a validated or tested cold user is served
    the same way: in episodes it is charged like ``batch_history``, in cold batches it is the cold users'
    input and free. ``n_rows`` counts a domain's rows for free. ``validate`` scores a prediction function on
    the validation cold users, the only data for model selection and early stopping; ``validate_pretrain``
    scores it on the same users with their support withheld, the signal of a method's ``pretrain`` stage.

    ``rating_range``: the task's rating scale, ``(lowest, highest)`` of the target domain's training ratings,
    a fact free of budget (what a prediction may be clipped to); None for implicit data. Without one given,
    the view reads it from its training rows.
    """

    def __init__(
        self,
        *,
        task_id: str,
        family: str,
        domains: tuple[str, ...],
        source_domains: tuple[str, ...],
        target_domain: str,
        explicit: bool,
        n_users: int,
        item_domain: np.ndarray,
        train: Interactions,
        train_domain: np.ndarray,
        budget: Budget,
        validator: Callable[[Callable[[ColdBatch], np.ndarray]], float],
        deadline: float,
        rating_range: tuple[float, float] | None = None,
        pretrain_validator: Callable[[Callable[[ColdBatch], np.ndarray]], float] | None = None,
    ) -> None:
        self.task_id = task_id
        self.family = family
        self.domains = domains
        self.source_domains = source_domains
        self.target_domain = target_domain
        self.explicit = explicit
        self.n_users = n_users
        self.n_items = len(item_domain)
        self.item_domain = item_domain
        self.budget = budget
        self._train = train
        self._train_domain = train_domain
        self._validator = validator
        self._pretrain_validator = pretrain_validator
        self._deadline = deadline
        self.examples_used = 0
        self.timed_out = False
        self._history_cache: dict[str, Interactions] = {}
        self._source_history: tuple[Interactions, np.ndarray, np.ndarray] | None = None
        self._charged: set[str] = set()  # domains whose rows ``history``/``batch_history`` already charged
        self.rating_range = rating_range
        if rating_range is None and explicit:
            target = train_domain == self.domain_index(target_domain)
            self.rating_range = rating_range_of(train.rating[target])

    # -- facts -----------------------------------------------------------------------------------------
    @property
    def n_train(self) -> int:
        return len(self._train)

    def domain_index(self, domain: str) -> int:
        return self.domains.index(domain)

    def items_of(self, domain: str) -> np.ndarray:
        return np.flatnonzero(self.item_domain == self.domain_index(domain))

    def n_rows(self, domain: str | None = None) -> int:
        """Training rows of ``domain`` (or of all domains); a fact, free of budget."""
        return (
            len(self._train)
            if domain is None
            else int(np.sum(self._train_domain == self.domain_index(domain)))
        )

    @property
    def examples_left(self) -> int:
        return max(self.budget.train_examples - self.examples_used, 0)

    def _take(self, n: int) -> int:
        """Charge up to ``n`` examples; returns how many may be handed out."""
        if time.monotonic() > self._deadline:
            self.timed_out = True
            return 0
        granted = min(n, self.examples_left)
        self.examples_used += granted
        return granted

    def _charge_domains(self, domains: tuple[str, ...] | list[str]) -> None:
        """Charge the rows of ``domains`` not charged yet, all or nothing (``BudgetExceeded``)."""
        new = [d for d in dict.fromkeys(domains) if d not in self._charged]
        rows = sum(self.n_rows(d) for d in new)
        if rows > self.examples_left:
            raise BudgetExceeded(
                f"reading the history of {', '.join(new)} ({rows} rows) needs more than the "
                f"{self.examples_left} training examples left of {self.budget.train_examples}"
            )
        self.examples_used += rows
        self._charged.update(new)

    # -- data ------------------------------------------------------------------------------------------
    def _rows(self, domain: str | None) -> np.ndarray:
        if domain is None:
            return np.arange(len(self._train))
        return np.flatnonzero(self._train_domain == self.domain_index(domain))

    def batches(
        self, batch_size: int, rng: np.random.Generator, domain: str | None = None, shuffle: bool = True
    ) -> Iterator[Interactions]:
        """One pass over the training rows (of ``domain``, or all), in batches; stops at the budget."""
        rows = self._rows(domain)
        if shuffle:
            rows = rng.permutation(rows)
        for start in range(0, len(rows), batch_size):
            granted = self._take(min(batch_size, len(rows) - start))
            if granted == 0:
                return
            yield self._select(rows[start : start + granted])

    def history(self, domain: str) -> Interactions:
        """All training interactions of ``domain``, sorted by (user, ts, item), ``user`` = global index.

        The first read of a domain charges its rows (see the class docstring); later reads are free.
        """
        self._charge_domains([domain])
        return self._domain_rows(domain)

    def _domain_rows(self, domain: str) -> Interactions:
        if domain not in self._history_cache:
            self._history_cache[domain] = self._select(self._rows(domain))
        return self._history_cache[domain]

    def episodes(
        self,
        n_users: int,
        support_size: int,
        query_size: int,
        rng: np.random.Generator,
        domain: str | None = None,
    ) -> Iterator[Episode]:
        """Meta-training episodes from users with enough interactions in ``domain`` (default: the target).

        Each user's rows are shuffled, then split into ``support_size`` support and ``query_size`` query
        rows; ``history`` holds the user's interactions in the source domains. One pass over the eligible
        users in a random order; stops at the budget.
        """
        domain = domain or self.target_domain
        rows = self._rows(domain)
        need = support_size + query_size
        users = self._train.user[rows]
        counts = np.bincount(users, minlength=self.n_users)
        eligible = np.flatnonzero(counts >= need)
        order = rng.permutation(eligible)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for begin in range(0, len(order), n_users):
            chosen = order[begin : begin + n_users]
            granted = self._take(len(chosen) * need) // need
            if granted == 0:
                return
            chosen = np.sort(chosen[:granted])
            # a random `need` of each chosen user's rows, without a Python loop over users
            keys = rng.random((len(chosen), int(counts[chosen].max())))
            keys[np.arange(keys.shape[1])[None, :] >= counts[chosen][:, None]] = np.inf
            picks = np.argsort(keys, axis=1, kind="stable")[:, :need]
            picked = rows[starts[chosen][:, None] + picks]
            sup = self._select(picked[:, :support_size].ravel(), positions=len(chosen))
            qry = self._select(picked[:, support_size:].ravel(), positions=len(chosen))
            yield Episode(chosen, sup, qry, self.batch_history(chosen))

    def batch_history(self, users: np.ndarray) -> Interactions:
        """Source-domain interactions of ``users`` (sorted), with ``user`` = position in ``users``.

        The first call charges every source domain's rows not charged yet (the merge covers all users), so
        a method that reads the history of all users at once pays what it reads; later calls are free.
        """
        self._charge_domains(self.source_domains)
        return self._batch_history(users)

    def _batch_history(self, users: np.ndarray) -> Interactions:
        """``batch_history`` without the charge: the harness's cold batches (a cold user's own input)."""
        if self._source_history is None:  # merged and sorted once: episodes call this for every batch
            parts = [self._domain_rows(d) for d in self.source_domains]
            user = np.concatenate([p.user for p in parts])
            order = np.lexsort(
                (np.concatenate([p.item for p in parts]), np.concatenate([p.ts for p in parts]), user)
            )
            merged = Interactions(
                user[order],
                np.concatenate([p.item for p in parts])[order],
                np.concatenate([p.rating for p in parts])[order],
                np.concatenate([p.ts for p in parts])[order],
            )
            counts = merged.counts(self.n_users)
            self._source_history = (merged, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        merged, starts, counts = self._source_history
        n = counts[users]
        # rows of users[0], then users[1], ...: sorted by position whatever the order of ``users``
        rows = np.repeat(starts[users] - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())
        position = np.repeat(np.arange(len(users)), n)
        return Interactions(position, merged.item[rows], merged.rating[rows], merged.ts[rows])

    def _select(self, rows: np.ndarray, positions: int | None = None) -> Interactions:
        t = self._train
        user = t.user[rows]
        if positions is not None:
            user = np.repeat(np.arange(positions), len(rows) // max(positions, 1))
        else:
            order = np.lexsort((t.item[rows], t.ts[rows], user))
            rows, user = rows[order], user[order]
        return Interactions(user, t.item[rows], t.rating[rows], t.ts[rows])

    # -- model selection ------------------------------------------------------------------------------
    def validate(self, predict: Callable[[ColdBatch], np.ndarray]) -> float:
        """Score ``predict`` on the validation cold users; higher is better.

        The score is the metric the family is ranked by on the leaderboard (its declared ``rank_metric``,
        ``benchmark.protocols.selection_score``), so that early stopping and every in-fit choice optimize
        what is ranked: family R returns minus ``user_mae`` (each validation user's MAE, averaged over
        users), families L and C the ``ndcg@10`` of the full ranking, averaged over users; the cold-item
        families score the validation cold items (IR: minus ``item_mae``; IL: ``item_ndcg@10``). All are
        computed by the harness.
        """
        return self._validator(predict)

    def validate_pretrain(self, predict: Callable[[ColdBatch], np.ndarray]) -> float:
        """``validate`` with the validation users' support withheld: the K-independent selection signal.

        Each validation cold user (or cold item) is scored on its ``valid_query`` from an empty support (the
        batch has no support rows; a cold user's source history is there as usual), with the same ranked
        metric as
        ``validate``. The validation query is the rows after the support pool, the same for every K of a
        task group (family L, family R at K>0), so this score is the same on every K task of the group:
        what ``Method.pretrain`` selects epochs with, so that its result can be shared across K. A view
        built without a harness (a test's) falls back to ``validate``.
        """
        return (self._pretrain_validator or self._validator)(predict)

    # -- what the harness replays for a pretraining that came from the cache --------------------------------
    @property
    def charged_domains(self) -> tuple[str, ...]:
        """The domains whose rows ``history``/``batch_history`` charged so far, sorted."""
        return tuple(sorted(self._charged))

    def replay_charges(self, examples_used: int, charged: Sequence[str]) -> None:
        """Charge what a cached pretraining charged when it ran, so the run's accounting is the same."""
        self.examples_used += int(examples_used)
        self._charged.update(charged)


class Method:
    """Base class of every method. Subclasses set the class attributes and implement ``fit`` and ``predict``.

    ``families``: the task families the method supports (default: the cold-user families,
    ``benchmark.protocols.METHOD_DEFAULT_FAMILIES``; a family such as cold items must be declared), and
    ``not_applicable`` why it leaves a family out. In the cold-item families (IR, IL), ``predict`` receives
    a ``ColdItemBatch`` instead of a ``ColdBatch``.
    ``summary``: one line for listings. ``paper``: the reference. Default hyper-parameters live in a TOML
    file next to the module (``<module>.toml``) with one table per family (``[R]``, ``[L]``, ``[C]``) over an
    optional ``[default]`` table; ``self.config`` is a ``MethodConfig``, so a key missing there is an error
    that names the TOML, never a default repeated in code.

    Randomness (``benchmark.fitting``): ``rng`` and ``torch_generator`` are the run's one NumPy and one torch
    generator, seeded from ``seed`` on first use; training and parameter initialization draw from them, and
    no method seeds or reads a global generator. ``batch_rng(batch)`` gives a cold batch a generator of its
    own (``batch_seed``), so that a prediction does not depend on the batches predicted before it.

    Two-stage fit (optional). A method whose training has a K-independent part implements
    ``pretrain(view) -> None``: it may read training data through the view and selects epochs only with
    ``view.validate_pretrain`` (never the K-shot support), drawing from ``rng`` and ``torch_generator`` as
    ``fit`` would. It declares what pretraining produced with ``pretrained_state()`` (tensors and plain
    values: everything ``fit`` and ``predict`` need from it, ``selected`` entries included) and restores it
    with ``load_pretrained(state)``. The harness either runs ``pretrain`` or loads a cached state of the
    same (method, source, config, seed, training data, validation query, budget), then calls ``fit``,
    which does only the K-dependent part (e.g. choosing adaptation steps with ``view.validate``); the run's
    generators are restored to where pretraining left them, so both paths predict bit for bit the same.
    ``fit`` alone (no stage before it) must still work: it then runs ``pretrain`` itself. Methods without
    ``pretrain`` train in ``fit`` only.
    """

    families: ClassVar[Sequence[str]] = METHOD_DEFAULT_FAMILIES
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    # why the method does not take a family it leaves out (family -> one sentence); the leaderboard shows
    # the reason in the family's "not applicable" row
    not_applicable: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: dict[str, Any], seed: int, device: str = "cpu") -> None:
        self.config = MethodConfig(config, type(self))
        self.seed = seed
        self.device = torch.device(device)

    @functools.cached_property
    def _generators(self) -> tuple[np.random.Generator, torch.Generator]:
        return run_generators(self.seed)

    @property
    def rng(self) -> np.random.Generator:
        """The run's NumPy generator: every draw of training (batches, episodes, negatives) comes from it."""
        return self._generators[0]

    @property
    def torch_generator(self) -> torch.Generator:
        """The run's torch generator (CPU): parameter initialization and torch-side draws of training."""
        return self._generators[1]

    def batch_rng(self, batch: ColdBatch) -> np.random.Generator:
        """A generator of ``batch``'s own (seed, purpose, size, first users): predict's draws for it."""
        return np.random.default_rng(batch_seed(self.seed, PREDICT, *cold_batch_keys(batch)))

    @classmethod
    def default_config(cls, family: str) -> dict[str, Any]:
        path = Path(inspect.getfile(cls)).with_suffix(".toml")
        if not path.is_file():
            return {}
        tables = tomllib.loads(path.read_text())
        return {**tables.get("default", {}), **tables.get(family, {})}

    def fit(self, view: TrainView, budget: Budget) -> None:
        raise NotImplementedError

    def pretrained_state(self) -> dict[str, Any]:
        """What ``pretrain`` produced, as tensors and plain values (only for a method with ``pretrain``)."""
        raise NotImplementedError

    def load_pretrained(self, state: dict[str, Any]) -> None:
        """Restore ``pretrained_state()`` of an earlier, identical pretraining instead of running it."""
        raise NotImplementedError

    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        """Ratings aligned with ``batch.query_item`` (families R, IR), else scores of shape
        ``(len(batch.users), len(batch.candidates))`` (L, C; IL: query users x cold items)."""
        raise NotImplementedError

    def modules(self) -> list[torch.nn.Module]:
        """The torch modules holding the learned parameters (for parameter counts and FLOP estimates)."""
        return [v for v in vars(self).values() if isinstance(v, torch.nn.Module)]

    def train_flops(self) -> float | None:
        """Training FLOPs of the whole ``fit``, for a method that counts them itself; None: estimate them.

        The runner's estimate is ``flops_per_example() x examples handed out``, which misses a method whose
        main cost is a matrix product over all users or items (e.g. a closed-form solve); such a method
        returns its own count here, read after ``fit``.
        """
        return None

    def train_flops_estimate(self, examples_used: int) -> float:
        """The record's FLOPs: ``train_flops()`` if declared, else ``flops_per_example() x examples_used``."""
        declared = self.train_flops()
        return float(declared) if declared is not None else self.flops_per_example() * examples_used

    def flops_per_example(self) -> float:
        """Training FLOPs per handed-out example: 6 x (dense parameters + one row of each embedding table)."""
        total = 0
        for module in self.modules():
            for sub in module.modules():
                if isinstance(sub, torch.nn.Embedding):
                    total += sub.embedding_dim
                elif not list(sub.children()):
                    total += sum(p.numel() for p in sub.parameters(recurse=False))
        return 6.0 * total

"""MAML over a MeLU-style model: tasks are users, the decision layers adapt to each user.

Paper: Finn, Abbeel, Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks" (ICML);
the model follows Lee et al. 2019, "MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation" (KDD). See ``methods.meta_model`` for the model and the batched inner loop.

Model: item embeddings; a user is the mean embedding of their source-domain history (its last
``history_len`` items; in family R also rating-weighted); decision layers (an MLP over user, item and their
product) plus a global item bias score a pair. Only the decision layers are adapted per user. In L and C
the target item bias starts at the centred log popularity of the first epoch's training rows
(``popularity_init``), so meta-training spends its budget on the user-specific part.

Source-domain data: every user, warm or cold, is represented from their source-domain history, so a cold
user's source behaviour shapes every prediction; at K=0 it is also what the inner loop adapts on.

K>0: ``inner_steps`` SGD steps on the user's target support (rating MSE in family R; in family L a sampled
softmax of each support item against ``negatives`` uniform target items), then predict. In family R the
support is prepended with the user's last ``source_support`` source ratings (``support_with_source``): one
target rating alone overfits the decision layers (validation MAE was worse than item-mean at K=1 without
them), and the source ratings carry the user's rating scale.
K=0 (family C, R-*-k0): the inner loop adapts on the user's last ``source_support`` source-domain interactions
(source ratings in R; source items against uniform source-item negatives in C). They are the only
user-specific signal at K=0, and meta-training with the same kind of support teaches the initialization how
a step on source behaviour should move target predictions (the inner lr is selected on validation, so an
unhelpful inner loop is turned down, not forced).

Meta-training: each epoch takes one budgeted pass over the target-domain training rows, groups them by
user in a random order, and forms meta-batches of ``meta_batch`` users; each meta-batch draws K from
``train_shots`` (K=0 meta-batches use source support and users with a source history). The query loss is
rating MSE (R) or sampled softmax against uniform target negatives (L, C). The inner loop runs for the whole
meta-batch at once (``torch.func`` ``grad`` inside ``vmap``), second-order by default (``first_order=true``
for FOMAML); Adam updates every parameter (embeddings, item bias, user projection, decision
initialization). ``backend="learn2learn"`` computes the same meta-gradient through
``learn2learn.algorithms.MAML`` with a Python loop over users (cross-checking; needs ``tox -e l2l``);
prediction-time adaptation is the same first-order SGD under both backends.

Selected on validation cold users only: the epoch (early stopping with ``patience``, their support
withheld: ``validate_pretrain``, so meta-training runs once per task group, in ``pretrain``), then, with the
support, the number of inner steps at prediction (``select_steps``) and a scale of the inner lr
(``select_lr_scale``).

Cold items (IR, IL): the same model and loops with users and items swapped, as MeLU's items-as-tasks: a
task is an item, the fixed embedding side is a table of user embeddings (the MeLU's ``item_emb``, rows of
users without target training rows zero), and an item is represented by the (in IR also rating-weighted)
mean embedding of its support users, the only input a new product has. The decision layers adapt on the
item's support (user, rating) pairs (IR: rating MSE) or support users against ``negatives`` uniform negative
users who have target rows (IL: the L path's sampled softmax; at prediction a fixed, evenly spaced set of
them, so that a cold item adapts the same in every batch of query users), then score the query users.
Meta-training samples warm target items as tasks from the target training rows, read once
(``view.history``): each epoch shuffles each item's rows, draws K from ``train_shots`` per meta-batch, K rows
adapt and the next ``query_size`` are the query. Epochs are selected on ``validate_pretrain`` in IR (with
no support a cold item's prediction still depends on the user); in IL a cold item without support is scored
like every other, so that score is flat and meta-training runs its ``epochs``. Inner steps and lr are
chosen in ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from benchmark.api import Budget, ColdBatch, ColdItemBatch, Interactions, Method, TrainView, select_epochs
from benchmark.protocols import METHOD_DEFAULT_FAMILIES
from methods.meta_model import (
    MeLU,
    Scorer,
    adapt,
    expand_params,
    learn2learn_meta_losses,
    masked_mse,
    masked_sampled_softmax,
    torch_func_meta_losses,
)

BACKENDS = {"torch.func": torch_func_meta_losses, "learn2learn": learn2learn_meta_losses}
ITEM_FAMILIES = ("IR", "IL")


def _padded(rows: Interactions, n_users: int, width: int, device: torch.device) -> tuple[Tensor, ...]:
    """``Interactions.padded`` as tensors on ``device``: (items, ratings, mask), each ``(n_users, width)``."""
    return tuple(torch.from_numpy(a).to(device) for a in rows.padded(n_users, width))


def _meta_batches(
    shots: list[int], eligible: dict[int, np.ndarray], size: int, rng: np.random.Generator
) -> tuple[int, Iterator[tuple[int, np.ndarray]]]:
    """One pass of meta-batches: their number (enough for the shot with the most eligible tasks to fill them)
    and a generator of (K, up to ``size`` sorted eligible tasks drawn without replacement), skipping a batch
    whose drawn K has none. A generator, so that the caller's own draws from ``rng`` interleave with these."""
    n_meta = -(-max(len(e) for e in eligible.values()) // size)

    def batches() -> Iterator[tuple[int, np.ndarray]]:
        for _ in range(n_meta):
            k = int(rng.choice(shots))
            if len(eligible[k]):
                yield k, np.sort(rng.choice(eligible[k], min(size, len(eligible[k])), replace=False))

    return n_meta, batches()


def _rating_loss(score: Scorer, user: Tensor, vec: Tensor, bias: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    return masked_mse(score(user, vec, bias), y, mask)


def _softmax_loss(
    score: Scorer,
    user: Tensor,
    vec: Tensor,
    bias: Tensor,
    neg_vec: Tensor,
    neg_bias: Tensor,
    mask: Tensor,
) -> Tensor:
    return masked_sampled_softmax(score(user, vec, bias), score(user, neg_vec, neg_bias), mask)


class MAML(Method):
    families: ClassVar[tuple[str, ...]] = (*METHOD_DEFAULT_FAMILIES, *ITEM_FAMILIES)
    summary: ClassVar[str] = "MAML over a MeLU-style model, inner loop batched over users with torch.func"
    paper: ClassVar[str] = (
        "Finn et al. 2017, Model-Agnostic Meta-Learning (ICML); Lee et al. 2019, MeLU (KDD)"
    )

    def __init__(self, config: dict[str, Any], seed: int, device: str = "cpu") -> None:
        super().__init__(config, seed, device)
        if self.config["backend"] not in BACKENDS:
            raise ValueError(f"maml: backend {config['backend']!r} unknown; one of {sorted(BACKENDS)}")
        self.model: MeLU | None = None
        self.rating_range: tuple[float, float] | None = None
        self.validation_score: float | None = None
        self.selected: dict[str, Any] = {}

    # -- data ------------------------------------------------------------------------------------------
    def _task(
        self, user: Tensor, items: Tensor, ratings: Tensor, mask: Tensor, negatives: np.ndarray | None
    ) -> tuple[Tensor, ...]:
        """One batch of tasks for ``_rating_loss`` (explicit) or ``_softmax_loss`` against ``negatives``."""
        vec, bias = self.model.items(items)
        if self.explicit:
            return user, vec, bias, ratings - self.mu, mask
        neg_vec, neg_bias = self.model.items(torch.from_numpy(negatives).to(self.device))
        n = len(user)
        return user, vec, bias, neg_vec.expand(n, *neg_vec.shape), neg_bias.expand(n, -1), mask

    def _support_rows(
        self, source: tuple[Tensor, ...], target: tuple[Tensor, ...], k: int
    ) -> tuple[Tensor, ...]:
        """What the inner loop adapts on: (items, ratings, mask) of source rows at K=0, of the target support
        at K>0, with the source rows prepended when ``support_with_source`` (explicit ratings only)."""
        if k == 0:
            return source
        if self.explicit and self.config["support_with_source"]:
            return tuple(torch.cat([s, t], 1) for s, t in zip(source, target, strict=True))
        return target

    def _negatives(self, from_source: bool, rng: np.random.Generator) -> np.ndarray | None:
        """Uniform negatives of the support's domain (source items at K=0), or None for ratings."""
        if self.explicit:
            return None
        return rng.choice(
            self.source_items if from_source else self.target_items, int(self.config["negatives"])
        )

    # -- training --------------------------------------------------------------------------------------
    def setup(self, view: TrainView) -> None:
        """What the view gives for free (or already charged): domains' items, source histories, inner loop."""
        if view.family in ITEM_FAMILIES:
            self._setup_items(view)
            return
        cfg = self.config
        self.explicit = view.explicit
        self.rating_range = view.rating_range
        self.loss = _rating_loss if self.explicit else _softmax_loss
        self.target_items = view.items_of(view.target_domain)
        self.source_items = np.concatenate([view.items_of(d) for d in view.source_domains])
        history = view.batch_history(np.arange(view.n_users))
        self.hist = _padded(history, view.n_users, int(cfg["history_len"]), self.device)
        self.src_sup = _padded(history, view.n_users, int(cfg["source_support"]), self.device)
        self.has_history = history.counts(view.n_users) > 0
        # prediction-time inner loop (selected on validation users in ``fit``, within the adapt budget)
        self.inner_lr = float(cfg["inner_lr"])
        self.inner_steps = min(int(cfg["inner_steps"]), view.budget.adapt_steps)

    def pretrain(self, view: TrainView) -> None:
        """Meta-training, its epoch selected with the support withheld (``validate_pretrain``)."""
        if view.family in ITEM_FAMILIES:
            self._pretrain_items(view)
            return
        cfg = self.config
        self.setup(view)
        self.model = MeLU(
            view.n_items,
            int(cfg["dim"]),
            tuple(cfg["hidden"]),
            rating_weighted=self.explicit,
            rating_range=self.rating_range or (0.0, 1.0),  # unused without ratings
            generator=self.torch_generator,
        ).to(self.device)
        self.mu = 0.0
        epochs, patience = int(cfg["epochs"]), int(cfg["patience"])
        score = view.validate_pretrain
        sel = select_epochs(
            view, self._epochs(view), [self.model], epochs, self.predict, patience, validator=score
        )
        self.selected = {"epochs": sel.best_epoch}

    def pretrained_state(self) -> dict[str, Any]:
        assert self.model is not None
        return {"model": self.model.state_dict(), "mu": self.mu, "selected": dict(self.selected)}

    def load_pretrained(self, state: dict[str, Any]) -> None:
        cfg, values = self.config, state["model"]
        n_items = values["item_emb.weight"].shape[0]
        rating_weighted = values["user_proj.weight"].shape[1] == 2 * int(cfg["dim"])
        # the rating range only sets two constants, recomputed from the view in ``fit`` (``_restore_range``)
        self.model = MeLU(n_items, int(cfg["dim"]), tuple(cfg["hidden"]), rating_weighted)
        self.model.load_state_dict(values)
        self.model.to(self.device).eval()
        self.mu, self.selected = float(state["mu"]), dict(state["selected"])

    def fit(self, view: TrainView, budget: Budget) -> None:
        """Pretrain unless done (or loaded); then the inner steps and lr, chosen with the support."""
        if self.model is None:
            self.pretrain(view)
        self.setup(view)
        self._restore_range()
        self._select_inner(view, view.validate(self.predict))

    def _restore_range(self) -> None:
        """The MeLU's rating constants from the task's range, as ``pretrain`` built it."""
        assert self.model is not None
        low, high = self.rating_range or (0.0, 1.0)
        self.model.rating_mid, self.model.rating_half = (low + high) / 2.0, max((high - low) / 2.0, 1e-6)

    def _epochs(self, view: TrainView) -> Callable[[], bool]:
        """One meta-training epoch per call: a budgeted pass over the target rows (False: budget spent).

        The first pass also starts the global mean (ratings) or the item bias (``popularity_init``)."""
        opt = torch.optim.Adam(self.model.parameters(), lr=float(self.config["outer_lr"]))
        n_target = len(view.history(view.target_domain))
        first = True

        def run_epoch() -> bool:
            nonlocal first
            rows = next(view.batches(n_target, self.rng, domain=view.target_domain), None)
            if rows is None:  # training budget or wall clock spent
                return False
            if first and self.explicit:
                self.mu = float(np.mean(rows.rating))
            if first and not self.explicit and self.config["popularity_init"]:
                self._init_item_bias(rows.item)
            first = False
            self._train_epoch(rows, view.n_users, opt, self.rng)
            return True

        return run_epoch

    @torch.no_grad()
    def _init_item_bias(self, items: np.ndarray) -> None:
        """Start the target item bias at the centred log popularity of the (already handed-out) rows."""
        counts = np.bincount(items, minlength=self.model.item_bias.num_embeddings)[self.target_items]
        prior = np.log1p(counts) - np.log1p(counts).mean()
        index = torch.from_numpy(self.target_items).to(self.device)
        self.model.item_bias.weight[index, 0] = torch.from_numpy(prior).float().to(self.device)

    def _train_epoch(
        self, rows: Interactions, n_users: int, opt: torch.optim.Optimizer, rng: np.random.Generator
    ) -> float:
        """Meta-batches over the users of one pass of target rows; returns the mean meta-loss."""
        cfg = self.config
        shots = [int(k) for k in cfg["train_shots"]]
        order = np.argsort(rows.user, kind="stable")  # grouped by user, in a random order within each
        rows = Interactions(rows.user[order], rows.item[order], rows.rating[order], rows.ts[order])
        items, ratings, mask = _padded(rows, n_users, max(shots) + int(cfg["query_size"]), self.device)
        count = rows.counts(n_users)
        eligible = {k: np.flatnonzero((count > k) & (self.has_history | (k > 0))) for k in shots}
        n_meta, batches = _meta_batches(shots, eligible, int(cfg["meta_batch"]), rng)
        self.model.train()
        total = 0.0
        for k, chosen in batches:
            users = torch.from_numpy(chosen).to(self.device)
            user = self.model.user_repr(*(t[users] for t in self.hist))
            sup_neg = self._negatives(k == 0, rng)
            source = tuple(t[users] for t in self.src_sup)
            target = (items[users, :k], ratings[users, :k], mask[users, :k])
            support = self._task(user, *self._support_rows(source, target, k), sup_neg)
            qry_neg = self._negatives(False, rng)
            query = self._task(user, items[users, k:], ratings[users, k:], mask[users, k:], qry_neg)
            total += self._meta_step(opt, support, query)
        self.model.eval()
        return total / max(n_meta, 1)

    def _meta_step(
        self, opt: torch.optim.Optimizer, support: tuple[Tensor, ...], query: tuple[Tensor, ...]
    ) -> float:
        """One outer step on a meta-batch of tasks (cold users, or cold items); returns its mean loss."""
        cfg = self.config
        loss = BACKENDS[cfg["backend"]](
            self.model,
            self.loss,
            support,
            self.loss,
            query,
            int(cfg["inner_steps"]),
            float(cfg["inner_lr"]),
            bool(cfg["first_order"]),
        ).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    def _select_inner(self, view: TrainView, best: float) -> None:
        """Prediction-time inner steps, then the inner lr scale, on validation users (a coordinate search)."""
        cfg = self.config
        base_lr, chosen_steps = self.inner_lr, self.inner_steps
        for steps in cfg["select_steps"]:
            steps = min(int(steps), view.budget.adapt_steps)
            if steps == chosen_steps:
                continue
            self.inner_steps = steps
            score = view.validate(self.predict)
            if score > best:
                best, chosen_steps = score, steps
        self.inner_steps = chosen_steps
        chosen_lr = base_lr
        for scale in cfg["select_lr_scale"]:
            if float(scale) == 1.0 or self.inner_steps == 0:
                continue
            self.inner_lr = base_lr * float(scale)
            score = view.validate(self.predict)
            if score > best:
                best, chosen_lr = score, self.inner_lr
        self.inner_lr = chosen_lr
        self.validation_score = float(best) if np.isfinite(best) else None
        self.selected |= {"inner_steps": self.inner_steps, "inner_lr": self.inner_lr}

    # -- prediction ------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("maml: predict called before fit")
        if isinstance(batch, ColdItemBatch):
            return self._predict_items(batch)
        n = len(batch)
        rng = self.batch_rng(batch)
        hist = _padded(batch.history, n, int(self.config["history_len"]), self.device)
        user = self.model.user_repr(*hist)
        k = int(batch.support.counts(n).max(initial=0))
        source = _padded(batch.history, n, int(self.config["source_support"]), self.device)
        target = _padded(batch.support, n, k, self.device)
        support = self._task(user, *self._support_rows(source, target, k), self._negatives(k == 0, rng))
        batch.spend_adapt_steps(self.inner_steps)
        fast = self._adapt(support)
        if batch.wants_ratings:
            return self._rate(fast, user, batch.query_user, batch.query_item, n)
        return self._rank(fast, user, batch.candidates)

    def _adapt(self, support: tuple[Tensor, ...]):
        """The decision parameters adapted on a batch of supports (cold users, or cold items), first order:
        ``inner_steps`` steps of ``inner_lr``, batched over the tasks."""

        def task_loss(params, *task):
            return self.loss(partial(self.model.decide, params), *task)

        return adapt(
            self.model.decision_params(),
            task_loss,
            support,
            self.inner_steps,
            self.inner_lr,
            first_order=True,
        )

    def _rate(self, fast, user: Tensor, q_user: np.ndarray, q_item: np.ndarray, n: int) -> np.ndarray:
        order = np.argsort(q_user, kind="stable")
        counts = np.bincount(q_user, minlength=n)
        col = np.arange(len(order)) - np.concatenate([[0], np.cumsum(counts)[:-1]])[q_user[order]]
        items = np.zeros((n, int(counts.max(initial=1))), dtype=np.int64)
        items[q_user[order], col] = q_item[order]
        vec, bias = self.model.items(torch.from_numpy(items).to(self.device))
        scores = torch.vmap(self.model.decide)(fast, user, vec, bias) + self.mu
        out = np.empty(len(order), dtype=np.float64)
        out[order] = scores[q_user[order], col].double().cpu().numpy()
        return out if self.rating_range is None else np.clip(out, *self.rating_range)

    def _rank(self, fast, user: Tensor, candidates: np.ndarray) -> np.ndarray:
        chunk = int(self.config["score_chunk"])
        out = np.empty((len(user), len(candidates)), dtype=np.float32)

        batched = torch.vmap(self.model.decide, in_dims=(0, 0, None, None))
        for begin in range(0, len(candidates), chunk):
            vec, bias = self.model.items(torch.from_numpy(candidates[begin : begin + chunk]).to(self.device))
            out[:, begin : begin + chunk] = batched(fast, user, vec, bias).cpu().numpy()
        return out

    # -- cold items (IR, IL): items as tasks, the model's embedding table holds users ---------------------
    def _setup_items(self, view: TrainView) -> None:
        """The target rows (charged once, the only data meta-training reads), the inner loop's defaults."""
        cfg = self.config
        self.explicit = view.explicit
        self.rating_range = view.rating_range
        self.loss = _rating_loss if self.explicit else _softmax_loss
        self.item_rows = view.history(view.target_domain)
        self.n_items = view.n_items
        self.task_users = np.unique(self.item_rows.user)  # users with target rows: the negatives of IL
        self.inner_lr = float(cfg["inner_lr"])
        self.inner_steps = min(int(cfg["inner_steps"]), view.budget.adapt_steps)

    def _pretrain_items(self, view: TrainView) -> None:
        """Meta-training on warm target items as tasks (see the module docstring)."""
        cfg = self.config
        self.setup(view)
        rows = self.item_rows
        self.model = MeLU(
            view.n_users,  # the embedding table holds users: ``items()`` gives user vectors and biases
            int(cfg["dim"]),
            tuple(cfg["hidden"]),
            rating_weighted=self.explicit,
            rating_range=self.rating_range or (0.0, 1.0),
            generator=self.torch_generator,
        ).to(self.device)
        counts = np.bincount(rows.user, minlength=view.n_users)
        with torch.no_grad():  # users never in a task keep a zero vector instead of random noise
            cold = torch.from_numpy(counts == 0).to(self.device)
            self.model.item_emb.weight[cold] = 0.0
            if not self.explicit and self.config["popularity_init"]:  # user activity, as L's item popularity
                prior = np.log1p(counts) - np.log1p(counts[self.task_users]).mean()
                index = torch.from_numpy(self.task_users).to(self.device)
                self.model.item_bias.weight[index, 0] = torch.from_numpy(prior[self.task_users]).float()
        self.mu = float(np.mean(rows.rating)) if self.explicit else 0.0
        opt = torch.optim.Adam(self.model.parameters(), lr=float(cfg["outer_lr"]))

        def run_epoch() -> bool:
            self._train_item_epoch(opt, self.rng)
            return True

        predict = self.predict if self.explicit else None  # IL: a support-less score is flat (module doc)
        sel = select_epochs(
            view,
            run_epoch,
            [self.model],
            int(cfg["epochs"]),
            predict,
            int(cfg["patience"]),
            validator=view.validate_pretrain,
        )
        self.selected = {"epochs": sel.best_epoch}

    def _train_item_epoch(self, opt: torch.optim.Optimizer, rng: np.random.Generator) -> float:
        """Meta-batches of warm target items: each item's rows in a random order, the first K its support."""
        cfg, rows = self.config, self.item_rows
        shots = [int(k) for k in cfg["train_shots"]]
        shuffled = rng.permutation(len(rows))
        order = shuffled[np.argsort(rows.item[shuffled], kind="stable")]
        tasks = Interactions(rows.item[order], rows.user[order], rows.rating[order], rows.ts[order])
        users, ratings, mask = _padded(tasks, self.n_items, max(shots) + int(cfg["query_size"]), self.device)
        count = tasks.counts(self.n_items)
        eligible = {k: np.flatnonzero(count > k) for k in shots}
        n_meta, batches = _meta_batches(shots, eligible, int(cfg["meta_batch"]), rng)
        self.model.train()
        total = 0.0
        for k, found in batches:
            chosen = torch.from_numpy(found).to(self.device)
            sup = (users[chosen, :k], ratings[chosen, :k], mask[chosen, :k])
            item = self.model.user_repr(*sup)
            support = self._task(item, *sup, self._user_negatives(rng))
            qry = (users[chosen, k:], ratings[chosen, k:], mask[chosen, k:])
            query = self._task(item, *qry, self._user_negatives(rng))
            total += self._meta_step(opt, support, query)
        self.model.eval()
        return total / max(n_meta, 1)

    def _user_negatives(self, rng: np.random.Generator) -> np.ndarray | None:
        """Uniform negative users (with target rows) for an item's sampled softmax; None for ratings."""
        return None if self.explicit else rng.choice(self.task_users, int(self.config["negatives"]))

    def _fixed_negatives(self) -> np.ndarray | None:
        """Prediction's negative users: ``negatives`` evenly spaced ones of those with target rows (uniform,
        as in training, but fixed), so a cold item adapts the same in every batch of query users (IL)."""
        if self.explicit:
            return None
        pick = (
            np.linspace(0, len(self.task_users) - 1, int(self.config["negatives"])).round().astype(np.int64)
        )
        return self.task_users[pick]

    def _predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        """Adapt on each cold item's support users, then rate the query pairs or score the query users."""
        n = len(batch)
        rows = Interactions(batch.support_of(), batch.support.user, batch.support.rating, batch.support.ts)
        k = int(rows.counts(n).max(initial=0))
        sup = _padded(rows, n, k, self.device)
        item = self.model.user_repr(*sup)
        batch.spend_adapt_steps(self.inner_steps)
        if k == 0:  # the support withheld (``validate_pretrain``): nothing to adapt on
            fast = expand_params(self.model.decision_params(), n)
        else:
            fast = self._adapt(self._task(item, *sup, self._fixed_negatives()))
        if batch.wants_ratings:
            return self._rate(fast, item, np.searchsorted(batch.items, batch.query_item), batch.query_user, n)
        return np.ascontiguousarray(self._rank(fast, item, np.asarray(batch.query_users)).T)

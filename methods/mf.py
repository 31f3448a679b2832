"""Shared building blocks of the matrix-factorization family of methods (TGT, CMF, EMCDR, PTUPCDR, FineTune).

* ``MF``: biased matrix factorization over the task's global user and item indices. A user is one vector
  ``[p_u, b_u]`` of size ``dim + 1`` and an item one vector ``[q_i, 1]`` plus an offset ``b_i + mu_d`` (``mu``
  per item domain), so a score is ``<user, item> + offset``; transfer methods produce the user vector.
* Losses: rating MSE (family R) and BPR with uniform same-domain negatives (families L, C), per row.
* ``epoch_batches``: one budgeted pass over the rows of some domains, domains interleaved at random.
* ``fit_mf``: epochs of Adam on those batches, selected on validation cold users with the API's one
  selection helper (``benchmark.api.select_epochs``: best state kept, early stop after ``patience``). With
  sparse tables each step's gradient is written out by hand (``mf_step``, 1.7x faster than autograd on
  family R's transfer pipeline); dense tables (the ``reference`` profiles) keep autograd.
* Two stages (``benchmark.api.Method``): a method's MF stages run in ``pretrain`` (its ``train``), their
  epochs chosen by ``view.validate_pretrain`` (support withheld, the same for every K of a task group), so
  they are trained once per group; ``fit`` then chooses the adaptation steps with the real support.
* ``ColdStartMF``: the shared ``predict``: a method supplies each cold user's initial target vector, which is
  adapted on the support (K>0) with at most ``batch.adapt_steps`` Adam steps, batched over users, and then
  scores the query items or all candidates. The number of steps is chosen on validation cold users.
* Profiles (``resolve_profile``): a method's TOML may hold named configurations in ``[profiles.<name>]``
  tables, selected with the config key ``profile`` (``--set profile=reference``). CMF, EMCDR and PTUPCDR use
  it for ``reference``, the modelling choices of the official PTUPCDR code (which runs all three), reported
  next to their ranked defaults. The knobs it turns are plain config keys with defaults that keep the
  engineering choices: ``sparse_adam`` (lazy Adam on the embedding tables, or dense Adam, whose moments
  keep moving a row for tens of steps after each gradient), ``integer_ratings`` (train on ratings cast to
  int, as the official code does), ``batches`` (per-domain batches interleaved, or all domains' rows
  mixed), ``select`` (``validation``: best epoch on validation cold users; ``last``: the last epoch) and
  ``clamp`` (predicted ratings clipped to the training range).
"""

from __future__ import annotations

import inspect
import math
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import _single_tensor_adam

from benchmark.api import (
    Budget,
    ColdBatch,
    Interactions,
    Method,
    MethodConfig,
    Selection,
    TrainView,
    select_epochs,
)


def ids(values: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices as a fresh int64 tensor on ``device`` (arrays from the harness may be read-only)."""
    return torch.from_numpy(np.array(values, dtype=np.int64)).to(device)


class MF(nn.Module):
    """Biased MF: score(u, i) = <p_u, q_i> + b_u + b_i + mu[domain(i)]; ``bias=False`` keeps <p_u, q_i>.

    ``sparse=False`` gives the tables dense gradients, so that ``adam`` trains them with dense Adam.
    ``generator``: where the initial embeddings are drawn from (the run's ``Method.torch_generator``).
    """

    def __init__(
        self,
        n_users: int,
        item_domain: np.ndarray,
        dim: int,
        init_std: float = 0.1,
        bias: bool = True,
        sparse: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.bias = dim, bias
        # sparse gradients: a batch touches a few thousand rows of tables with up to ~70k rows
        self.user = nn.Embedding(n_users, dim, sparse=sparse)
        self.item = nn.Embedding(len(item_domain), dim, sparse=sparse)
        self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
        self.item_bias = nn.Embedding(len(item_domain), 1, sparse=sparse)
        self.mu = nn.Parameter(torch.zeros(int(item_domain.max(initial=0)) + 1), requires_grad=bias)
        self.register_buffer("item_domain", torch.tensor(item_domain, dtype=torch.long))
        nn.init.normal_(self.user.weight, std=init_std, generator=generator)
        nn.init.normal_(self.item.weight, std=init_std, generator=generator)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)
            table.weight.requires_grad_(bias)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], bias: bool, sparse: bool) -> MF:
        """An ``MF`` holding ``state`` (a ``state_dict``): how a cached pretraining is restored."""
        n_users, dim = state["user.weight"].shape
        item_domain = state["item_domain"].cpu().numpy()
        model = cls(n_users, item_domain, dim, bias=bias, sparse=sparse, generator=torch.Generator())
        model.load_state_dict(state)
        return model

    @property
    def device(self) -> torch.device:
        return self.user.weight.device

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        """``[p_u, b_u]``, shape ``users.shape + (dim + 1,)``."""
        return torch.cat([self.user(users), self.user_bias(users)], dim=-1)

    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """``[q_i, 1]`` (``[q_i, 0]`` without biases), so that <user vector, item vector> = <p, q> + b_u."""
        one = torch.full((*items.shape, 1), float(self.bias), device=items.device)
        return torch.cat([self.item(items), one], dim=-1)

    def item_offsets(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_bias(items).squeeze(-1) + self.mu[self.item_domain[items]]

    def score(self, user_vec: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` (shape ``(B, ...)``) for user vectors ``(B, dim + 1)``."""
        u = user_vec.reshape(user_vec.shape[0], *([1] * (items.dim() - 1)), -1)
        return (u * self.item_vectors(items)).sum(-1) + self.item_offsets(items)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score(self.user_vectors(users), items)

    def score_all(self, user_vec: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` scores of the same ``N`` items for every user: one matrix product."""
        return user_vec @ self.item_vectors(items).T + self.item_offsets(items)


# -- losses and sampling -------------------------------------------------------------------------------------
class NegativeSampler:
    """Uniform negatives from the positive item's own domain, vectorized over rows."""

    def __init__(self, item_domain: np.ndarray) -> None:
        self.order = np.argsort(item_domain, kind="stable")
        self.size = np.bincount(item_domain)
        self.start = np.concatenate([[0], np.cumsum(self.size)[:-1]])
        self.item_domain = item_domain

    def sample(self, items: np.ndarray, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        dom = self.item_domain[items]
        offset = (rng.random((len(items), n)) * self.size[dom][:, None]).astype(np.int64)
        return self.order[self.start[dom][:, None] + offset]


def bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per-positive BPR loss; ``neg`` has one more trailing axis (negatives per positive) than ``pos``."""
    return -F.logsigmoid(pos.unsqueeze(-1) - neg).mean(-1)


def row_losses(
    model: MF,
    rows: Interactions,
    explicit: bool,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    l2: float,
) -> torch.Tensor:
    """Per-row training loss: squared rating error (explicit) or BPR, plus L2 on the rows' embeddings."""
    users, items = ids(rows.user, model.device), ids(rows.item, model.device)
    u = model.user_vectors(users)
    reg = model.user(users).pow(2).sum(-1) + model.item(items).pow(2).sum(-1)
    if explicit:
        rating = torch.as_tensor(rows.rating, dtype=torch.float32, device=model.device)
        loss = (model.score(u, items) - rating).pow(2)
    else:
        neg = ids(sampler.sample(rows.item, rng), model.device)
        loss = bpr(model.score(u, items), model.score(u, neg))
        reg = reg + model.item(neg).pow(2).sum((-2, -1))
    return loss + l2 * reg


@torch.no_grad()
def mf_step(
    model: MF,
    optimizer: LeanAdam,
    rows: Interactions,
    explicit: bool,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    l2: float,
    weight: torch.Tensor | None = None,
) -> None:
    """One ``optimizer`` step on ``row_losses(...)`` averaged over the rows (each scaled by ``weight``), its
    gradient written out by hand, for an MF with sparse tables.

    Why: at the batch sizes MF trains with, autograd's graph, the sparse gradients of each table lookup and
    their coalescing cost about 3x the arithmetic. The loss, rows and negatives (drawn from ``rng`` in the
    same order) are those of ``row_losses``; only the order of the floating-point sums differs, so parameters
    agree with autograd's to rounding, not bit for bit (``tests/test_mf_step.py``).
    """
    n, dim = len(rows.user), model.dim
    users, items = ids(rows.user, model.device), ids(rows.item, model.device)
    scale = torch.full((n,), 1.0 / n, device=model.device) if weight is None else weight / n
    user_vec = model.user_vectors(users)  # [p_u, b_u]
    if explicit:
        item_rows = items
        item_vec = model.item_vectors(items)
        rating = torch.as_tensor(rows.rating, dtype=torch.float32, device=model.device)
        err = (user_vec * item_vec).sum(-1) + model.item_offsets(items) - rating
        d_score = 2 * err * scale  # d loss / d score
        user_grad = d_score[:, None] * item_vec
        item_user = user_vec[:, :dim]
    else:
        neg = ids(sampler.sample(rows.item, rng), model.device)  # (n, m)
        m = neg.shape[1]
        pos_vec, neg_vec = model.item_vectors(items), model.item_vectors(neg)
        pos = (user_vec * pos_vec).sum(-1) + model.item_offsets(items)
        negs = (user_vec[:, None] * neg_vec).sum(-1) + model.item_offsets(neg)
        d_neg = torch.sigmoid(negs - pos[:, None]) * (scale / m)[:, None]  # -logsigmoid(pos - neg) / m
        d_pos = -d_neg.sum(1)
        user_grad = d_pos[:, None] * pos_vec + (d_neg[..., None] * neg_vec).sum(1)
        item_rows = torch.cat([items, neg.reshape(-1)])
        item_vec = torch.cat([pos_vec, neg_vec.reshape(-1, dim + 1)])
        d_score = torch.cat([d_pos, d_neg.reshape(-1)])
        item_user = torch.cat([user_vec[:, :dim], user_vec[:, :dim].repeat_interleave(m, 0)])
    reg = 2 * l2 * scale  # L2 on the embeddings, not on the biases
    user_grad[:, :dim] += reg[:, None] * user_vec[:, :dim]
    if not explicit:
        reg = torch.cat([reg, reg.repeat_interleave(m)])
    item_grad = d_score[:, None] * item_user + reg[:, None] * item_vec[:, :dim]
    if model.bias:
        item_grad = torch.cat([item_grad, d_score[:, None]], 1)
        domain = model.item_domain[item_rows]
        mu = torch.zeros_like(model.mu).index_add_(0, domain[:n], d_score[:n])
        if not explicit:  # summed apart, as autograd does: in BPR the two parts cancel exactly
            mu += torch.zeros_like(model.mu).index_add_(0, domain[n:], d_score[n:])
    else:
        user_grad = user_grad[:, :dim]
    for table, index, grad in (
        (model.user.weight, users, user_grad),
        (model.item.weight, item_rows, item_grad),
    ):
        distinct, inverse = torch.unique(index, return_inverse=True)
        summed = torch.zeros(len(distinct), grad.shape[1], dtype=grad.dtype, device=grad.device)
        optimizer.step_group(optimizer.group_of(table), distinct, summed.index_add_(0, inverse, grad))
    if model.bias:
        model.mu.grad = mu
        optimizer.step_dense()


# -- budgeted training with validation selection ------------------------------------------------------------
def adam(modules: Sequence[nn.Module], lr: float) -> list[LeanAdam]:
    """Lazy (sparse) Adam for sparse embedding tables, Adam for every other trainable parameter.

    Dense Adam would update every row of every table at each step: 3x slower on the largest tasks. An MF's
    embedding table and its bias table (indexed by the same rows) are updated together (``LeanAdam``).
    """
    sparse_ids = {
        id(m.weight) for mod in modules for m in mod.modules() if isinstance(m, nn.Embedding) and m.sparse
    }
    params = [p for mod in modules for p in mod.parameters() if p.requires_grad]
    sparse = [p for p in params if id(p) in sparse_ids]
    dense = [p for p in params if id(p) not in sparse_ids]
    pairs = [
        (table.weight, bias.weight)
        for mod in modules
        for m in mod.modules()
        if isinstance(m, MF)
        for table, bias in ((m.user, m.user_bias), (m.item, m.item_bias))
        if id(table.weight) in sparse_ids and id(bias.weight) in sparse_ids and bias.weight.requires_grad
    ]
    paired = {id(p) for pair in pairs for p in pair}
    return [LeanAdam([*pairs, *((p,) for p in sparse if id(p) not in paired)], dense, lr)]


class LeanAdam:
    """``torch.optim.SparseAdam`` on the sparse tables and ``torch.optim.Adam`` on ``dense``, bit for bit, in
    one object without their per-step overhead.

    An MF step is a few thousand rows, so the two optimizers' bookkeeping (hooks, profiler records, the
    sparse tensors SparseAdam builds to mask and update its moments: ``sparse_mask`` and three sparse adds
    per table) cost more than the arithmetic. Here a table's update gathers the gradient's rows with
    ``index_select`` and writes them back with ``index_copy_``/``index_add_``: the same element-wise
    operations in the same order (``tests/test_speed_order.py`` checks it against both torch optimizers).
    ``sparse`` holds groups of tables: a group's tables (an embedding and its bias, whose gradients have the
    same rows) keep their moments side by side in one tensor and are updated by one set of operations when
    their gradients' rows and step counts agree (element-wise operations: the same values), else one by one.
    Dense parameters go through torch's own single-tensor Adam kernel with Adam's defaults.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(
        self, sparse: Sequence[Sequence[torch.Tensor]], dense: Sequence[torch.Tensor], lr: float
    ) -> None:
        self.groups = [tuple(group) for group in sparse]
        if any(len({p.shape[0] for p in group}) != 1 for group in self.groups):
            raise ValueError("a group's tables must have the same rows")
        self.dense, self.lr = list(dense), float(lr)
        self.moments: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.groups)
        self.steps = [[0] * len(group) for group in self.groups]
        self.dense_state: dict[int, list[torch.Tensor]] = {}

    def zero_grad(self) -> None:
        for group in self.groups:
            for p in group:
                p.grad = None
        for p in self.dense:
            p.grad = None

    def _moments(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The group's two moment tensors, its tables' columns side by side (zeros at first)."""
        if self.moments[i] is None:
            group = self.groups[i]
            width = sum(p.shape[1] for p in group)
            self.moments[i] = tuple(  # type: ignore[assignment]
                torch.zeros(group[0].shape[0], width, dtype=group[0].dtype, device=group[0].device)
                for _ in range(2)
            )
        return self.moments[i]  # type: ignore[return-value]

    def _update(
        self,
        rows: torch.Tensor,
        values: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        step: int,
    ) -> torch.Tensor:
        """SparseAdam's arithmetic on the gradient's ``rows``: moments updated in place, returns the step."""
        beta1, beta2 = self.betas
        old_avg = exp_avg.index_select(0, rows)
        avg = values.sub(old_avg).mul_(1 - beta1).add_(old_avg)  # numer: old + (1 - b1)(g - old)
        exp_avg.index_copy_(0, rows, avg)
        old_sq = exp_avg_sq.index_select(0, rows)
        sq = values.pow(2).sub_(old_sq).mul_(1 - beta2).add_(old_sq)
        exp_avg_sq.index_copy_(0, rows, sq)
        denom = sq.sqrt_().add_(self.eps)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr * math.sqrt(bias_correction2) / bias_correction1
        return -step_size * avg.div_(denom)

    def group_of(self, table: torch.Tensor) -> int:
        """The index of the group whose first table is ``table``."""
        return next(i for i, group in enumerate(self.groups) if group[0] is table)

    @torch.no_grad()
    def step(self) -> None:
        """One step from the parameters' ``.grad`` (sparse gradients on the tables)."""
        for i, group in enumerate(self.groups):
            if all(p.grad is None for p in group):
                continue
            steps, grads = self.steps[i], []
            for p in group:
                grads.append(None if p.grad is None else p.grad.coalesce())
            rows = [g._indices()[0] if g is not None and g._values().numel() else None for g in grads]
            if len(group) > 1 and len({*steps}) == 1 and None not in grads and _same_rows(rows):
                values = torch.cat([g._values() for g in grads], dim=1)  # type: ignore[union-attr]
                self.step_group(i, rows[0], values)  # type: ignore[arg-type]
                continue
            exp_avg, exp_avg_sq = self._moments(i)
            start = 0
            for j, (p, g, r) in enumerate(zip(group, grads, rows, strict=True)):
                cols = slice(start, start + p.shape[1])
                start += p.shape[1]
                if g is None:
                    continue
                steps[j] += 1  # SparseAdam counts a step before it skips an empty gradient
                if r is None:
                    continue
                update = self._update(r, g._values(), exp_avg[:, cols], exp_avg_sq[:, cols], steps[j])
                p.index_add_(0, r, update)
        self.step_dense()

    @torch.no_grad()
    def step_group(self, i: int, rows: torch.Tensor, values: torch.Tensor) -> None:
        """One step of group ``i`` from its gradient given as distinct ``rows`` (non-empty) and ``values``,
        the group's tables' columns side by side: what ``step`` does with a group's coalesced gradients."""
        group, steps = self.groups[i], self.steps[i]
        for j in range(len(group)):
            steps[j] += 1
        if len({*steps}) != 1:
            raise ValueError("a group stepped as one must have the same step count in every table")
        exp_avg, exp_avg_sq = self._moments(i)
        update = self._update(rows, values, exp_avg, exp_avg_sq, steps[0])
        start = 0
        for p in group:
            p.index_add_(0, rows, update[:, start : start + p.shape[1]])
            start += p.shape[1]

    @torch.no_grad()
    def step_dense(self) -> None:
        """Adam on the dense parameters that have a ``.grad``."""
        with_grad = [p for p in self.dense if p.grad is not None]
        if not with_grad:
            return
        beta1, beta2 = self.betas
        states = []
        for p in with_grad:
            if id(p) not in self.dense_state:
                zeros = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.dense_state[id(p)] = [torch.tensor(0.0), zeros, zeros.clone()]
            states.append(self.dense_state[id(p)])
        _single_tensor_adam(
            with_grad,
            [p.grad for p in with_grad],
            [s[1] for s in states],
            [s[2] for s in states],
            [],
            [s[0] for s in states],
            None,
            None,
            amsgrad=False,
            has_complex=False,
            beta1=beta1,
            beta2=beta2,
            lr=self.lr,
            weight_decay=0.0,
            eps=self.eps,
            maximize=False,
            capturable=False,
            differentiable=False,
            decoupled_weight_decay=False,
        )


def _same_rows(rows: list[torch.Tensor | None]) -> bool:
    """Every gradient of a group is non-empty and has the same rows."""
    first = rows[0]
    if first is None:
        return False
    return all(r is not None and r.shape == first.shape and torch.equal(r, first) for r in rows[1:])


def epoch_batches(
    view: TrainView,
    batch_size: int,
    rng: np.random.Generator,
    domains: Sequence[str],
    reserve: int = 0,
    mixed: bool = False,
) -> Iterator[Interactions]:
    """One pass over the rows of ``domains``, their batches interleaved at random; stops at the budget.

    ``reserve``: stop before a batch would eat into the last ``reserve`` training examples of the budget
    (kept for a later stage that must run). Row counts come from ``view.n_rows``, free of budget.
    ``mixed``: batches drawn from all of the task's rows shuffled together (``domains`` must be all of its
    domains), as one data loader over the concatenated domains does.
    """
    if mixed:
        if sorted(domains) != sorted(view.domains):
            raise ValueError(f"mixed batches cover every domain of the task, not only {list(domains)}")
        streams = [view.batches(batch_size, rng)]
        order = np.zeros(-(-view.n_rows() // batch_size), dtype=np.int64)
    else:
        streams = [view.batches(batch_size, rng, domain=d) for d in domains]
        n_batches = [-(-view.n_rows(d) // batch_size) for d in domains]
        order = rng.permutation(np.repeat(np.arange(len(domains)), n_batches))
    for d in order:
        if reserve and view.examples_left - reserve < batch_size:
            return
        rows = next(streams[d], None)
        if rows is None:
            return
        yield rows


def sgd_epoch(
    batches: Iterator[Interactions],
    loss_fn: Callable[[Interactions], torch.Tensor],
    optimizers: Sequence[torch.optim.Optimizer | LeanAdam],
) -> bool:
    """Run one pass; False when the budget gave no batch at all (training should stop)."""
    seen = False
    for rows in batches:
        for opt in optimizers:
            opt.zero_grad()
        loss_fn(rows).backward()
        for opt in optimizers:
            opt.step()
        seen = True
    return seen


def integer_ratings(rows: Interactions) -> Interactions:
    """The rows with ratings cast to int (truncated), as the official PTUPCDR code loads its labels."""
    return Interactions(rows.user, rows.item, np.trunc(rows.rating), rows.ts)


def fit_mf(
    view: TrainView,
    model: MF,
    domains: Sequence[str],
    config: dict[str, Any],
    rng: np.random.Generator,
    epochs: int,
    predict: Callable[[ColdBatch], np.ndarray] | None = None,
    lr: float | None = None,
    domain_weight: np.ndarray | None = None,
    reserve: int = 0,
    validator: Callable[[Callable[[ColdBatch], np.ndarray]], float] | None = None,
) -> Selection:
    """Fit ``model`` on the training rows of ``domains`` for up to ``epochs`` epochs, selected by validating
    ``predict`` (``select_epochs``; every epoch kept without it). Config: batch_size, lr, l2, patience,
    integer_ratings and batches (see the module docstring).

    ``domain_weight`` (one weight per domain index) scales each row's loss, as CMF's relation weights do.
    ``reserve``: training examples left untouched for a later stage (see ``epoch_batches``).
    ``validator``: what scores ``predict`` (default ``view.validate``; ``pretrain`` passes
    ``view.validate_pretrain``).
    """
    optimizers = adam([model], lr or config["lr"])
    sampler = NegativeSampler(view.item_domain)
    cast = bool(config["integer_ratings"]) and view.explicit
    mixed = config["batches"] == "mixed"

    def loss(rows: Interactions) -> torch.Tensor:
        if cast:
            rows = integer_ratings(rows)
        per_row = row_losses(model, rows, view.explicit, sampler, rng, config["l2"])
        if domain_weight is None:
            return per_row.mean()
        weight = torch.as_tensor(domain_weight[view.item_domain[rows.item]], device=model.device)
        return (per_row * weight).mean()

    def run_epoch() -> bool:
        batches = epoch_batches(view, config["batch_size"], rng, domains, reserve, mixed)
        if not model.user.sparse:  # dense Adam (the reference profiles): autograd's gradients
            return sgd_epoch(batches, loss, optimizers)
        seen = False
        for rows in batches:
            if cast:
                rows = integer_ratings(rows)
            weight = None
            if domain_weight is not None:
                weight = torch.as_tensor(
                    domain_weight[view.item_domain[rows.item]], dtype=torch.float32, device=model.device
                )
            mf_step(model, optimizers[0], rows, view.explicit, sampler, rng, config["l2"], weight)
            seen = True
        return seen

    patience = int(config["patience"])
    return select_epochs(view, run_epoch, [model], epochs, predict, patience, validator=validator)


# -- cold users: adaptation on the support and prediction ---------------------------------------------------
def adapt_user_vectors(
    model: MF,
    init: torch.Tensor,
    support: Interactions,
    explicit: bool,
    steps: int,
    lr: float,
    reg: float,
    negatives: np.ndarray,
    n_neg: int,
    rng: np.random.Generator,
) -> torch.Tensor:
    """Fit each user's vector on its support: ``steps`` Adam steps on the whole batch's ``(B, dim+1)`` tensor.

    The loss is a sum over users of each user's mean support loss plus ``reg * ||v - init||^2``; users'
    terms share no parameter and Adam is element-wise, so this equals a separate Adam run per user. Users
    without support keep ``init`` (zero gradient). Item parameters stay fixed.
    """
    n, device = init.shape[0], init.device
    items, ratings, mask = (torch.as_tensor(a, device=device) for a in support.padded(n))
    weight = mask.float() / mask.sum(1, keepdim=True).clamp(min=1)
    with torch.no_grad():
        pos_vec, pos_off = model.item_vectors(items), model.item_offsets(items)
        cand = ids(negatives, device)
        cand_vec, cand_off = model.item_vectors(cand), model.item_offsets(cand)
    user = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([user], lr=lr)
    for _ in range(steps):
        pos = (user[:, None, :] * pos_vec).sum(-1) + pos_off
        if explicit:
            loss = (pos - ratings).pow(2)
        else:
            pick = ids(rng.integers(len(negatives), size=(*items.shape, n_neg)), device)
            neg = (user[:, None, None, :] * cand_vec[pick]).sum(-1) + cand_off[pick]
            loss = bpr(pos, neg)
        total = (loss * weight).sum() + reg * (user - init).pow(2).sum()
        opt.zero_grad()
        total.backward()
        opt.step()
    return user.detach()


def listed(doc: str | None, marker: str) -> tuple[str, ...]:
    """The items of the first ``- `` list after the line holding ``marker`` in ``doc``, each on one line.

    A method's deviations live once, in its module docstring; its ``deviations`` attribute (what a method
    card shows) is read from there.
    """
    lines = (doc or "").splitlines()
    start = next((i for i, line in enumerate(lines) if marker in line), None)
    if start is None:
        raise ValueError(f"no line holds {marker!r}")
    items: list[str] = []
    for line in lines[start + 1 :]:
        text = line.strip()
        if text.startswith("- "):
            items.append(text[2:])
        elif text and items and line.startswith("    "):
            items[-1] += " " + text
        elif items:  # a blank or dedented line ends the list
            break
    return tuple(items)


PROFILE_LABELS = {
    "default": "ranked: ColdBench's training choices, each deviation listed",
    "reference": "as published: the official code's modelling choices; reported, not ranked",
}


def resolve_profile(cls: type[Method], family: str, config: dict[str, Any]) -> dict[str, Any]:
    """The configuration a run uses: ``config``, or with ``profile`` = NAME the ``[profiles.NAME]`` table of
    the method's TOML over its family defaults, where a key set away from its default value still wins
    (``--set profile=reference --set meta_epochs=20`` changes the reference's epochs).

    The runner hands over defaults and overrides already merged, so a key set to its default value cannot
    be told from an unset one and takes the profile's value; to get it, use ``profile = "default"`` and set
    the profile's keys by hand. A profile may only set keys the defaults have, so that this is possible.
    """
    name = config.get("profile", "default")
    if name == "default":
        return dict(config)
    tables = tomllib.loads(Path(inspect.getfile(cls)).with_suffix(".toml").read_text())
    profiles = tables.get("profiles", {})
    if name not in profiles:
        raise KeyError(f"unknown profile {name!r}; known: {['default', *sorted(profiles)]}")
    base = cls.default_config(family)
    unknown = sorted(set(profiles[name]) - set(base))
    if unknown:
        raise KeyError(f"profile {name!r} sets keys the defaults lack: {unknown}")
    own = {k: v for k, v in config.items() if k not in base or base[k] != v}
    return {**base, **profiles[name], **own}


class ColdStartMF(Method):
    """Base of the MF-family methods: ``predict`` = initial target vector -> support adaptation -> scores.

    A subclass sets ``self.target`` (the ``MF`` that scores target items) in ``train`` and implements
    ``initial_vectors(batch)``. Config keys used here: ``adapt_steps``, ``adapt_lr``, ``adapt_reg``,
    ``adapt_negatives``, ``clamp``, ``bias``, ``sparse_adam`` and the optional ``profile``. What validation
    chose (epochs per stage, adaptation steps) is in ``selected``.
    """

    target: MF
    deviations: ClassVar[tuple[str, ...]] = ()  # from the paper and the official code, for the method card
    profile_labels: ClassVar[dict[str, str]] = {}  # profile -> how the card names its records
    # what ``pretrain`` leaves (``pretrained_state``): MF attributes, other modules, tensor attributes
    pretrained_mfs: ClassVar[tuple[str, ...]] = ("target",)
    pretrained_nets: ClassVar[tuple[str, ...]] = ()
    pretrained_tensors: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any], seed: int, device: str = "cpu") -> None:
        super().__init__(config, seed, device)
        self.adapt_steps = int(self.config["adapt_steps"])
        self.rating_range: tuple[float, float] | None = None
        self.selected: dict[str, Any] = {}
        self.validation_score: float | None = None
        self.pretrained = False

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        raise NotImplementedError

    # -- the two-stage fit (``benchmark.api.Method``): MF stages in ``pretrain``, adaptation steps in ``fit``
    def pretrain(self, view: TrainView) -> None:
        """The subclass's K-independent stages (``train``), their epochs chosen by ``validate_pretrain``."""
        self.train(view)
        self.pretrained = True

    def train(self, view: TrainView) -> None:
        raise NotImplementedError

    def fit(self, view: TrainView, budget: Budget) -> None:
        """Pretrain unless the harness did (or loaded it), then choose the adaptation steps on validation."""
        if not self.pretrained:
            self.pretrain(view)
        self.setup(view)
        self.select_adapt_steps(view)

    def make_net(self, name: str) -> nn.Module:
        """An untrained module of ``pretrained_nets`` to load a cached state into."""
        raise NotImplementedError

    def pretrained_state(self) -> dict[str, Any]:
        tensors = {n: getattr(self, n, None) for n in self.pretrained_tensors}
        return {
            "config": dict(self.config),
            "selected": dict(self.selected),
            "mfs": {name: getattr(self, name).state_dict() for name in self.pretrained_mfs},
            "nets": {name: getattr(self, name).state_dict() for name in self.pretrained_nets},
            "tensors": {n: t for n, t in tensors.items() if t is not None},
        }

    def load_pretrained(self, state: dict[str, Any]) -> None:
        self.config = MethodConfig(state["config"], type(self))
        self.adapt_steps = int(self.config["adapt_steps"])
        bias, sparse = bool(self.config["bias"]), bool(self.config["sparse_adam"])
        for name, values in state["mfs"].items():
            setattr(self, name, MF.from_state(values, bias, sparse).to(self.device))
        for name, values in state["nets"].items():
            net = self.make_net(name)
            net.load_state_dict(values)
            setattr(self, name, net.to(self.device))
        for name, value in state["tensors"].items():
            setattr(self, name, value.to(self.device))
        self.selected = dict(state["selected"])
        self.pretrained = True

    def use_profile(self, view: TrainView) -> dict[str, Any]:
        """Resolve ``profile`` for the view's family (see ``resolve_profile``) into ``self.config``.

        A profile reproducing an explicit-rating code (``reference``) refuses implicit families.
        """
        config = resolve_profile(type(self), view.family, self.config)
        if config.get("profile", "default") == "reference" and not view.explicit:
            raise ValueError("the reference profile reproduces the official rating-prediction code: family R")
        self.config = MethodConfig(config, type(self))
        self.adapt_steps = int(config["adapt_steps"])
        return self.config

    def make_mf(self, view: TrainView, init_std: float | None = None) -> MF:
        """An ``MF`` over the view's users and items from the config's ``dim``, ``init_std``, ``bias`` and
        ``sparse_adam``, on the device, initialized from the run's torch generator."""
        c = self.config
        model = MF(
            view.n_users,
            view.item_domain,
            c["dim"],
            c["init_std"] if init_std is None else init_std,
            bool(c["bias"]),
            sparse=bool(c["sparse_adam"]),
            generator=self.torch_generator,
        )
        return model.to(self.device)

    def setup(self, view: TrainView) -> None:
        """Facts every subclass needs: explicit or implicit, the task's rating range, target items."""
        self.explicit = view.explicit
        self.target_items = view.items_of(view.target_domain)
        self.rating_range = view.rating_range

    def start_target(self, view: TrainView, *others: str) -> list[MF]:
        """``setup``, then the target ``MF`` and one ``MF`` per name in ``others`` (set as attributes), each
        with its per-domain bias starts; returns the others, in order."""
        self.setup(view)
        self.target = self.make_mf(view)
        models = [self.make_mf(view) for _ in others]
        for name, model in zip(others, models, strict=True):
            setattr(self, name, model)
        for model in (self.target, *models):
            self.init_mu(model, view)
        return models

    def init_mu(self, model: MF, view: TrainView) -> None:
        """Start each domain's global bias at its mean training rating (explicit data; reads each history)."""
        if view.explicit and model.bias:
            with torch.no_grad():
                for d in view.domains:
                    model.mu[view.domain_index(d)] = float(np.mean(view.history(d).rating))

    @torch.no_grad()
    def predict(self, batch: ColdBatch) -> np.ndarray:
        init = self.initial_vectors(batch)
        steps = min(self.adapt_steps, batch.adapt_steps) if len(batch.support) else 0
        user = init
        if steps > 0:
            batch.spend_adapt_steps(steps)
            rng = self.batch_rng(batch)
            with torch.enable_grad():
                user = adapt_user_vectors(
                    self.target,
                    init,
                    batch.support,
                    self.explicit,
                    steps,
                    float(self.config["adapt_lr"]),
                    float(self.config["adapt_reg"]),
                    self.target_items,
                    int(self.config["adapt_negatives"]),
                    rng,
                )
        if batch.wants_ratings:
            pred = self.target.score(
                user[ids(batch.query_user, self.device)], ids(batch.query_item, self.device)
            )
            if self.config["clamp"] and self.rating_range is not None:
                pred = pred.clamp(*self.rating_range)
            return pred.cpu().numpy().astype(np.float32)
        scores = self.target.score_all(user, ids(batch.candidates, self.device))
        return scores.cpu().numpy().astype(np.float32)

    def select_adapt_steps(self, view: TrainView) -> None:
        """Choose the support-adaptation steps among {0, max/4, max} on validation cold users (K>0 only)."""
        most = self.adapt_steps
        seen_support = False

        def predict(batch: ColdBatch) -> np.ndarray:
            nonlocal seen_support
            seen_support |= len(batch.support) > 0
            return self.predict(batch)

        scores = {most: view.validate(predict)}
        if seen_support and most > 0:
            for steps in sorted({0, most // 4}):
                self.adapt_steps = steps
                scores[steps] = view.validate(self.predict)
            self.adapt_steps = max(scores, key=lambda s: (scores[s], -s))
        self.validation_score = scores[self.adapt_steps]
        self.selected["adapt_steps"] = self.adapt_steps

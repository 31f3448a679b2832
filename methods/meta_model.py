"""A MeLU-style recommender usable functionally, and a MAML inner loop batched over users with ``torch.func``.

Shared by the meta-learning methods (MAML here; ProtoNet and Siamese can reuse the model and the loop).

The model (after Lee et al. 2019, "MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation", KDD): a user is represented by the mean embedding of the items in their source-domain
history (in family R also a rating-weighted mean, so liked and disliked items pull apart), an item by its
embedding; the *decision layers*, an MLP over ``[user, item, user * item]``, score the pair. The embeddings,
the user projection and an item bias are global; only the decision layers are adapted per user (MeLU's
"local update").

The inner loop, ``adapt``, takes SGD steps on each task's support loss from the same initial decision
parameters, for every task of a batch at once: ``vmap`` over tasks of a function that applies ``grad`` of a
``functional_call``-based loss, with no Python loop over users. It is second-order by default: the adapted
parameters stay differentiable with respect to the initial parameters and every input tensor, so the query
loss back-propagates through the steps; ``first_order=True`` detaches the inner gradients (FOMAML).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from benchmark.api import init_linear

Params = dict[str, Tensor]
TaskLoss = Callable[..., Tensor]  # (params, *one task's tensors) -> scalar loss

__all__ = [
    "DecisionLayers",
    "MeLU",
    "Params",
    "ScoredLoss",
    "Scorer",
    "adapt",
    "expand_params",
    "learn2learn_meta_losses",
    "masked_mse",
    "masked_sampled_softmax",
    "meta_losses",
    "torch_func_meta_losses",
]


class DecisionLayers(nn.Module):
    """The decision MLP over ``[user, item, user * item]``, with its first layer applied in factored form.

    ``first`` is an ordinary ``Linear(3 dim, hidden[0])``; splitting its weight into the user, item and
    product blocks gives ``h = (W_u u + b) + (W_v + W_uv diag(u)) v``: one ``dim x hidden`` matrix per user
    applied to every item, instead of building a ``3 dim`` input per (user, item) pair. Same function,
    about a third of the work when a user scores ~15k candidates.
    """

    def __init__(self, dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.dim = dim
        self.first = nn.Linear(3 * dim, hidden[0])
        layers: list[nn.Module] = [nn.ReLU()]
        for width, h in pairwise(hidden):
            layers += [nn.Linear(width, h), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], 1))
        self.rest = nn.Sequential(*layers)

    def forward(self, user: Tensor, items: Tensor) -> Tensor:
        """Scores ``(n,)`` of items ``(n, dim)`` for one user ``(dim,)``."""
        d = self.dim
        w = self.first.weight
        per_user = w[:, d : 2 * d] + w[:, 2 * d :] * user  # (hidden, dim)
        hidden = items @ per_user.T + (w[:, :d] @ user + self.first.bias)
        return self.rest(hidden).squeeze(-1)


class MeLU(nn.Module):
    """Item embeddings + source-history user representation + decision layers.

    Args:
        n_items: items over all domains (one embedding table; the history is source items, the scored
            items target items).
        dim: embedding size. ``hidden``: widths of the decision MLP's hidden layers.
        rating_weighted: add a rating-weighted mean of the history embeddings (explicit ratings, family R),
            with ratings centred on the middle of ``rating_range`` and scaled to [-1, 1] (a method passes the
            task's ``view.rating_range``; the default is Amazon's 1..5 stars).
        generator: draws the initial parameters (the run's ``Method.torch_generator``); None: torch's
            global generator, as a plain ``nn.Module``.
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 32,
        hidden: Sequence[int] = (64, 32),
        rating_weighted: bool = False,
        rating_range: tuple[float, float] = (1.0, 5.0),
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.rating_weighted = rating_weighted
        low, high = rating_range
        self.rating_mid, self.rating_half = (low + high) / 2.0, max((high - low) / 2.0, 1e-6)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.normal_(self.item_emb.weight, std=0.1, generator=generator)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.item_bias.weight)
        self.user_proj = nn.Linear(dim * (2 if rating_weighted else 1), dim)
        self.decision = DecisionLayers(dim, hidden)
        if generator is not None:
            init_linear(self, generator)

    def user_repr(self, items: Tensor, ratings: Tensor, mask: Tensor) -> Tensor:
        """(B, L) padded history -> (B, dim). Ratings are centred to [-1, 1] for the weighted mean."""
        emb = self.item_emb(items)
        m = mask.to(emb.dtype)
        n = m.sum(-1, keepdim=True).clamp_min(1.0)
        pooled = (emb * m.unsqueeze(-1)).sum(-2) / n
        if self.rating_weighted:
            w = (ratings.to(emb.dtype) - self.rating_mid) / self.rating_half * m
            pooled = torch.cat([pooled, (emb * w.unsqueeze(-1)).sum(-2) / n], -1)
        return self.user_proj(pooled)

    def items(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """Embedding (..., dim) and bias (...) of item indices."""
        return self.item_emb(items), self.item_bias(items).squeeze(-1)

    def decision_params(self) -> Params:
        """The decision layers' parameters (what the inner loop adapts), by ``functional_call`` name."""
        return dict(self.decision.named_parameters())

    def decide(self, params: Params, user: Tensor, item_vec: Tensor, item_bias: Tensor) -> Tensor:
        """Scores ``(n,)`` of items for one user under decision parameters ``params``."""
        return functional_call(self.decision, params, (user, item_vec)) + item_bias


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the rows where ``mask`` holds (0 when none does)."""
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


def masked_sampled_softmax(pos: Tensor, neg: Tensor, mask: Tensor) -> Tensor:
    """Sampled softmax: each positive score ``(S,)`` against the negatives' scores ``(M,)``, masked mean."""
    logits = torch.cat([pos.unsqueeze(-1), neg.unsqueeze(-2).expand(*pos.shape, neg.shape[-1])], -1)
    nll = torch.logsumexp(logits, -1) - pos
    m = mask.to(pos.dtype)
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def expand_params(params: Params, n_tasks: int) -> Params:
    """The same parameters for each of ``n_tasks`` tasks (what ``adapt`` returns at 0 steps)."""
    return {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in params.items()}


def adapt(
    params: Params,
    task_loss: TaskLoss,
    tasks: Sequence[Tensor],
    steps: int,
    lr: float,
    first_order: bool = False,
) -> Params:
    """``steps`` SGD steps of ``task_loss`` per task from ``params``, batched over tasks with ``vmap``.

    ``tasks``: tensors with the task dimension first (``B`` tasks); ``task_loss(params, *one_task)`` sees
    one task's slices. Returns parameters with a leading task dimension. Second-order unless
    ``first_order``: the result is differentiable w.r.t. ``params`` and ``tasks`` through every step.
    """
    n_tasks = tasks[0].shape[0]
    if steps == 0:
        return expand_params(params, n_tasks)
    step_grad = grad(task_loss)

    def one_task(*task: Tensor) -> Params:
        fast = params
        for _ in range(steps):
            g = step_grad(fast, *task)
            fast = {k: fast[k] - lr * (g[k].detach() if first_order else g[k]) for k in fast}
        return fast

    return vmap(one_task)(*tasks)


def meta_losses(
    params: Params,
    support_loss: TaskLoss,
    support: Sequence[Tensor],
    query_loss: TaskLoss,
    query: Sequence[Tensor],
    steps: int,
    lr: float,
    first_order: bool = False,
) -> Tensor:
    """Per-task query losses ``(B,)`` after adapting on each task's support (the MAML outer objective)."""
    fast = adapt(params, support_loss, support, steps, lr, first_order)
    return vmap(query_loss)(fast, *query)


Scorer = Callable[[Tensor, Tensor, Tensor], Tensor]  # (user (dim,), items (n, dim), bias (n,)) -> scores (n,)
ScoredLoss = Callable[..., Tensor]  # (scorer, *one task's tensors) -> scalar loss


def torch_func_meta_losses(
    model: MeLU,
    support_loss: ScoredLoss,
    support: Sequence[Tensor],
    query_loss: ScoredLoss,
    query: Sequence[Tensor],
    steps: int,
    lr: float,
    first_order: bool = False,
) -> Tensor:
    """Per-task MAML query losses ``(B,)`` of ``model``'s decision layers, batched with ``torch.func``."""

    def task_loss(loss: ScoredLoss) -> TaskLoss:
        return lambda params, *task: loss(partial(model.decide, params), *task)

    return meta_losses(
        model.decision_params(),
        task_loss(support_loss),
        support,
        task_loss(query_loss),
        query,
        steps,
        lr,
        first_order,
    )


def learn2learn_meta_losses(
    model: MeLU,
    support_loss: ScoredLoss,
    support: Sequence[Tensor],
    query_loss: ScoredLoss,
    query: Sequence[Tensor],
    steps: int,
    lr: float,
    first_order: bool = False,
) -> Tensor:
    """The same losses as ``torch_func_meta_losses`` through ``learn2learn.algorithms.MAML``, one user at a
    time (learn2learn's way): for cross-checking the batched loop, not for speed."""
    try:
        import learn2learn
    except ImportError as exc:  # learn2learn lives only in the `tox -e l2l` environment
        raise ImportError(
            "backend=learn2learn needs learn2learn 0.2.0: run it inside `tox -e l2l` "
            "(scripts/build_learn2learn.sh builds it)"
        ) from exc
    maml = learn2learn.algorithms.MAML(model.decision, lr=lr, first_order=first_order)
    losses = []
    for i in range(support[0].shape[0]):
        learner = maml.clone()

        def score(user: Tensor, item_vec: Tensor, item_bias: Tensor, learner=learner) -> Tensor:
            return learner(user, item_vec) + item_bias

        for _ in range(steps):
            learner.adapt(support_loss(score, *(t[i] for t in support)))
        losses.append(query_loss(score, *(t[i] for t in query)))
    return torch.stack(losses)

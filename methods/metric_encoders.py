"""Building blocks shared by the metric-learning methods (``protonet``, ``siamese``).

Both methods compare items by distances in one embedding space. Items of every domain of a task live in the
same table, so a cold user's source-domain items can stand in for the target-domain items it has not rated
yet. A user is described by a weighted item set: its target-domain support (weight 1) and its source-domain
history (weight ``source_weight``). Training runs in epochs over ``TrainView.episodes`` and keeps the epoch
that scores best on the validation cold users with their support withheld (``benchmark.api.select_epochs``
with ``view.validate_pretrain``): the methods' ``pretrain``, run once per task group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.api import ColdBatch, ColdItemBatch, Episode, Interactions, Selection, TrainView, select_epochs


def rating_levels(rating_range: tuple[float, float] | None) -> np.ndarray:
    """The task's rating levels: each integer from its lowest to its highest rating, ``view.rating_range``."""
    if rating_range is None:
        raise ValueError("rating levels need the rating range of explicit ratings")
    return np.arange(math.floor(rating_range[0]), math.ceil(rating_range[1]) + 1, dtype=np.float32)


def tensor(array: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A fresh tensor on ``device`` (arrays from the harness may be read-only)."""
    return torch.as_tensor(np.array(array), dtype=dtype, device=device)


class ItemEncoder(nn.Module):
    """One embedding table over the items of all domains; unit-length rows when ``normalize`` is set."""

    def __init__(self, n_items: int, dim: int, generator: torch.Generator, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize
        self.table = nn.Embedding(n_items, dim)
        with torch.no_grad():
            self.table.weight.copy_(torch.randn(n_items, dim, generator=generator) * 0.1)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        rows = self.table(items)
        return nn.functional.normalize(rows, dim=-1) if self.normalize else rows


@dataclass(frozen=True)
class ItemSet:
    """Per-user padded items ``(B, L)`` with ratings (0 for implicit data) and weights (0 on padding)."""

    items: torch.Tensor
    ratings: torch.Tensor
    weights: torch.Tensor

    def levels(self, lowest: float, n_levels: int) -> torch.Tensor:
        """Rating level index ``0 .. n_levels-1`` of each entry, level 0 being the rating ``lowest`` (rounded
        half up: an averaged 3.5 is the level of 4)."""
        return (torch.floor(self.ratings + 0.5).clamp(lowest, lowest + n_levels - 1) - lowest).long()


def user_item_sets(
    support: Interactions,
    history: Interactions,
    n_users: int,
    source_weight: torch.Tensor | float,
    max_history: int,
    device: torch.device,
    support_keep: np.ndarray | None = None,
) -> ItemSet:
    """Support rows (weight 1, masked by ``support_keep``) next to the last ``max_history`` source items."""
    s_items, s_ratings, s_mask = support.padded(n_users)
    if support_keep is not None:
        s_mask = s_mask & support_keep
    width = min(max_history, int(history.counts(n_users).max(initial=0)))
    h_items, h_ratings, h_mask = history.padded(n_users, width)
    s_weight = tensor(s_mask, device, torch.float32)
    h_weight = tensor(h_mask, device, torch.float32) * source_weight
    return ItemSet(
        tensor(np.concatenate([s_items, h_items], axis=1), device),
        tensor(np.concatenate([s_ratings, h_ratings], axis=1), device),
        torch.cat([s_weight, h_weight], dim=1),
    )


def random_support_keep(n_users: int, support_size: int, rng: np.random.Generator) -> np.ndarray:
    """Keep the first k of each user's support rows, k uniform in 0..support_size: trains every K at once."""
    k = rng.integers(0, support_size + 1, size=n_users)
    return np.arange(support_size)[None, :] < k[:, None]


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a_i - b_j||^2`` for rows of ``a`` (N, D) and ``b`` (M, D), without an (N, M, D) intermediate."""
    return (a * a).sum(-1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(-1)[None, :]


def query_positions(batch: ColdBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (user position, item) pairs of a family R batch; ``query_user`` holds positions in the batch."""
    if batch.query_user is None or batch.query_item is None:
        raise ValueError("ColdBatch: a rating prediction needs query_user and query_item")
    return tensor(batch.query_user, device, torch.int64), tensor(batch.query_item, device, torch.int64)


def episode_epoch(
    view: TrainView, config: dict[str, Any], rng: np.random.Generator, step: Callable[[Episode], None]
) -> int:
    """Passes over the eligible warm users until ``min_steps`` episodes; returns the steps (0: budget spent).

    Small tasks (few warm users, e.g. family R at beta = 80%) thus still take ``min_steps`` steps per epoch.
    """
    steps, fresh = 0, True
    while fresh and steps < int(config["min_steps"]):
        fresh = False
        for episode in view.episodes(
            int(config["users_per_episode"]), int(config["support_size"]), int(config["query_size"]), rng
        ):
            step(episode)
            steps, fresh = steps + 1, True
    return steps


def fit_by_validation(
    view: TrainView,
    model: nn.Module,
    config: dict[str, Any],
    rng: np.random.Generator,
    step: Callable[[Episode], None],
    predict: Callable[[ColdBatch], np.ndarray],
    validator: Callable[[Callable[[ColdBatch], np.ndarray]], float] | None = None,
) -> Selection:
    """Epochs of ``episode_epoch`` selected by ``select_epochs`` (config: ``epochs``, ``validate_every``,
    ``patience``), scored by ``validator`` (default ``view.validate``); the best parameters are restored
    into ``model``."""

    def run_epoch() -> bool:
        return episode_epoch(view, config, rng, step) > 0

    every, patience = int(config["validate_every"]), int(config["patience"])
    epochs = int(config["epochs"])
    return select_epochs(view, run_epoch, [model], epochs, predict, patience, every, validator=validator)


# -- cold items (families IR, IL) ---------------------------------------------------------------------------
# A cold item has no training row of its own: what is known of it is who rated or bought it (its support
# users). So both methods turn around: a user is encoded from its training rows (the same weighted item set as
# above, through the same item table), a cold item's prototype pools the encodings of its support users, and
# a query user is compared with that prototype. Meta-training draws episodes of warm target items.


@dataclass(frozen=True)
class Profiles:
    """Every user's training rows, padded ``(n_users, L)`` as ``Interactions.padded`` gives them: the last
    ``max_history`` target rows and the last ``max_history`` source rows (``user`` = global index)."""

    target: tuple[np.ndarray, np.ndarray, np.ndarray]
    source: tuple[np.ndarray, np.ndarray, np.ndarray]


def _padded(rows: Interactions, n_users: int, max_history: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rows.padded(n_users, min(max_history, int(rows.counts(n_users).max(initial=0))))


def user_profiles(view: TrainView, max_history: int) -> Profiles:
    """The profiles of all users, read through the view (each domain charged once, as ``history`` does)."""
    n = view.n_users
    target = view.history(view.target_domain)
    source = view.batch_history(np.arange(n))
    return Profiles(_padded(target, n, max_history), _padded(source, n, max_history))


def profile_sets(
    profiles: Profiles,
    users: np.ndarray,
    source_weight: torch.Tensor | float,
    device: torch.device,
    history: Interactions | None = None,
    exclude: torch.Tensor | None = None,
) -> ItemSet:
    """``users``' item sets: target training rows (weight 1) next to source rows (weight ``source_weight``).

    The source rows are the view's, or ``history`` (``user`` = position in ``users``): a ``ColdItemBatch``
    serves its support users' source rows itself. Items in ``exclude`` (an episode's warm items, standing in
    for cold items that no profile can hold) get weight 0."""
    t_items, t_ratings, t_mask = (a[users] for a in profiles.target)
    if history is None:
        h_items, h_ratings, h_mask = (a[users] for a in profiles.source)
    else:
        h_items, h_ratings, h_mask = _padded(history, len(users), profiles.source[0].shape[1])
    items = tensor(np.concatenate([t_items, h_items], axis=1), device)
    weights = torch.cat(
        [tensor(t_mask, device, torch.float32), tensor(h_mask, device, torch.float32) * source_weight], dim=1
    )
    if exclude is not None:
        weights = weights * (~torch.isin(items, exclude)).float()
    return ItemSet(items, tensor(np.concatenate([t_ratings, h_ratings], axis=1), device), weights)


@dataclass(frozen=True)
class ItemEpisode:
    """Warm target items posing as cold ones. ``items``: global indices. Query rows: ``query_user`` (global),
    ``query_item`` (position in ``items``), ``query_rating``. Support: up to S users per item, padded
    ``(len(items), S)`` with ``support_mask``; never a query user of the same item."""

    items: np.ndarray
    query_user: np.ndarray
    query_item: np.ndarray
    query_rating: np.ndarray
    support_user: np.ndarray
    support_rating: np.ndarray
    support_mask: np.ndarray

    def users(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The episode's distinct users, and each query row's and support slot's position among them."""
        both = np.concatenate([self.query_user, self.support_user.ravel()])
        distinct, where = np.unique(both, return_inverse=True)
        n = len(self.query_user)
        return distinct, where[:n], where[n:].reshape(self.support_user.shape)


class ItemRaters:
    """The target training rows grouped by item: the pool an episode draws a warm item's support from."""

    def __init__(self, target: Interactions, n_items: int) -> None:
        order = np.lexsort((target.user, target.item))
        self.user, self.rating = target.user[order], target.rating[order]
        self.counts = np.bincount(target.item, minlength=n_items)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])

    def episode(
        self, rows: Interactions, support_size: int, min_support: int, rng: np.random.Generator
    ) -> ItemEpisode | None:
        """The items of ``rows`` (the query), each with k in ``min_support..support_size`` support users drawn
        from its other raters (so every K is trained). Items left with fewer than ``min_support`` (0 or 1)
        support users are dropped with their query rows; None when nothing is left."""
        items, where = np.unique(rows.item, return_inverse=True)
        n, s = len(items), support_size
        count = self.counts[items]
        k = rng.integers(min_support, s + 1, size=n)
        offset = (rng.random((n, s)) * count[:, None]).astype(np.int64)
        mask = np.arange(s)[None, :] < k[:, None]
        earlier = np.tril(np.ones((s, s), dtype=bool), -1)
        mask &= ~((offset[:, :, None] == offset[:, None, :]) & earlier).any(
            2
        )  # a rater drawn twice counts once
        slot = self.starts[items][:, None] + offset
        user = self.user[slot]
        n_users = int(max(user.max(initial=0), rows.user.max(initial=0))) + 1
        mask &= ~np.isin(np.arange(n)[:, None] * n_users + user, where * n_users + rows.user)
        has = mask.any(1) if min_support > 0 else np.ones(n, dtype=bool)
        keep = has[where]
        if not keep.any():
            return None
        position = np.cumsum(has) - 1
        return ItemEpisode(
            items[has],
            rows.user[keep],
            position[where[keep]],
            np.nan_to_num(rows.rating[keep]).astype(np.float32),
            user[has],
            np.nan_to_num(self.rating[slot[has]]).astype(np.float32),
            mask[has],
        )


def item_epoch(
    view: TrainView,
    config: dict[str, Any],
    rng: np.random.Generator,
    raters: ItemRaters,
    min_support: int,
    step: Callable[[ItemEpisode], None],
) -> bool:
    """One pass over the target training rows in batches (``view.batches``, charged), each batch the query
    of one item episode; False when the budget (or the wall clock) gave nothing."""
    steps = 0
    for rows in view.batches(int(config["batch_size"]), rng, domain=view.target_domain):
        episode = raters.episode(rows, int(config["support_size"]), min_support, rng)
        if episode is not None:
            step(episode)
        steps += 1
    return steps > 0


def support_positions(batch: ColdItemBatch) -> tuple[np.ndarray, np.ndarray]:
    """Each support row's user as a position in ``batch.support_users`` and its item as one in ``items``."""
    return np.searchsorted(batch.support_users, batch.support.user), batch.support_of()

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

from benchmark.api import ColdBatch, Episode, Interactions, Selection, TrainView, select_epochs


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

"""One way for a method to seed, to read its configuration and to select its training epochs.

Re-exported by ``benchmark.api``, the one module a method imports.

* Seeding: a run has one NumPy generator and one torch generator (``Method.rng``, ``Method.torch_generator``),
  both seeded from the run's seed once (``run_generators``); training draws from them in order, parameter
  initialization included (``init_linear``, ``nn.init.*_(..., generator=...)``). Nothing reads or seeds
  torch's or NumPy's global generators, so a run's output depends on its seed alone, not on what ran before
  in the process. Prediction must not depend on how many batches were predicted before (validation predicts
  many times), so a cold batch's draws come from a generator of its own, ``batch_seed`` (the one rule for a
  per-batch or per-episode seed: the run's seed, a purpose, then integers that name the batch).
* Configuration: defaults live only in the method's TOML; ``MethodConfig`` reads a missing key as a
  ``KeyError`` that names that TOML, instead of a default repeated in code.
* Selection: ``select_epochs`` trains epoch by epoch, scores the model with ``view.validate`` (the family's
  ranked metric on validation cold users, higher is better), keeps the best state and stops after
  ``patience`` validations without improvement or when the budget or the wall clock gives no more rows.
  In a method's ``pretrain`` it scores with ``view.validate_pretrain`` instead (``validator``).
* Two-stage fit: ``generator_state`` / ``set_generator_state`` save and restore the run's generators, so
  that a run whose pretraining came from the cache continues with the same draws as one that pretrained.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from benchmark.api import ColdBatch, ColdItemBatch, TrainView

__all__ = [
    "MethodConfig",
    "Selection",
    "batch_seed",
    "generator_state",
    "init_linear",
    "rating_range_of",
    "run_generators",
    "select_epochs",
    "set_generator_state",
]

# purposes in a derived seed, so that the streams of one run never coincide
PREDICT = 1


def run_generators(seed: int) -> tuple[np.random.Generator, torch.Generator]:
    """The run's NumPy and torch (CPU) generators, both seeded from ``seed``.

    The torch generator lives on the CPU: draw there and move the result, so that a run gives the same
    numbers on every device.
    """
    return np.random.default_rng(seed), torch.Generator().manual_seed(seed)


def generator_state(generators: tuple[np.random.Generator, torch.Generator]) -> dict[str, Any]:
    """The generators' states as plain values and a tensor (what ``torch.save`` stores safely)."""
    return {"numpy": generators[0].bit_generator.state, "torch": generators[1].get_state()}


def set_generator_state(generators: tuple[np.random.Generator, torch.Generator], state: dict) -> None:
    """Restore what ``generator_state`` saved, in place: later draws are those the saved run made."""
    generators[0].bit_generator.state = state["numpy"]
    generators[1].set_state(state["torch"])


def batch_seed(seed: int, purpose: int, *keys: int) -> list[int]:
    """The seed of one batch's own generator: ``[seed, purpose, *keys]`` (``np.random.default_rng`` takes it).

    ``keys`` name the batch independently of the order batches arrive in (e.g. its size and first users).
    """
    return [int(seed), int(purpose), *(int(k) for k in keys)]


ITEM_BATCH_MARK = 2**32 - 1  # separates a cold-item batch's users from its items (seed keys are >= 0)


def cold_batch_keys(batch: ColdBatch | ColdItemBatch) -> list[int]:
    """What names a cold batch: its size and its first four users (a batch of cold items: its first four
    items and query users too)."""
    keys = [len(batch), *np.asarray(batch.users[:4]).tolist()]
    if hasattr(batch, "items"):
        keys += [ITEM_BATCH_MARK, *np.asarray(batch.items[:4]).tolist()]
    return keys


def rating_range_of(ratings: np.ndarray) -> tuple[float, float] | None:
    """A rating scale, ``(lowest, highest)`` of the finite ``ratings``; None when there is none."""
    ratings = ratings[np.isfinite(ratings)]
    return (float(ratings.min()), float(ratings.max())) if len(ratings) else None


def init_linear(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every ``nn.Linear`` inside ``module`` from ``generator`` with PyTorch's default distributions.

    A module's constructor draws from torch's global generator; re-drawing here makes the initial values a
    function of the run's seed alone.
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return module


class MethodConfig(dict[str, Any]):
    """A method's configuration; a missing key raises a ``KeyError`` naming the TOML that should hold it."""

    def __init__(self, values: Mapping[str, Any], owner: type | None = None) -> None:
        super().__init__(values)
        self.owner = owner

    def __missing__(self, key: str) -> Any:
        where = "the method's TOML"
        if self.owner is not None:
            try:
                where = str(Path(inspect.getfile(self.owner)).with_suffix(".toml"))
            except (TypeError, OSError):
                where = f"the TOML of {self.owner.__name__}"
        raise KeyError(f"config key {key!r} missing: defaults live in {where}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (MethodConfig, (dict(self), self.owner))


@dataclass
class Selection:
    """What epoch selection saw: validation score per validated epoch, the kept epoch, epochs trained.

    ``best_epoch`` 0 is the untrained state; without validation the last trained epoch is kept.
    """

    scores: dict[int, float] = field(default_factory=dict)
    best_epoch: int = 0
    best_score: float = -np.inf
    trained: int = 0

    @property
    def validated(self) -> float | None:
        """The kept state's validation score, None when nothing was validated."""
        return float(self.best_score) if np.isfinite(self.best_score) else None


class _Keeper:
    """Scores states, keeps the best one's parameters, and counts validations since the last improvement."""

    def __init__(self, score: Callable[[], float], modules: Sequence[nn.Module], sel: Selection) -> None:
        self.score, self.modules, self.sel = score, modules, sel
        self.state: list[dict[str, torch.Tensor]] | None = None
        self.misses = 0

    def check(self, epoch: int) -> None:
        value = float(self.score())
        self.sel.scores[epoch] = value
        if value > self.sel.best_score:
            self.sel.best_epoch, self.sel.best_score, self.misses = epoch, value, 0
            self.state = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules]
        else:
            self.misses += 1

    def restore(self) -> None:
        if self.state is not None:
            for module, state in zip(self.modules, self.state, strict=True):
                module.load_state_dict(state)


def select_epochs(
    view: TrainView,
    run_epoch: Callable[[], bool],
    modules: Sequence[nn.Module],
    epochs: int,
    predict: Callable[[ColdBatch], np.ndarray] | None,
    patience: int,
    validate_every: int = 1,
    validate_start: bool = False,
    validator: Callable[[Callable[[ColdBatch], np.ndarray]], float] | None = None,
) -> Selection:
    """Train up to ``epochs`` epochs, keeping the modules' state that ``view.validate(predict)`` scores best.

    ``run_epoch`` trains one epoch and returns False when the budget (or the wall clock) gave it nothing;
    training then stops, after validating any epoch not validated yet. Validation runs every
    ``validate_every`` epochs and after the last; ``patience`` validations without improvement stop
    training. ``validate_start`` also scores the untrained state (epoch 0), so that selection may decide
    that training does not help. Without ``predict`` every epoch is kept (the last one is selected).
    The best state is restored into ``modules`` before returning. ``validator`` replaces ``view.validate``:
    a method's ``pretrain`` passes ``view.validate_pretrain``, the signal that does not depend on K.
    """
    sel = Selection()
    score = validator or view.validate
    keeper = _Keeper(lambda: score(predict), modules, sel) if predict is not None else None
    if keeper is not None and validate_start:
        keeper.check(0)
    for epoch in range(1, epochs + 1):
        if not run_epoch():
            if keeper is not None and sel.trained > max(sel.scores, default=0):
                keeper.check(sel.trained)
            break
        sel.trained = epoch
        if keeper is None:
            sel.best_epoch = epoch
        elif epoch % validate_every == 0 or epoch == epochs:
            keeper.check(epoch)
            if keeper.misses >= patience:
                break
    if keeper is not None:
        keeper.restore()
    return sel

"""One way to seed and to select (benchmark.fitting): epoch selection, the run's generators, strict config,
the task's rating range, and learned methods whose output depends on their seed alone."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from benchmark import harness
from benchmark.api import Method, MethodConfig, batch_seed, init_linear, select_epochs
from benchmark.registry import load_method
from tests.tiny_tasks import tiny_task

LEARNED = ["mf-target", "cmf", "finetune", "emcdr", "ptupcdr", "maml", "protonet", "siamese"]


@functools.cache
def task(family: str) -> harness.EncodedTask:
    return tiny_task(family)


class Scripted:
    """A view whose ``validate`` returns scripted scores; records the epochs trained."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = iter(scores)
        self.calls = 0

    def validate(self, predict) -> float:
        self.calls += 1
        return next(self.scores)


def trainer(layer: torch.nn.Linear, budget_epochs: int = 100):
    """``run_epoch`` that writes the epoch number into ``layer`` and gives out after ``budget_epochs``."""
    trained: list[int] = []

    def run_epoch() -> bool:
        if len(trained) == budget_epochs:
            return False
        trained.append(len(trained) + 1)
        with torch.no_grad():
            layer.weight.fill_(float(len(trained)))
        return True

    return run_epoch, trained


def test_selection_restores_the_best_state_and_stops_after_patience() -> None:
    layer = torch.nn.Linear(1, 1, bias=False)
    view = Scripted([0.1, 0.5, 0.3, 0.2, 0.4, 0.9])
    run_epoch, trained = trainer(layer)
    sel = select_epochs(view, run_epoch, [layer], 10, lambda b: b, patience=3)
    assert (sel.best_epoch, sel.best_score, sel.trained) == (2, 0.5, 5) and trained == [1, 2, 3, 4, 5]
    assert sel.scores == {1: 0.1, 2: 0.5, 3: 0.3, 4: 0.2, 5: 0.4}
    assert layer.weight.item() == 2.0 and sel.validated == 0.5


def test_selection_validates_every_n_epochs_the_last_one_and_a_pending_one_at_the_budget() -> None:
    layer = torch.nn.Linear(1, 1, bias=False)
    view = Scripted([0.1, 0.2, 0.3])
    sel = select_epochs(view, trainer(layer)[0], [layer], 5, lambda b: b, patience=3, validate_every=2)
    assert sel.scores == {2: 0.1, 4: 0.2, 5: 0.3} and layer.weight.item() == 5.0
    view = Scripted([0.4, 0.1])
    run_epoch, trained = trainer(layer, budget_epochs=3)
    sel = select_epochs(view, run_epoch, [layer], 10, lambda b: b, patience=3, validate_every=2)
    assert trained == [1, 2, 3] and sel.scores == {2: 0.4, 3: 0.1} and sel.best_epoch == 2
    assert layer.weight.item() == 2.0


def test_selection_without_validation_keeps_the_last_epoch_and_may_keep_the_untrained_state() -> None:
    layer = torch.nn.Linear(1, 1, bias=False)
    view = Scripted([])
    sel = select_epochs(view, trainer(layer, budget_epochs=4)[0], [layer], 10, None, patience=1)
    assert (sel.best_epoch, sel.trained, view.calls, sel.validated) == (4, 4, 0, None)
    with torch.no_grad():
        layer.weight.fill_(-1.0)
    view = Scripted([0.9, 0.1, 0.2])
    sel = select_epochs(view, trainer(layer)[0], [layer], 10, lambda b: b, patience=2, validate_start=True)
    assert sel.best_epoch == 0 and layer.weight.item() == -1.0


def test_the_run_generators_come_from_the_seed_and_batches_get_their_own() -> None:
    a, b = Method({}, seed=7), Method({}, seed=7)
    assert a.rng is a.rng and a.torch_generator is a.torch_generator  # one per run
    assert a.rng.random() == b.rng.random()
    assert torch.equal(torch.rand(3, generator=a.torch_generator), torch.rand(3, generator=b.torch_generator))
    assert batch_seed(7, 1, 3, 10, 11) == [7, 1, 3, 10, 11]
    layers = [init_linear(torch.nn.Linear(4, 2), torch.Generator().manual_seed(0)) for _ in range(2)]
    assert torch.equal(layers[0].weight, layers[1].weight) and torch.equal(layers[0].bias, layers[1].bias)


def test_a_missing_config_key_names_the_methods_toml() -> None:
    cls = load_method("mf-target")
    config = cls.default_config("R")
    del config["patience"]
    method = cls(config, seed=0)
    assert isinstance(method.config, MethodConfig)
    with pytest.raises(KeyError, match=r"'patience'.*mf_target\.toml"):
        method.config["patience"]


def test_the_view_carries_the_tasks_rating_range() -> None:
    for family in ("R", "L"):
        enc = task(family)
        view = harness.make_view(enc, harness.budget_of(enc.spec, 10**9), deadline=float("inf"))
        train = enc.tables["train"]
        ratings = train.rows.rating[train.domain == enc.domains.index(enc.spec.target)]
        expected = (float(ratings.min()), float(ratings.max())) if family == "R" else None
        assert view.rating_range == expected


def fit_predict(name: str, family: str, global_seed: int) -> list[np.ndarray]:
    """Fit and predict with seed 0 after seeding the global generators with ``global_seed``."""
    enc = task(family)
    torch.manual_seed(global_seed)
    np.random.seed(global_seed)
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    view = harness.make_view(enc, budget, deadline=float("inf"))
    cls = load_method(name)
    method = cls(cls.default_config(family), 0, "cpu")
    numpy_state = np.random.get_state()[1].copy()
    method.fit(view, budget)
    assert np.array_equal(np.random.get_state()[1], numpy_state), f"{name} used NumPy's global generator"
    outputs: list[np.ndarray] = []

    def predict(batch):
        outputs.append(np.array(method.predict(batch), copy=True))
        return outputs[-1]

    numpy_state = np.random.get_state()[1].copy()
    harness.evaluate(enc, view, predict, "support", "query", budget.adapt_steps)
    assert torch.initial_seed() == global_seed, f"{name} seeded torch's global generator"
    assert np.array_equal(np.random.get_state()[1], numpy_state), f"{name} used NumPy's global generator"
    return outputs


@pytest.mark.parametrize("name", LEARNED)
def test_outputs_do_not_depend_on_the_global_generators(name: str) -> None:
    family = "R" if "R" in load_method(name).families else "L"
    first, second = fit_predict(name, family, 1), fit_predict(name, family, 2)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)

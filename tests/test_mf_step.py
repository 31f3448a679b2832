"""``methods.mf.mf_step``: the hand-written MF gradient equals autograd's on ``row_losses``.

Cases with repeated users and items in a batch, ratings and BPR (one and several negatives), with and without
biases, with per-row weights (CMF's relation weights); then whole training runs of both paths side by side.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.api import Interactions
from methods.mf import MF, LeanAdam, NegativeSampler, adam, mf_step, row_losses

N_USERS, ITEM_DOMAIN = 40, np.repeat([0, 1], [30, 20])


class Recorder:
    """Stands in for ``LeanAdam``: keeps the gradients ``mf_step`` hands over, as dense tensors."""

    def __init__(self, model: MF) -> None:
        self.model = model
        self.tables = [model.user.weight, model.item.weight]
        self.grads: dict[str, torch.Tensor] = {}

    def group_of(self, table: torch.Tensor) -> int:
        return next(i for i, t in enumerate(self.tables) if t is table)

    def step_group(self, i: int, rows: torch.Tensor, values: torch.Tensor) -> None:
        assert torch.equal(rows, torch.unique(rows))  # distinct and sorted, as a coalesced gradient's
        name = ("user", "item")[i]
        dim = self.model.dim
        table = torch.zeros(self.tables[i].shape[0], values.shape[1])
        table[rows] = values
        self.grads[name] = table[:, :dim]
        if values.shape[1] > dim:
            self.grads[f"{name}_bias"] = table[:, dim:]

    def step_dense(self) -> None:
        self.grads["mu"] = self.model.mu.grad.clone()


def _model(bias: bool, seed: int) -> MF:
    model = MF(
        N_USERS, ITEM_DOMAIN, 6, init_std=0.5, bias=bias, generator=torch.Generator().manual_seed(seed)
    )
    if bias:  # biases away from zero, so that their terms count
        with torch.no_grad():
            for table in (model.user_bias.weight, model.item_bias.weight, model.mu):
                table.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return model


def _rows(rng: np.random.Generator, n: int) -> Interactions:
    users = np.sort(rng.integers(0, 8, n))  # few users and items: many repeats in one batch
    items = rng.integers(0, 12, n)
    return Interactions(users, items, rng.integers(1, 6, n).astype(np.float64), np.zeros(n))


def _autograd(model, rows, explicit, sampler, rng, l2, weight):
    for p in model.parameters():
        p.grad = None
    per_row = row_losses(model, rows, explicit, sampler, rng, l2)
    (per_row if weight is None else per_row * weight).mean().backward()
    out = {"user": model.user.weight.grad.to_dense(), "item": model.item.weight.grad.to_dense()}
    if model.bias:
        out |= {
            "user_bias": model.user_bias.weight.grad.to_dense(),
            "item_bias": model.item_bias.weight.grad.to_dense(),
            "mu": model.mu.grad.clone(),
        }
    return out


class _Sampler(NegativeSampler):
    def __init__(self, n: int) -> None:
        super().__init__(ITEM_DOMAIN)
        self.n = n

    def sample(self, items, rng, n=1):
        return super().sample(items, rng, self.n)


@pytest.mark.parametrize(("explicit", "negatives"), [(True, 0), (False, 1), (False, 3)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_is_autograds(explicit: bool, negatives: int, bias: bool, weighted: bool) -> None:
    sampler = _Sampler(negatives)
    for seed in range(3):
        model = _model(bias, seed)
        rows = _rows(np.random.default_rng(seed), 50)
        weight = torch.rand(50, generator=torch.Generator().manual_seed(seed)) + 0.5 if weighted else None
        expected = _autograd(model, rows, explicit, sampler, np.random.default_rng(7), 0.03, weight)
        for p in model.parameters():
            p.grad = None
        recorder = Recorder(model)
        mf_step(model, recorder, rows, explicit, sampler, np.random.default_rng(7), 0.03, weight)  # type: ignore[arg-type]
        assert sorted(recorder.grads) == sorted(expected)
        for name, grad in expected.items():
            if explicit or name not in ("user_bias", "mu"):  # BPR: a user's and a domain's terms cancel
                assert grad.abs().max() > 0, name  # the case exercises the parameter
            torch.testing.assert_close(recorder.grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_a_wrong_gradient_is_caught() -> None:
    """The comparison above is sharp enough to see the L2 term's factor off by 1%."""
    model, sampler = _model(True, 0), _Sampler(1)
    rows = _rows(np.random.default_rng(0), 50)
    expected = _autograd(model, rows, True, sampler, np.random.default_rng(7), 0.0303, None)
    recorder = Recorder(model)
    mf_step(model, recorder, rows, True, sampler, np.random.default_rng(7), 0.03, None)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        torch.testing.assert_close(recorder.grads["user"], expected["user"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("explicit", [True, False])
def test_training_follows_autograd(explicit: bool) -> None:
    """200 Adam steps by ``mf_step`` and by autograd + ``LeanAdam.step`` end at the same parameters, to
    rounding: the two differ only in the order of float sums."""
    states = []
    for fused in (True, False):
        model, sampler = _model(True, 0), NegativeSampler(ITEM_DOMAIN)
        (opt,) = adam([model], 0.01)
        assert isinstance(opt, LeanAdam)
        data, neg_rng = np.random.default_rng(1), np.random.default_rng(2)
        for _ in range(200):
            rows = _rows(data, int(data.integers(1, 60)))
            if fused:
                mf_step(model, opt, rows, explicit, sampler, neg_rng, 0.01)
            else:
                opt.zero_grad()
                row_losses(model, rows, explicit, sampler, neg_rng, 0.01).mean().backward()
                opt.step()
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    moved = (states[0]["user.weight"] - _model(True, 0).user.weight).abs().max()
    assert moved > 0.1  # training did move the parameters
    for name, value in states[1].items():
        torch.testing.assert_close(states[0][name], value, rtol=1e-3, atol=1e-4, msg=name)

"""The batched torch.func meta-gradient equals learn2learn's MAML on identical inputs (float64, 1e-10).

Runs in ``tox -e l2l`` (its own env with learn2learn 0.2.0 built by scripts/build_learn2learn.sh); skipped
with a reason elsewhere.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip(
    "learn2learn", reason="learn2learn is not importable here; run `tox -e l2l` (builds learn2learn 0.2.0)"
)

from methods.maml import _rating_loss, _softmax_loss
from methods.meta_model import MeLU, learn2learn_meta_losses, torch_func_meta_losses

N_ITEMS, USERS, HIST, SUPPORT, QUERY, NEG = 60, 6, 7, 5, 4, 9


def make_inputs(rating: bool):
    gen = torch.Generator().manual_seed(3)
    hist = (
        torch.randint(0, N_ITEMS, (USERS, HIST), generator=gen),
        torch.randint(1, 6, (USERS, HIST), generator=gen).double(),
        torch.rand(USERS, HIST, generator=gen) > 0.3,
    )
    sup = torch.randint(0, N_ITEMS, (USERS, SUPPORT), generator=gen)
    qry = torch.randint(0, N_ITEMS, (USERS, QUERY), generator=gen)
    sup_y = torch.rand(USERS, SUPPORT, generator=gen, dtype=torch.float64) * 4 - 2
    qry_y = torch.rand(USERS, QUERY, generator=gen, dtype=torch.float64) * 4 - 2
    sup_m = torch.rand(USERS, SUPPORT, generator=gen) > 0.2
    qry_m = torch.rand(USERS, QUERY, generator=gen) > 0.2
    neg = torch.randint(0, N_ITEMS, (NEG,), generator=gen)
    torch.manual_seed(5)
    model = MeLU(N_ITEMS, dim=6, hidden=(8, 5), rating_weighted=rating).double()
    with torch.no_grad():
        model.item_bias.weight.normal_(0, 0.5)
    return model, hist, (sup, sup_y, sup_m), (qry, qry_y, qry_m), neg


def meta_gradient(backend, rating: bool, first_order: bool, steps: int = 3, lr: float = 0.3):
    model, hist, (sup, sup_y, sup_m), (qry, qry_y, qry_m), neg = make_inputs(rating)
    user = model.user_repr(*hist)
    sv, sb = model.items(sup)
    qv, qb = model.items(qry)
    if rating:
        loss, support, query = _rating_loss, (user, sv, sb, sup_y, sup_m), (user, qv, qb, qry_y, qry_m)
    else:
        nv, nb = model.items(neg.expand(USERS, -1))
        loss = _softmax_loss
        support, query = (user, sv, sb, nv, nb, sup_m), (user, qv, qb, nv, nb, qry_m)
    losses = backend(model, loss, support, loss, query, steps, lr, first_order)
    losses.mean().backward()
    return losses.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("rating", [True, False], ids=["rating-mse", "sampled-softmax"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_torch_func_meta_gradient_equals_learn2learn(rating: bool, first_order: bool) -> None:
    ours_loss, ours = meta_gradient(torch_func_meta_losses, rating, first_order)
    theirs_loss, theirs = meta_gradient(learn2learn_meta_losses, rating, first_order)
    torch.testing.assert_close(ours_loss, theirs_loss, rtol=0, atol=1e-10)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].abs().max() > 0 or name.startswith("item_bias"), f"{name}: gradient is all zero"
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-10, msg=f"{name} differs")


def test_second_order_terms_are_present() -> None:
    """Guards the test above: if both paths silently dropped second-order terms they would still agree."""
    _, second = meta_gradient(torch_func_meta_losses, True, first_order=False)
    _, first = meta_gradient(torch_func_meta_losses, True, first_order=True)
    diff = max((second[n] - first[n]).abs().max().item() for n in second)
    assert diff > 1e-4

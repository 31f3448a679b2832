"""MAML and its batched inner loop: the torch.func loop equals a per-user autograd loop, and the method fits,
adapts within its budget and predicts deterministically on tiny synthetic views (CPU, seconds)."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytest
import torch

from benchmark.api import AdaptMeter, Budget, BudgetExceeded, ColdBatch, Interactions, TrainView
from methods.maml import MAML, _rating_loss
from methods.meta_model import DecisionLayers, MeLU, adapt, torch_func_meta_losses

# -- the batched inner loop ---------------------------------------------------------------------------


def test_factored_decision_layers_equal_the_mlp_on_concatenated_features() -> None:
    torch.manual_seed(0)
    layers = DecisionLayers(dim=4, hidden=(6, 3)).double()
    user, items = torch.randn(4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    x = torch.cat([user.expand(5, 4), items, user * items], -1)
    plain = layers.rest(layers.first(x)).squeeze(-1)
    torch.testing.assert_close(layers(user, items), plain, rtol=0, atol=1e-12)


def rating_batch(users: int = 5, support: int = 4, query: int = 3):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(2)
    model = MeLU(30, dim=4, hidden=(6,), rating_weighted=True).double()
    hist = (
        torch.randint(0, 30, (users, 6), generator=gen),
        torch.randint(1, 6, (users, 6), generator=gen).double(),
        torch.rand(users, 6, generator=gen) > 0.3,
    )
    sup = torch.randint(0, 30, (users, support), generator=gen)
    qry = torch.randint(0, 30, (users, query), generator=gen)
    y_s = torch.randn(users, support, generator=gen, dtype=torch.float64)
    y_q = torch.randn(users, query, generator=gen, dtype=torch.float64)
    return model, hist, sup, qry, y_s, y_q


def per_user_meta_gradient(first_order: bool, steps: int, lr: float) -> dict[str, torch.Tensor]:
    """MAML written out the textbook way: a Python loop over users, torch.autograd.grad per step."""
    model, hist, sup, qry, y_s, y_q = rating_batch()
    user = model.user_repr(*hist)
    total = 0.0
    for i in range(len(user)):
        params = model.decision_params()
        for _ in range(steps):
            sv, sb = model.items(sup[i])
            loss = ((model.decide(params, user[i], sv, sb) - y_s[i]) ** 2).mean()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
            params = {k: p - lr * g for (k, p), g in zip(params.items(), grads, strict=True)}
        qv, qb = model.items(qry[i])
        total = total + ((model.decide(params, user[i], qv, qb) - y_q[i]) ** 2).mean()
    (total / len(user)).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def batched_meta_gradient(first_order: bool, steps: int, lr: float) -> dict[str, torch.Tensor]:
    model, hist, sup, qry, y_s, y_q = rating_batch()
    user = model.user_repr(*hist)
    sv, sb = model.items(sup)
    qv, qb = model.items(qry)
    ones_s, ones_q = torch.ones_like(y_s, dtype=torch.bool), torch.ones_like(y_q, dtype=torch.bool)
    losses = torch_func_meta_losses(
        model,
        _rating_loss,
        (user, sv, sb, y_s, ones_s),
        _rating_loss,
        (user, qv, qb, y_q, ones_q),
        steps,
        lr,
        first_order,
    )
    losses.mean().backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_batched_meta_gradient_equals_a_per_user_loop(first_order: bool) -> None:
    ours = batched_meta_gradient(first_order, steps=3, lr=0.2)
    loop = per_user_meta_gradient(first_order, steps=3, lr=0.2)
    for name in loop:
        torch.testing.assert_close(ours[name], loop[name], rtol=0, atol=1e-12, msg=name)


def test_second_order_meta_gradient_differs_from_first_order() -> None:
    second, first = batched_meta_gradient(False, 3, 0.2), batched_meta_gradient(True, 3, 0.2)
    assert max((second[n] - first[n]).abs().max().item() for n in second) > 1e-4


def test_adapt_lowers_each_users_support_loss_and_zero_steps_keeps_the_initialization() -> None:
    model, hist, sup, _, y_s, _ = rating_batch()
    with torch.no_grad():
        user = model.user_repr(*hist)
        sv, sb = model.items(sup)
        mask = torch.ones_like(y_s, dtype=torch.bool)

        def task_loss(params, *task):
            return _rating_loss(partial(model.decide, params), *task)

        tasks = (user, sv, sb, y_s, mask)
        start = model.decision_params()
        same = adapt(start, task_loss, tasks, steps=0, lr=0.1)
        fast = adapt(start, task_loss, tasks, steps=5, lr=0.05, first_order=True)
        before = torch.vmap(task_loss)(same, *tasks)
        after = torch.vmap(task_loss)(fast, *tasks)
    for name, value in same.items():
        assert torch.equal(value, start[name].expand_as(value))
    assert bool((after < before).all()), (before, after)


# -- the method on tiny synthetic views -----------------------------------------------------------------

N_USERS, SOURCE_ITEMS, TARGET_ITEMS = 48, 20, 24
COLD = np.arange(36, 48)  # the last 12 users are cold: no target interactions in training


def synthetic_rows(explicit: bool, seed: int = 0) -> tuple[Interactions, np.ndarray]:
    """Users with a latent taste interact with the items closest to it in both domains."""
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(N_USERS, 3))
    items = rng.normal(size=(SOURCE_ITEMS + TARGET_ITEMS, 3))
    affinity = taste @ items.T
    users, chosen, domain = [], [], []
    for d, cols in enumerate([np.arange(SOURCE_ITEMS), SOURCE_ITEMS + np.arange(TARGET_ITEMS)]):
        top = cols[np.argsort(-affinity[:, cols], axis=1)[:, :8]]
        users.append(np.repeat(np.arange(N_USERS), 8))
        chosen.append(top.ravel())
        domain.append(np.full(top.size, d))
    user, item, dom = np.concatenate(users), np.concatenate(chosen), np.concatenate(domain)
    rating = np.clip(np.round(3 + affinity[user, item]), 1, 5) if explicit else np.full(len(user), np.nan)
    ts = rng.integers(0, 10_000, len(user))
    order = np.lexsort((item, ts, user))
    rows = Interactions(user[order], item[order], rating[order], ts[order])
    return rows, dom[order]


def cold_batch(rows: Interactions, dom: np.ndarray, k: int, explicit: bool, adapt_limit: int) -> ColdBatch:
    """The cold users' first k target rows as support; source rows as history; the rest is asked for."""
    pos = np.full(N_USERS, -1)
    pos[COLD] = np.arange(len(COLD))
    cold = pos[rows.user] >= 0
    target = np.flatnonzero(cold & (dom == 1))
    rank = np.arange(len(target)) - np.searchsorted(rows.user[target], rows.user[target])
    sup, qry, src = target[rank < k], target[rank >= k], np.flatnonzero(cold & (dom == 0))

    def sub(r: np.ndarray) -> Interactions:
        return Interactions(pos[rows.user[r]], rows.item[r], rows.rating[r], rows.ts[r])

    batch = ColdBatch(users=COLD, support=sub(sup), history=sub(src), meter=AdaptMeter(adapt_limit))
    if explicit:
        batch.query_user, batch.query_item = pos[rows.user[qry]], rows.item[qry]
    else:
        batch.candidates = SOURCE_ITEMS + np.arange(TARGET_ITEMS)
    return batch


def make_view(explicit: bool, k: int, budget: Budget) -> tuple[TrainView, ColdBatch]:
    rows, dom = synthetic_rows(explicit)
    train = ~((dom == 1) & np.isin(rows.user, COLD))
    batch = cold_batch(rows, dom, k, explicit, budget.adapt_steps)
    truth = rows.rating[(dom == 1) & np.isin(rows.user, COLD)]

    def validator(predict) -> float:  # the cold users double as validation users here
        out = predict(cold_batch(rows, dom, k, explicit, budget.adapt_steps))
        if explicit:
            return -float(np.mean(np.abs(out - truth[-len(out) :])))
        return float(np.mean(out))

    view = TrainView(
        task_id="tiny",
        family="R" if explicit else "L",
        domains=("S", "T"),
        source_domains=("S",),
        target_domain="T",
        explicit=explicit,
        n_users=N_USERS,
        item_domain=np.repeat([0, 1], [SOURCE_ITEMS, TARGET_ITEMS]),
        train=Interactions(rows.user[train], rows.item[train], rows.rating[train], rows.ts[train]),
        train_domain=dom[train],
        budget=budget,
        validator=validator,
        deadline=time.monotonic() + 600,
    )
    return view, batch


TINY = {"epochs": 2, "meta_batch": 8, "dim": 8, "hidden": [8], "negatives": 6, "query_size": 3}
BUDGET = Budget(train_examples=2_000, adapt_steps=20, wall_seconds=600)


def fitted(family: str, k: int, budget: Budget = BUDGET, **overrides) -> tuple[MAML, TrainView, ColdBatch]:
    explicit = family == "R"
    view, batch = make_view(explicit, k, budget)
    method = MAML({**MAML.default_config(family), **TINY, **overrides}, seed=3)
    method.fit(view, budget)
    return method, view, batch


@pytest.mark.parametrize(("family", "k"), [("R", 0), ("R", 3), ("L", 3), ("C", 0)])
def test_fit_predict_shapes_finite_deterministic_and_within_budget(family: str, k: int) -> None:
    method, view, batch = fitted(family, k)
    out = method.predict(batch)
    shape = (len(batch.query_item),) if family == "R" else (len(COLD), TARGET_ITEMS)
    assert out.shape == shape and np.isfinite(out).all()
    if family == "R":
        assert out.min() >= 1 and out.max() <= 5
    assert 0 < view.examples_used <= BUDGET.train_examples
    assert batch.adapt_steps_used == method.inner_steps <= BUDGET.adapt_steps
    again, _, batch2 = fitted(family, k)
    np.testing.assert_array_equal(again.predict(batch2), out)


def test_k0_adapts_on_the_source_history_and_k3_on_the_support() -> None:
    method, _, batch = fitted("L", 3, inner_steps=2)
    method.inner_steps, method.inner_lr = 3, 1.0
    with_support = method.predict(batch)
    no_support = method.predict(
        ColdBatch(
            batch.users,
            Interactions(*(a[:0] for a in vars(batch.support).values())),
            batch.history,
            candidates=batch.candidates,
            meter=AdaptMeter(20),
        )
    )
    assert not np.allclose(with_support, no_support)
    method.inner_steps = 0  # without adaptation, support rows cannot matter
    np.testing.assert_array_equal(
        method.predict(batch),
        method.predict(ColdBatch(batch.users, batch.support, batch.history, candidates=batch.candidates)),
    )


def test_rating_support_is_prepended_with_source_rows_only_when_asked() -> None:
    method, _, _ = fitted("R", 3)
    source = (torch.ones(2, 4, dtype=torch.long), torch.full((2, 4), 5.0), torch.ones(2, 4, dtype=torch.bool))
    target = (
        torch.zeros(2, 3, dtype=torch.long),
        torch.full((2, 3), 1.0),
        torch.ones(2, 3, dtype=torch.bool),
    )
    assert method._support_rows(source, target, 0) is source
    joined = method._support_rows(source, target, 3)
    assert [tuple(t.shape) for t in joined] == [(2, 7)] * 3 and joined[1][0].tolist() == [5.0] * 4 + [1.0] * 3
    method.config = {**method.config, "support_with_source": False}
    assert method._support_rows(source, target, 3) is target


def test_prediction_steps_never_exceed_the_adapt_budget() -> None:
    method, _, batch = fitted("R", 3, budget=Budget(2_000, adapt_steps=1, wall_seconds=600))
    assert method.inner_steps <= 1
    method.predict(batch)
    method.inner_steps = 2
    with pytest.raises(BudgetExceeded):
        method.predict(batch)


def test_training_stops_at_the_example_budget() -> None:
    # maml first reads the source and target histories, charged once: every training row, then 150 to train
    histories = make_view(False, 3, BUDGET)[0].n_train
    budget = Budget(train_examples=histories + 150, adapt_steps=20, wall_seconds=600)
    method, view, _ = fitted("L", 3, budget=budget)
    assert view.examples_used == budget.train_examples
    assert method.selected["epochs"] == 1  # the second epoch found the budget spent


def test_implicit_item_bias_starts_at_the_centred_log_popularity() -> None:
    method, view, _ = fitted("L", 3, epochs=0)  # builds the model, trains nothing
    target = view.items_of("T")
    counts = np.bincount(view.history("T").item, minlength=view.n_items)[target]
    method._init_item_bias(view.history("T").item)
    bias = method.model.item_bias.weight[:, 0].detach().numpy()
    np.testing.assert_allclose(bias[target], np.log1p(counts) - np.log1p(counts).mean(), rtol=0, atol=1e-6)
    assert not bias[view.items_of("S")].any()  # source items keep their zero start


def test_backends_are_checked() -> None:
    with pytest.raises(ValueError, match="backend"):
        MAML({**MAML.default_config("L"), "backend": "jax"}, seed=0)
    try:
        import learn2learn  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="tox -e l2l"):
            fitted("R", 3, backend="learn2learn")
    else:
        method, _, batch = fitted("R", 3, backend="learn2learn", epochs=1)
        assert np.isfinite(method.predict(batch)).all()

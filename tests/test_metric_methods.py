"""ProtoNet and Siamese (methods/protonet.py, methods/siamese.py) and their shared metric_encoders blocks.

The tiny task: users belong to one of four taste clusters; every domain has ten items per cluster and a user
interacts only with items of its cluster. Cold users are known by their source-domain history alone (K=0),
so a method ranks their target items well only if source and target items share one embedding space.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.api import AdaptMeter, Budget, ColdBatch, Interactions, TrainView
from methods.metric_encoders import (
    ItemEncoder,
    ItemSet,
    fit_by_validation,
    random_support_keep,
    squared_distances,
    user_item_sets,
)
from methods.protonet import ProtoNet, PrototypeModel
from methods.siamese import Siamese

N_USERS, CLUSTERS, PER_CLUSTER = 120, 4, 10
VALID_USERS, TEST_USERS = np.arange(100, 110), np.arange(110, 120)
SMALL = {"dim": 16, "users_per_episode": 32, "min_steps": 5, "epochs": 12, "validate_every": 2}


def cluster_of(user: np.ndarray) -> np.ndarray:
    return user % CLUSTERS


def tiny_interactions(explicit: bool, seed: int = 0) -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Rows sorted by user over domains 0 (source) and 1 (target); items 0..39 source, 40..79 target.

    Implicit: each user has 6 source and 8 target items of its cluster. Explicit: 12 + 12 items of any
    cluster, rated 5 in the user's cluster and 1 elsewhere.
    """
    rng = np.random.default_rng(seed)
    n_dom = CLUSTERS * PER_CLUSTER
    users, items = [], []
    for domain, count in ((0, 12), (1, 12)) if explicit else ((0, 6), (1, 8)):
        pool = (
            rng.random((N_USERS, n_dom)).argsort(1)[:, :count]
            if explicit
            else cluster_of(np.arange(N_USERS))[:, None] * PER_CLUSTER
            + rng.random((N_USERS, PER_CLUSTER)).argsort(1)[:, :count]
        )
        users.append(np.repeat(np.arange(N_USERS), count))
        items.append(pool.ravel() + domain * n_dom)
    user, item = np.concatenate(users), np.concatenate(items)
    order = np.lexsort((item, user))
    user, item = user[order], item[order]
    own = (item % n_dom) // PER_CLUSTER == cluster_of(user)
    rating = np.where(own, 5.0, 1.0) if explicit else np.full(len(user), np.nan)
    item_domain = np.repeat([0, 1], n_dom)
    return Interactions(user, item, rating, np.arange(len(user))), item_domain, item_domain[item]


def cold_batch(view: TrainView, rows: Interactions, users: np.ndarray) -> ColdBatch:
    """K=0 batch of ``users``: ratings of their target rows (explicit) or scores of all target items."""
    empty = Interactions(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.float64, np.int64)))
    history = view._batch_history(users)  # as the harness serves cold users: not charged to the budget
    batch = ColdBatch(users, empty, history, meter=AdaptMeter(view.budget.adapt_steps))
    if view.explicit:
        pos = np.full(N_USERS, -1)
        pos[users] = np.arange(len(users))
        keep = (pos[rows.user] >= 0) & (view.item_domain[rows.item] == 1)
        batch.query_user, batch.query_item = pos[rows.user[keep]], rows.item[keep]
    else:
        batch.candidates = view.items_of("T")
    return batch


def precision_at_10(scores: np.ndarray, users: np.ndarray, candidates: np.ndarray) -> float:
    top = candidates[np.argsort(-scores, axis=1, kind="stable")[:, :10]]
    return float(((top - 40) // PER_CLUSTER == cluster_of(users)[:, None]).mean())


def tiny_view(explicit: bool, train_examples: int = 200_000) -> tuple[TrainView, Interactions]:
    rows, item_domain, row_domain = tiny_interactions(explicit)
    cold = np.isin(rows.user, np.concatenate([VALID_USERS, TEST_USERS])) & (row_domain == 1)
    train = Interactions(*(getattr(rows, f)[~cold] for f in ("user", "item", "rating", "ts")))

    def validator(predict) -> float:
        batch = cold_batch(view, rows, VALID_USERS)
        out = predict(batch)
        if explicit:
            truth = rows.rating[np.isin(rows.user, VALID_USERS) & (row_domain == 1)]
            return -float(np.abs(out - truth).mean())
        return precision_at_10(out, VALID_USERS, batch.candidates)

    view = TrainView(
        task_id="tiny",
        family="R" if explicit else "C",
        domains=("S", "T"),
        source_domains=("S",),
        target_domain="T",
        explicit=explicit,
        n_users=N_USERS,
        item_domain=item_domain,
        train=train,
        train_domain=row_domain[~cold],
        budget=Budget(train_examples, 0, 60.0),
        validator=validator,
        deadline=float("inf"),
    )
    return view, rows


def fitted(cls: type, explicit: bool, seed: int = 0, **overrides):
    view, rows = tiny_view(explicit, overrides.pop("train_examples", 200_000))
    family = "R" if explicit else "C"
    method = cls({**cls.default_config(family), **SMALL, **overrides}, seed)
    method.fit(view, view.budget)
    return method, view, rows


# -- building blocks ---------------------------------------------------------------------------------------


def test_user_item_sets_put_support_next_to_the_last_history_rows() -> None:
    support = Interactions(np.array([0, 0, 1]), np.array([7, 8, 9]), np.array([4.0, 2.0, 5.0]), np.zeros(3))
    history = Interactions(np.array([0, 0, 0, 1]), np.array([1, 2, 3, 4]), np.full(4, 3.0), np.arange(4))
    keep = np.array([[True, False], [True, False]])
    sets = user_item_sets(support, history, 2, 0.5, 2, torch.device("cpu"), support_keep=keep)
    assert sets.items.tolist() == [[7, 8, 2, 3], [9, 0, 4, 0]]
    assert sets.weights.tolist() == [[1.0, 0.0, 0.5, 0.5], [1.0, 0.0, 0.5, 0.0]]
    assert sets.ratings.tolist() == [[4.0, 2.0, 3.0, 3.0], [5.0, 0.0, 3.0, 0.0]]


def test_rating_levels_round_half_up() -> None:
    sets = ItemSet(torch.zeros(1, 5), torch.tensor([[1.0, 2.4, 3.5, 4.49, 5.0]]), torch.ones(1, 5))
    assert sets.levels(1.0, 5).tolist() == [[0, 1, 3, 3, 4]]
    assert sets.levels(0.0, 3).tolist() == [[1, 2, 2, 2, 2]]  # a 0..2 scale clips at its top level


def test_random_support_keep_keeps_a_prefix_of_every_length() -> None:
    keep = random_support_keep(2000, 3, np.random.default_rng(0))
    counts = keep.sum(1)
    assert (keep == (np.arange(3)[None, :] < counts[:, None])).all()
    assert set(counts.tolist()) == {0, 1, 2, 3}


def test_squared_distances_match_torch_cdist() -> None:
    a, b = torch.randn(5, 3), torch.randn(7, 3)
    torch.testing.assert_close(squared_distances(a, b), torch.cdist(a, b) ** 2, atol=1e-5, rtol=1e-5)


def test_prototype_is_the_shrunk_weighted_mean_and_absent_levels_fall_back_to_their_prior() -> None:
    embeddings = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [6.0, 6.0]])
    ranking, model = (
        PrototypeModel(4, 2, torch.Generator().manual_seed(0), levels=r) for r in (None, np.arange(1.0, 6.0))
    )
    with torch.no_grad():
        for m in (ranking, model):
            m.encoder.table.weight.copy_(embeddings)
            m.log_prior_weight.fill_(np.log(2.0))
        ranking.prior.copy_(torch.tensor([1.0, 1.0]))
        model.level_prior.copy_(torch.arange(10.0).reshape(5, 2))
    items, ratings = torch.tensor([[1, 2, 3]]), torch.tensor([[5.0, 5.0, 1.0]])
    sets = ItemSet(items, ratings, torch.tensor([[1.0, 0.5, 0.0]]))
    # (2 * [1, 1] + 1 * [2, 0] + 0.5 * [0, 4]) / (2 + 1.5)
    torch.testing.assert_close(ranking.prototypes(sets), torch.tensor([[4.0 / 3.5, 4.0 / 3.5]]))
    protos, log_mass = model.level_prototypes(sets)
    torch.testing.assert_close(protos[0, 4], (2 * torch.tensor([8.0, 9.0]) + torch.tensor([2.0, 2.0])) / 3.5)
    torch.testing.assert_close(protos[0, :4], model.level_prior[:4].detach())  # item 3 has weight 0
    torch.testing.assert_close(log_mass[0], torch.log(torch.tensor([2.0, 2.0, 2.0, 2.0, 3.5])))


def test_expected_rating_follows_the_nearest_level_prototype() -> None:
    model = PrototypeModel(2, 2, torch.Generator().manual_seed(0), levels=np.arange(1.0, 6.0))
    with torch.no_grad():
        model.encoder.table.weight.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
    protos = torch.zeros(2, 5, 2)
    protos[:, 1] = torch.tensor([10.0, 0.0])  # level 2 sits on item 1; all other levels on item 0
    pred = model.expected_rating(torch.tensor([1, 0]), protos, torch.zeros(2, 5))
    torch.testing.assert_close(pred, torch.tensor([2.0, (1 + 3 + 4 + 5) / 4]), atol=1e-4, rtol=0)


def test_fit_by_validation_restores_the_best_epoch_and_stops_after_patience() -> None:
    view, _ = tiny_view(explicit=False)
    model = ItemEncoder(3, 1, torch.Generator().manual_seed(0))
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.9])
    view.validate = lambda predict: next(scores)  # scripted validation scores, one per epoch
    steps: list[int] = []

    def step(episode) -> None:  # one episode per epoch: writes the epoch number into the parameters
        steps.append(len(episode.users))
        with torch.no_grad():
            model.table.weight.fill_(float(len(steps)))

    config = {"users_per_episode": N_USERS, "support_size": 3, "query_size": 2, "min_steps": 1}
    config |= {"epochs": 10, "validate_every": 1, "patience": 2}
    sel = fit_by_validation(view, model, config, np.random.default_rng(0), step, lambda batch: batch)
    assert (sel.best_score, sel.best_epoch, sel.trained) == (0.5, 2, 4)
    assert len(steps) == 4  # 0.1, 0.5 (best), 0.4, 0.3: the second miss ends training
    assert model.table.weight.unique().tolist() == [2.0]  # the parameters written in epoch 2


# -- the methods -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ProtoNet, Siamese])
def test_cold_users_ranked_from_source_history_alone_beat_random(cls: type) -> None:
    method, view, rows = fitted(cls, explicit=False)
    batch = cold_batch(view, rows, TEST_USERS)
    scores = method.predict(batch)
    assert scores.shape == (len(TEST_USERS), 40) and scores.dtype == np.float32
    assert precision_at_10(scores, TEST_USERS, batch.candidates) >= 0.6  # random: 0.25
    assert method.validation_score >= 0.6


@pytest.mark.parametrize("cls", [ProtoNet, Siamese])
def test_support_items_alone_place_a_user_without_source_history(cls: type) -> None:
    method, view, _ = fitted(cls, explicit=False)
    users = TEST_USERS
    support_items = 40 + cluster_of(users)[:, None] * PER_CLUSTER + np.array([[0, 1, 2]])  # K=3
    support = Interactions(
        np.repeat(np.arange(len(users)), 3), support_items.ravel(), np.full(30, np.nan), np.zeros(30)
    )
    empty = Interactions(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.float64, np.int64)))
    batch = ColdBatch(users, support, empty, candidates=view.items_of("T"))
    assert precision_at_10(method.predict(batch), users, batch.candidates) >= 0.6  # random: 0.25


@pytest.mark.parametrize("cls", [ProtoNet, Siamese])
def test_cold_ratings_from_source_ratings_separate_liked_from_disliked_items(cls: type) -> None:
    method, view, rows = fitted(cls, explicit=True)
    batch = cold_batch(view, rows, TEST_USERS)
    pred = method.predict(batch)
    assert pred.shape == batch.query_item.shape and np.isfinite(pred).all()
    liked = (batch.query_item - 40) // PER_CLUSTER == cluster_of(TEST_USERS)[batch.query_user]
    assert pred[liked].mean() - pred[~liked].mean() >= 1.0  # true gap 4; item means alone give ~0


@pytest.mark.parametrize("cls", [ProtoNet, Siamese])
@pytest.mark.parametrize("explicit", [False, True])
def test_same_seed_same_predictions_and_the_budget_holds(cls: type, explicit: bool) -> None:
    outputs = []
    limit = tiny_view(explicit)[0].n_train + 500  # the histories a method reads (charged once), then 500
    for _ in range(2):
        method, view, rows = fitted(cls, explicit, epochs=2, train_examples=limit)
        assert view.examples_used <= limit
        outputs.append(method.predict(cold_batch(view, rows, TEST_USERS)))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_siamese_rating_is_the_item_mean_plus_the_nearest_items_residual() -> None:
    method, *_ = fitted(Siamese, explicit=True, epochs=1)
    with torch.no_grad():  # item 40 coincides with source item 0, far from source item 1
        weight = method.encoder.table.weight
        weight[:] = torch.eye(16)[torch.arange(weight.shape[0]) % 16]
        weight[40] = weight[0]
    method.temperature = 0.01
    history = Interactions(np.array([0, 0]), np.array([0, 1]), np.array([2.0, 5.0]), np.zeros(2))
    empty = Interactions(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.float64, np.int64)))
    batch = ColdBatch(np.array([3]), empty, history, np.array([0]), np.array([40]))
    mu = method.item_mean
    expected = mu[40] + (2.0 - mu[0])
    np.testing.assert_allclose(method.predict(batch), [expected.item()], atol=1e-3)

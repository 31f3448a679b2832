"""TGT, CMF, EMCDR, PTUPCDR and FineTune on a tiny synthetic task with planted cross-domain preferences,
and the ``reference`` profile of CMF, EMCDR and PTUPCDR (the official PTUPCDR code's modelling choices).

Users belong to one of four taste clusters, and so do items in every domain; a user mostly interacts with
(and rates highly) items of its own cluster, in every domain. A cold user's source history therefore reveals
its target taste: transfer methods must recover it at K=0, where target-only MF cannot.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from benchmark import runner
from benchmark.api import AdaptMeter, Budget, ColdBatch, Interactions, TrainView
from methods import REGISTRY
from methods.cmf import CMF
from methods.emcdr import EMCDR
from methods.finetune import FineTune
from methods.mf import (
    MF,
    NegativeSampler,
    adapt_user_vectors,
    epoch_batches,
    integer_ratings,
    listed,
    resolve_profile,
)
from methods.mf_target import TargetMF
from methods.ptupcdr import PTUPCDR, liked_history, warm_batches

METHODS = {"mf-target": TargetMF, "cmf": CMF, "emcdr": EMCDR, "ptupcdr": PTUPCDR, "finetune": FineTune}
TRANSFER = ["cmf", "emcdr", "ptupcdr", "finetune"]
CLUSTERS, N_USERS, ITEMS_PER_DOMAIN, ROWS_PER_DOMAIN = 4, 240, 40, 12


def make_rows(users, items, ratings) -> Interactions:
    order = np.lexsort((items, users))
    ts = np.zeros(len(users), dtype=np.int64)
    pos = np.arange(len(users)) - np.searchsorted(users[order], users[order])
    ts[order] = pos
    return Interactions(users[order], items[order], ratings[order].astype(np.float64), ts[order])


class Planted:
    """A synthetic task: family R (1 source, ratings), L (2 sources, implicit, K>0) or C (1 source, K=0)."""

    def __init__(
        self, family: str, k: int, train_examples: float = 10.0, adapt_steps: int = 20, seed: int = 0
    ):
        rng = np.random.default_rng(seed)
        self.family, self.k = family, k
        self.domains = ("A", "B", "T") if family == "L" else ("S", "T")
        self.explicit = family == "R"
        n_dom = len(self.domains)
        self.item_domain = np.repeat(np.arange(n_dom), ITEMS_PER_DOMAIN)
        item_cluster = np.arange(len(self.item_domain)) % CLUSTERS
        user_cluster = np.arange(N_USERS) % CLUSTERS
        users, items = [], []
        for d in range(n_dom):  # a loop over 2-3 domains; users and items are vectorized
            own = rng.random((N_USERS, ROWS_PER_DOMAIN)) < 0.85
            cluster = np.where(
                own, user_cluster[:, None], rng.integers(CLUSTERS, size=(N_USERS, ROWS_PER_DOMAIN))
            )
            keys = rng.random((N_USERS, ITEMS_PER_DOMAIN))  # sample distinct items per user
            pick = np.argsort(keys, axis=1)[:, :ROWS_PER_DOMAIN]
            local = (pick // CLUSTERS) * CLUSTERS + cluster  # an item of the chosen cluster
            local = np.unique(
                np.stack([np.repeat(np.arange(N_USERS), ROWS_PER_DOMAIN), local.ravel()]), axis=1
            )
            users.append(local[0])
            items.append(local[1] + d * ITEMS_PER_DOMAIN)
        user, item = np.concatenate(users), np.concatenate(items)
        match = item_cluster[item] == user_cluster[user]
        rating = (
            np.where(match, 4.5, 1.5) + rng.normal(0, 0.3, len(user))
            if self.explicit
            else np.full(len(user), np.nan)
        )
        if self.explicit:
            rating = np.clip(rating, 1, 5)
        target = self.item_domain[item] == n_dom - 1
        cold = np.arange(N_USERS) >= int(0.8 * N_USERS)  # last 20%: half validation, half test
        self.val_users = np.flatnonzero(cold)[: cold.sum() // 2]
        self.test_users = np.flatnonzero(cold)[cold.sum() // 2 :]
        keep = ~(target & cold[user])
        self.train = make_rows(user[keep], item[keep], rating[keep])
        self.cold = make_rows(user[~keep], item[~keep], rating[~keep])
        self.target_items = np.flatnonzero(self.item_domain == n_dom - 1)
        rows = int(train_examples * len(self.train))
        self.budget = Budget(train_examples=rows, adapt_steps=adapt_steps, wall_seconds=120.0)
        self.validations = 0
        self.view = TrainView(
            task_id=f"planted-{family}",
            family=family,
            domains=self.domains,
            source_domains=self.domains[:-1],
            target_domain="T",
            explicit=self.explicit,
            n_users=N_USERS,
            item_domain=self.item_domain,
            train=self.train,
            train_domain=self.item_domain[self.train.item],
            budget=self.budget,
            validator=self.validate,
            deadline=time.monotonic() + 600,
        )

    def batch(self, users: np.ndarray, adapt_steps: int | None = None) -> tuple[ColdBatch, Interactions]:
        """Cold batch of ``users``: support = first K target rows, query = the rest (labels kept here)."""
        pos = np.full(N_USERS, -1)
        pos[users] = np.arange(len(users))
        mine = pos[self.cold.user] >= 0
        c = Interactions(
            pos[self.cold.user[mine]], self.cold.item[mine], self.cold.rating[mine], self.cold.ts[mine]
        )
        order = np.lexsort((c.item, c.user))
        rank = np.arange(len(c.user)) - np.searchsorted(c.user[order], c.user[order])
        sup = np.zeros(len(c.user), dtype=bool)
        sup[order] = rank < self.k
        support = Interactions(c.user[sup], c.item[sup], c.rating[sup], c.ts[sup])
        query = Interactions(c.user[~sup], c.item[~sup], c.rating[~sup], c.ts[~sup])
        meter = AdaptMeter(self.budget.adapt_steps if adapt_steps is None else adapt_steps)
        history = self.view._batch_history(users)  # as the harness serves cold users: not charged
        if self.explicit:
            batch = ColdBatch(users, support, history, query.user, query.item, meter=meter)
        else:
            batch = ColdBatch(users, support, history, candidates=self.target_items, meter=meter)
        return batch, query

    def score(self, predict, users: np.ndarray) -> float:
        """As the harness validates: -user MAE (family R) or NDCG@10 per user, support items excluded."""
        batch, query = self.batch(users)
        out = predict(batch)
        if self.explicit:
            error = np.bincount(query.user, np.abs(out - query.rating)) / np.bincount(query.user)
            return -float(np.nanmean(error))
        col = np.searchsorted(self.target_items, batch.support.item)
        out[batch.support.user, col] = -np.inf
        relevant = np.zeros(out.shape, dtype=bool)
        relevant[query.user, np.searchsorted(self.target_items, query.item)] = True
        top = np.argsort(-out, axis=1, kind="stable")[:, :10]
        gains = (np.take_along_axis(relevant, top, 1) / np.log2(np.arange(2, 12))).sum(1)
        ideal = np.cumsum(1 / np.log2(np.arange(2, 12)))[np.minimum(relevant.sum(1), 10) - 1]
        return float((gains / ideal).mean())

    def validate(self, predict) -> float:
        self.validations += 1
        return self.score(predict, self.val_users)


def fitted(name: str, family: str, k: int, seed: int = 0, config: dict | None = None, **task) -> tuple:
    cls = METHODS[name]
    task = Planted(family, k, **task)
    method = cls({**cls.default_config(family), **(config or {})}, seed=seed)
    method.fit(task.view, task.budget)
    return method, task


FAMILY_K = [("R", 0), ("R", 3), ("L", 3), ("C", 0)]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_registry_names_the_classes(name):
    module, cls = REGISTRY[name].split(":")
    assert f"{METHODS[name].__module__}:{METHODS[name].__name__}" == f"{module}:{cls}"
    for family in "RLC":
        config = METHODS[name].default_config(family)
        assert config, f"{name} has no default config for family {family}"
        assert all(isinstance(v, int | float | bool | str) for v in config.values()), "configs must stay flat"


@pytest.mark.parametrize(("family", "k"), FAMILY_K)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_predictions_have_the_right_shape_are_finite_and_within_budget(name, family, k):
    method, task = fitted(name, family, k)
    batch, query = task.batch(task.test_users, adapt_steps=task.budget.adapt_steps)
    out = method.predict(batch)
    assert out.dtype == np.float32
    if family == "R":
        assert out.shape == (len(query),)
        assert out.min() >= 1.0 and out.max() <= 5.0
    else:
        assert out.shape == (len(task.test_users), len(task.target_items))
    assert np.isfinite(out).all()
    assert 0 < task.view.examples_used <= task.budget.train_examples
    assert batch.adapt_steps_used <= task.budget.adapt_steps
    assert task.validations >= 1, "model selection must go through view.validate"


@pytest.mark.parametrize("name", TRANSFER)
def test_transfer_methods_recover_planted_preferences_of_cold_users_at_k0(name):
    small = {"batch_size": 128}  # the defaults' batches of 2048 would leave ~30 steps on this tiny task
    method, task = fitted(name, "C", 0, config=small)
    baseline, _ = fitted("mf-target", "C", 0, config=small)
    score = task.score(method.predict, task.test_users)
    assert score > 0.5, f"{name}: NDCG@10 {score:.3f} on planted clusters (random is ~0.25)"
    assert score > task.score(baseline.predict, task.test_users) + 0.1


def test_target_only_mf_uses_the_support_at_k_above_0():
    method, task = fitted("mf-target", "L", 3)
    assert method.adapt_steps > 0, "validation should keep adaptation on planted data"
    batch, _ = task.batch(task.test_users)
    s = batch.support
    no_support = ColdBatch(
        batch.users,
        Interactions(s.user[:0], s.item[:0], s.rating[:0], s.ts[:0]),
        batch.history,
        candidates=batch.candidates,
    )
    with_support = task.score(method.predict, task.test_users)
    assert with_support > task.score(lambda _: method.predict(no_support), task.test_users) + 0.2


@pytest.mark.parametrize(("name", "family", "k"), [("ptupcdr", "L", 3), ("cmf", "R", 3)])
def test_same_seed_gives_identical_predictions(name, family, k):
    first, task = fitted(name, family, k, seed=3)
    second, _ = fitted(name, family, k, seed=3)
    batch, _ = task.batch(task.test_users)
    again, _ = task.batch(task.test_users)
    np.testing.assert_array_equal(first.predict(batch), second.predict(again))


def test_training_stops_at_the_example_budget():
    method, task = fitted("finetune", "L", 3, train_examples=1.5)
    assert task.view.examples_used == task.budget.train_examples
    batch, _ = task.batch(task.test_users)
    assert np.isfinite(method.predict(batch)).all()


def test_adaptation_respects_a_smaller_per_user_budget():
    method, task = fitted("emcdr", "R", 3)
    batch, _ = task.batch(task.test_users, adapt_steps=2)
    method.predict(batch)
    assert batch.adapt_steps_used <= 2


def test_batched_adaptation_equals_adapting_each_user_alone():
    rng = np.random.default_rng(0)
    item_domain = np.zeros(30, dtype=np.int64)
    model = MF(5, item_domain, 4)
    support = make_rows(np.array([0, 0, 1, 2, 2, 2]), np.array([3, 7, 1, 4, 5, 9]), rng.uniform(1, 5, 6))
    init = torch.randn(3, 5)
    args = dict(explicit=True, steps=7, lr=0.1, reg=0.2, negatives=np.arange(30), n_neg=2, rng=rng)
    together = adapt_user_vectors(model, init, support, **args)
    for u in range(3):
        mine = support.user == u
        alone_rows = Interactions(
            support.user[mine] * 0, support.item[mine], support.rating[mine], support.ts[mine]
        )
        alone = adapt_user_vectors(model, init[u : u + 1], alone_rows, **args)
        torch.testing.assert_close(together[u : u + 1], alone, rtol=1e-5, atol=1e-6)
    assert not torch.equal(together, init)


def test_users_without_support_keep_their_initial_vector():
    model = MF(3, np.zeros(10, dtype=np.int64), 4)
    support = make_rows(np.array([1, 1]), np.array([2, 3]), np.array([np.nan, np.nan]))
    init = torch.randn(3, 5)
    out = adapt_user_vectors(
        model, init, support, False, 5, 0.1, 0.1, np.arange(10), 3, np.random.default_rng(0)
    )
    torch.testing.assert_close(out[[0, 2]], init[[0, 2]])
    assert not torch.equal(out[1], init[1])


def test_negatives_come_from_the_positive_items_domain():
    item_domain = np.array([0, 1, 1, 0, 2, 1, 0, 2, 2, 2])
    sampler = NegativeSampler(item_domain)
    pos = np.repeat(np.arange(10), 50)
    neg = sampler.sample(pos, np.random.default_rng(0), n=4)
    assert neg.shape == (500, 4)
    assert (item_domain[neg] == item_domain[pos][:, None]).all()
    assert set(neg[pos == 4].ravel()) == {4, 7, 8, 9}  # every item of domain 2 is drawn


def test_liked_history_keeps_ratings_above_3_or_everything_when_none_is():
    history = make_rows(
        np.array([0, 0, 0, 1, 1]), np.array([5, 6, 7, 8, 9]), np.array([5.0, 2.0, 4.0, 1.0, 3.0])
    )
    items, mask = liked_history(history, 3, explicit=True, length=4)
    assert [set(items[u][mask[u]]) for u in range(3)] == [{5, 7}, {8, 9}, set()]
    items, mask = liked_history(history, 3, explicit=False, length=2)
    assert mask.sum(1).tolist() == [2, 2, 0]


def worsening():
    """A validator under which every new score is worse than the ones before."""
    calls = iter(range(10**6))
    return lambda predict: -float(next(calls))


def test_finetune_fine_tunes_at_least_one_epoch_and_never_equals_cmf():
    """A validation that always prefers the earlier state made finetune keep the pretrained model, = CMF."""
    results = {}
    for name in ("cmf", "finetune"):
        cls = METHODS[name]
        task = Planted("R", 0)
        task.view._validator = worsening()
        config = {**cls.default_config("R"), "epochs": 2, "pretrain_epochs": 2, "finetune_epochs": 2}
        method = cls(config, seed=1)
        method.fit(task.view, task.budget)
        results[name] = (method, task)
    finetune, task = results["finetune"]
    assert finetune.selected["pretrain_epochs"] == 1 == results["cmf"][0].selected["epochs"]
    assert finetune.selected["finetune_epochs"] == 1  # epoch 0 (the pretrained state) is never scored
    batch, _ = task.batch(task.test_users)
    assert not np.array_equal(finetune.predict(batch), results["cmf"][0].predict(batch))


def test_finetune_pretraining_leaves_one_fine_tuning_pass_in_the_budget():
    # 5 pretraining epochs over all rows would take the whole 1.2x budget and leave nothing to fine-tune
    method, task = fitted("finetune", "L", 3, train_examples=1.2, config={"pretrain_epochs": 5})
    assert method.selected["pretrain_epochs"] >= 1
    assert method.selected["finetune_epochs"] >= 1
    assert task.view.examples_used == task.budget.train_examples


# -- profiles: the official code's modelling choices (reference) next to the ranked defaults -------------
PROFILED = ["cmf", "emcdr", "ptupcdr"]
REFERENCE = {"config": {"profile": "reference"}, "train_examples": 30.0}  # R tasks' budget: 10 epochs/stage
OFFICIAL = {
    "dim": 10,
    "init_std": 1.0,
    "bias": False,
    "sparse_adam": False,
    "integer_ratings": True,
    "clamp": False,
    "select": "last",
    "adapt_steps": 0,
    "lr": 0.01,
}


@pytest.mark.parametrize("name", PROFILED)
def test_reference_profile_resolves_to_the_official_choices_and_keeps_explicit_overrides(name):
    cls = METHODS[name]
    base = cls.default_config("R")
    assert base["profile"] == "default" and resolve_profile(cls, "R", base) == base
    assert runner.resolve_config(cls, "R", {"profile": "reference"})["profile"] == "reference"
    reference = resolve_profile(cls, "R", {**base, "profile": "reference"})
    assert {k: reference[k] for k in OFFICIAL} == OFFICIAL
    assert set(reference) == set(base), "a profile may only set keys the defaults have"
    assert reference["batch_size"] == 256  # the official default configuration (entry.py --task 1)
    tuned = resolve_profile(cls, "R", {**base, "profile": "reference", "lr": 0.003})
    assert tuned["lr"] == 0.003 and tuned["init_std"] == 1.0
    with pytest.raises(KeyError, match="unknown profile"):
        resolve_profile(cls, "R", {**base, "profile": "nope"})


def test_reference_profile_batch_sizes_and_mappings():
    ptupcdr = resolve_profile(PTUPCDR, "R", {**PTUPCDR.default_config("R"), "profile": "reference"})
    assert (ptupcdr["meta_batch_size"], ptupcdr["meta_batches"], ptupcdr["bridge"]) == (128, "warm", "plain")
    assert ptupcdr["empty_history"] == "placeholder" and ptupcdr["meta_lr"] == 0.01
    emcdr = resolve_profile(EMCDR, "R", {**EMCDR.default_config("R"), "profile": "reference"})
    assert (emcdr["mapping"], emcdr["map_batch_size"], emcdr["map_epochs"]) == ("linear", 64, 10)
    cmf = resolve_profile(CMF, "R", {**CMF.default_config("R"), "profile": "reference"})
    assert (cmf["batches"], cmf["epochs"]) == ("mixed", 10)


@pytest.mark.parametrize("name", PROFILED)
def test_reference_profile_refuses_implicit_families(name):
    with pytest.raises(ValueError, match="family R"):
        fitted(name, "C", 0, config={"profile": "reference"})


@pytest.mark.parametrize("name", PROFILED)
def test_reference_profile_trains_the_official_recipe(name):
    method, task = fitted(name, "R", 0, **REFERENCE)
    assert method.config["init_std"] == 1.0 and not method.target.bias
    assert not method.target.user.sparse, "dense gradients: the official code's dense Adam"
    epochs = [v for k, v in method.selected.items() if k.endswith("epochs")]
    assert epochs and all(e == 10 for e in epochs), "10 epochs, the last"
    assert task.validations == 1, "no epoch validated: only the (single) adaptation-step check"
    batch, _ = task.batch(task.test_users)
    out = method.predict(batch)
    assert np.isfinite(out).all()
    assert out.min() < 1.0 or out.max() > 5.0, "no clamping: N(0, 1) dot products leave the rating range"
    again, _ = fitted(name, "R", 0, **REFERENCE)
    np.testing.assert_array_equal(out, again.predict(task.batch(task.test_users)[0]))


def test_reference_emcdr_maps_linearly_and_ptupcdr_keeps_a_placeholder_item():
    emcdr, _ = fitted("emcdr", "R", 0, **REFERENCE)
    assert isinstance(emcdr.mapping, torch.nn.Linear) and emcdr.mapping.bias is None
    assert emcdr.mapping.weight.shape == (10, 10)
    ptupcdr, _ = fitted("ptupcdr", "R", 0, **REFERENCE)
    assert ptupcdr.placeholder is not None and ptupcdr.placeholder.shape == (10,)
    users = torch.tensor([0, 1])
    empty = torch.zeros((2, 3), dtype=torch.bool)
    with torch.no_grad():
        got = ptupcdr.bridged(users, torch.zeros((2, 3), dtype=torch.long), empty)
        bridge = ptupcdr.meta(ptupcdr.placeholder.view(1, 1, -1), torch.ones((1, 1), dtype=torch.bool))
        want = ptupcdr.source.user(users) @ bridge[0]
    torch.testing.assert_close(got[:, :10], want)


def test_liked_history_placeholder_fallback_leaves_users_without_liked_items_empty():
    history = make_rows(
        np.array([0, 0, 0, 1, 1]), np.array([5, 6, 7, 8, 9]), np.array([5.0, 2.0, 4.0, 1.0, 3.0])
    )
    items, mask = liked_history(history, 3, explicit=True, length=4, fallback="placeholder")
    assert [set(items[u][mask[u]]) for u in range(3)] == [{5, 7}, set(), set()]


def test_warm_batches_are_full_batches_of_warm_rows_and_charge_every_target_row():
    task = Planted("R", 0)
    view = task.view
    target = view._domain_rows("T")
    warm = np.zeros(N_USERS, dtype=bool)
    warm[::3] = True
    batches = list(warm_batches(view, warm, 32, np.random.default_rng(0)))
    sizes = [len(b) for b in batches]
    assert all(s == 32 for s in sizes[:-1]) and 0 < sizes[-1] <= 32
    assert sum(sizes) == warm[target.user].sum()
    assert all(warm[b.user].all() for b in batches)
    assert view.examples_used == len(target)


def test_mixed_batches_draw_rows_of_every_domain_and_integer_ratings_truncate():
    task = Planted("R", 0)
    rng = np.random.default_rng(0)
    batches = list(epoch_batches(task.view, 64, rng, ["S", "T"], mixed=True))
    assert sum(len(b) for b in batches) == task.view.n_train
    assert any(len(set(task.item_domain[b.item])) == 2 for b in batches)
    with pytest.raises(ValueError, match="every domain"):
        next(epoch_batches(task.view, 64, rng, ["T"], mixed=True))
    rows = make_rows(np.array([0, 1]), np.array([0, 1]), np.array([4.5, 3.99]))
    assert integer_ratings(rows).rating.tolist() == [4.0, 3.0]


@pytest.mark.parametrize("name", PROFILED)
def test_deviations_are_read_from_the_docstring_and_profiles_are_labelled(name):
    cls = METHODS[name]
    doc = " ".join(sys.modules[cls.__module__].__doc__.split())
    assert len(cls.deviations) >= 5
    assert all(d in doc for d in cls.deviations)
    assert cls.profile_labels["reference"].startswith("as published")
    assert listed("x\n- a\n  b\n\n- c", "x") == ("a",)
    assert listed("x\n\n  - a\n    b\n  - c\n\nd", "x") == ("a b", "c")


def test_ptupcdr_default_bridges_the_biased_vector_in_family_r_only():
    config = PTUPCDR.default_config("R")
    assert config["bias"] and config["bridge"] == "biased" and config["clamp"]
    for family in "LC":
        other = PTUPCDR.default_config(family)
        assert not other["bias"] and other["bridge"] == "plain" and other["meta_lr"] == other["lr"]
    method, _ = fitted("ptupcdr", "R", 0)
    assert method.meta.dim == 11, "(dim + 1) x (dim + 1) bridge over [p, b]"

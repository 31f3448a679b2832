"""Cold items (IR, IL) in mf-target and maml: the closed-form fold-in by hand, determinism and the cached
pretraining on tiny synthetic cold-item tasks, and the floors beaten on the real data (skipped without it)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import harness, pretrain, runner
from benchmark.api import AdaptMeter, ColdItemBatch, Interactions
from benchmark.registry import load_method
from methods.mf import MF
from tasks import artifact
from tasks.spec import get_spec
from tasks.split import split_item_earliest, split_item_ratings
from tests import tiny_tasks
from tests.test_pretrain import assert_same_run

METHODS = ("mf-target", "maml")
FAST = {"epochs": 2}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as a suite cell runs (``COLDBENCH_THREADS=1``): two made the real-data fits 20x
    slower on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the fold-in by hand -------------------------------------------------------------------------------------
def _target_mf(explicit: bool):
    """A TargetMF with a hand-set MF: dim 1, users 0, 1, 2 warm with p = 1, 2, 3, user 3 never trained."""
    cls = load_method("mf-target")
    family = "IR" if explicit else "IL"
    method = cls({**cls.default_config(family), "dim": 1}, 0)
    model = MF(4, np.array([0, 1, 1, 1]), dim=1, generator=torch.Generator())
    with torch.no_grad():
        model.user.weight[:, 0] = torch.tensor([1.0, 2.0, 3.0, 7.0])
        model.user_bias.weight[:, 0] = torch.tensor([0.5, -0.5, 0.2, 9.0])
        model.mu[1] = 3.5
    method.target, method.warm = model, torch.tensor([0, 1, 2])
    method.explicit, method.rating_range = explicit, (1.0, 5.0) if explicit else None
    method.selected["fold_in_reg"] = 1.0
    return method


def _batch(items, user, item, rating) -> ColdItemBatch:
    support = Interactions(
        np.array(user), np.array(item), np.array(rating, dtype=np.float32), np.zeros(len(user))
    )
    users = np.unique(support.user)
    empty = Interactions(*(np.zeros(0, dtype=np.int64) for _ in range(4)))
    return ColdItemBatch(np.array(items), support, users, empty, meter=AdaptMeter(0))


def test_rating_fold_in_is_the_ridge_solution_by_hand():
    """Item 1 rated 5 by user 0 and 3 by user 1: residuals r - mu - b_u = 1, 0; rows x = [p_u, 1] = [1, 1],
    [2, 1]; (X'X + I)^-1 X'y = [[6, 3], [3, 3]]^-1 [1, 1] = [0, 1/3], so q = 0 and b = 1/3."""
    method = _target_mf(explicit=True)
    batch = _batch([1], [0, 1], [1, 1], [5.0, 3.0])
    batch.query_user, batch.query_item = np.array([2, 3]), np.array([1, 1])
    pred = method.predict(batch)
    # user 2: mu + b_u + b + p q = 3.5 + 0.2 + 1/3; user 3 has no target rows: zero vector and bias
    np.testing.assert_allclose(pred, [3.5 + 0.2 + 1 / 3, 3.5 + 1 / 3], rtol=1e-6)


def test_implicit_fold_in_scores_the_support_users_high_by_hand():
    """q = (P'P + I)^-1 P'1: item 1 bought by users 0, 1 -> 3 / 6 = 0.5; item 2 by user 1 -> 2 / 5 = 0.4."""
    method = _target_mf(explicit=False)
    batch = _batch([1, 2], [0, 1, 1], [1, 1, 2], [np.nan] * 3)
    batch.query_users = np.array([2, 3])
    scores = method.predict(batch)
    np.testing.assert_allclose(scores, [[3 * 0.5, 3 * 0.4], [0.0, 0.0]], rtol=1e-6)


# -- tiny synthetic cold-item tasks -------------------------------------------------------------------------
@functools.cache
def tiny_items(family: str, k: int) -> harness.EncodedTask:
    """A tiny IR or IL task at K=k: the same data and split for every k (one task group)."""
    spec = tiny_tasks._spec(
        family,
        ("A",),
        "B",
        k,
        get_spec("I-movies-k1" if family == "IR" else "I-beauty-k1").metrics,
        beta=0.3,
        valid_fraction=0.2,
        filters={"pool": 5},
    )
    table = tiny_tasks.synthetic(("A", "B"), explicit=family == "IR", n_users=120)
    split = split_item_ratings if family == "IR" else split_item_earliest
    return tiny_tasks._encode(spec, split(table, spec))


def config_of(name: str, family: str) -> dict:
    cls = load_method(name)
    return {**cls.default_config(family), **FAST}


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("COLDBENCH_PRETRAIN_CACHE", raising=False)
    pretrain._MEMORY.clear()
    yield tmp_path
    pretrain._MEMORY.clear()


def run(enc: harness.EncodedTask, name: str, seed: int = 0) -> runner.Outcome:
    config = config_of(name, enc.spec.family)
    outcome = runner.execute(enc, load_method(name), config, seed, keep_predictions=True)
    assert outcome.status == "ok", outcome.error
    return outcome


@pytest.mark.parametrize("family", ["IR", "IL"])
@pytest.mark.parametrize("name", METHODS)
def test_item_path_is_deterministic(name, family, cache_root, monkeypatch):
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE", "0")
    first, again = run(tiny_items(family, 3), name), run(tiny_items(family, 3), name)
    assert first.evaluation is not None and len(first.evaluation.predictions) > 0
    assert np.isfinite(list(first.evaluation.pooled.values())).all()
    assert_same_run(first, again)


@pytest.mark.parametrize("family", ["IR", "IL"])
@pytest.mark.parametrize("name", METHODS)
def test_cached_item_pretraining_gives_the_uncached_run(name, family, cache_root, monkeypatch):
    """K=1 pretrains and stores; K=3 loads it (from disk) and equals a K=3 run with the cache off."""
    k1, k3 = tiny_items(family, 1), tiny_items(family, 3)
    assert k1.pretrain_digest == k3.pretrain_digest
    first = run(k1, name)
    assert first.pretrain is not None and first.pretrain.source == "ran"
    pretrain._MEMORY.clear()
    cached = run(k3, name)
    assert cached.pretrain is not None and cached.pretrain.source == "cached"
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE", "0")
    uncached = run(k3, name)
    assert uncached.pretrain is not None and uncached.pretrain.source == "ran"
    assert_same_run(cached, uncached)


# -- real data: the floors beaten ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_tasks(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("item-tasks")

    def load(task_id: str) -> harness.EncodedTask:
        spec = get_spec(task_id)
        split_hash = artifact.build(spec, data_dir, out)["split_hash"]
        return runner.load_task(out / spec.id, split_hash, spec).enc

    return load


def _score(enc: harness.EncodedTask, name: str, **over) -> float:
    cls = load_method(name)
    config = {**cls.default_config(enc.spec.family), **over}
    outcome = runner.execute(enc, cls, config, 0)
    assert outcome.status == "ok", outcome.error
    assert outcome.evaluation is not None
    metric = "item_mae" if enc.spec.family == "IR" else "item_ndcg@10"
    return outcome.evaluation.pooled[metric]


@pytest.mark.parametrize("name", METHODS)
def test_beats_the_floors_on_real_cold_items(name, real_tasks, monkeypatch):
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE", "0")
    movies, beauty = real_tasks("I-movies-k5"), real_tasks("I-beauty-k5")
    fast = {"epochs": 3} if name == "maml" else {}  # maml in IL: fewer epochs keep the test short
    assert _score(movies, name) < _score(movies, "global-mean")
    assert _score(beauty, name, **fast) > _score(beauty, "random")

"""ProtoNet and Siamese on cold items (families IR, IL; issue 18 item 3).

A cold item's prototype is built from its support users alone: what is asked (the query users and pairs) and
the query labels never change a prediction, while the support does. Runs are deterministic per seed and a
cached pretraining gives the run an uncached one gives. On the real data both beat the floors.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import harness, pretrain, runner
from benchmark.api import ColdItemBatch
from benchmark.registry import load_method
from tests import tiny_tasks

METHODS = ("protonet", "siamese")
FAST = {"epochs": 2}


@functools.cache
def tiny(family: str) -> harness.EncodedTask:
    return tiny_tasks.tiny_items(family, 2)


def config_of(name: str, family: str) -> dict:
    return load_method(name).default_config(family) | FAST


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("COLDBENCH_PRETRAIN_CACHE", raising=False)
    pretrain._MEMORY.clear()
    yield tmp_path
    pretrain._MEMORY.clear()


def run(enc: harness.EncodedTask, name: str, seed: int = 0, config: dict | None = None) -> runner.Outcome:
    cls = load_method(name)
    outcome = runner.execute(
        enc, cls, config or config_of(name, enc.spec.family), seed, keep_predictions=True
    )
    assert outcome.status == "ok", outcome.error
    return outcome


def first_batch(outcome: runner.Outcome, enc: harness.EncodedTask) -> ColdItemBatch:
    batch = next(harness.cold_item_batches(enc, outcome.view, "support", "query", 20))[0]
    assert isinstance(batch, ColdItemBatch) and len(batch.support) > 0
    return batch


@pytest.mark.parametrize("name", METHODS)
def test_il_scores_of_a_user_do_not_depend_on_who_else_is_asked_but_on_the_support(name: str) -> None:
    enc = tiny("IL")
    outcome = run(enc, name)
    batch = first_batch(outcome, enc)
    scores = outcome.method.predict(batch)
    assert scores.shape == (len(batch.query_users), len(batch.items)) and np.isfinite(scores).all()
    half = dataclasses.replace(batch, query_users=batch.query_users[::2])
    np.testing.assert_array_equal(outcome.method.predict(half), scores[::2])
    # other support users for the first item: its column moves, the other items' columns stay
    first = batch.support_of() == 0
    others = np.setdiff1d(np.arange(enc.users.size), batch.support_users)[: first.sum()]
    user = batch.support.user.copy()
    user[first] = others
    support = dataclasses.replace(batch.support, user=user)
    users = np.unique(user)
    moved = dataclasses.replace(
        batch, support=support, support_users=users, history=outcome.view._batch_history(users)
    )
    changed = outcome.method.predict(moved)
    assert not np.allclose(changed[:, 0], scores[:, 0])
    np.testing.assert_allclose(changed[:, 1:], scores[:, 1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_ir_ratings_are_per_pair_and_read_the_support_ratings(name: str) -> None:
    enc = tiny("IR")
    outcome = run(enc, name)
    batch = first_batch(outcome, enc)
    ratings = outcome.method.predict(batch)
    assert ratings.shape == batch.query_item.shape and np.isfinite(ratings).all()
    order = np.random.default_rng(0).permutation(len(ratings))[: len(ratings) // 2]
    part = dataclasses.replace(batch, query_user=batch.query_user[order], query_item=batch.query_item[order])
    np.testing.assert_allclose(outcome.method.predict(part), ratings[order], rtol=1e-6)
    flipped = dataclasses.replace(
        batch, support=dataclasses.replace(batch.support, rating=6.0 - batch.support.rating)
    )
    assert not np.allclose(outcome.method.predict(flipped), ratings)


@pytest.mark.parametrize("name", METHODS)
def test_query_labels_never_enter_the_predictions(name: str) -> None:
    """IR: the test query's ratings replaced; fit and predictions are the same (only the metric moves)."""
    enc = tiny("IR")
    query = enc.tables["query"]
    noise = np.random.default_rng(1).integers(1, 6, len(query.rows)).astype(np.float64)
    rows = dataclasses.replace(query.rows, rating=noise)
    scrambled = dataclasses.replace(
        enc, tables={**enc.tables, "query": dataclasses.replace(query, rows=rows)}
    )
    a, b = run(enc, name), run(scrambled, name)
    pd.testing.assert_series_equal(
        a.evaluation.predictions["prediction"], b.evaluation.predictions["prediction"]
    )
    assert not np.array_equal(a.evaluation.predictions["rating"], b.evaluation.predictions["rating"])


@pytest.mark.parametrize("family", ["IR", "IL"])
@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_predictions_and_a_cached_pretraining_changes_nothing(name: str, family: str) -> None:
    enc = tiny(family)
    first = run(enc, name)
    assert first.pretrain is not None and first.pretrain.source == "ran"
    pretrain._MEMORY.clear()
    cached = run(enc, name)
    assert cached.pretrain is not None and cached.pretrain.source == "cached"
    pretrain._MEMORY.clear()
    fresh = runner.execute(enc, load_method(name), config_of(name, family), 0, keep_predictions=True)
    for other in (cached, fresh):
        pd.testing.assert_frame_equal(
            first.evaluation.predictions, other.evaluation.predictions, check_exact=True
        )
        assert first.evaluation.pooled == other.evaluation.pooled
        assert first.view.examples_used == other.view.examples_used
        assert first.method.selected == other.method.selected


# ---------------------------------------------------------------- real data (skips without the data root)

REAL = {"epochs": 3}  # fewer epochs than the defaults: the whole block stays near a minute


@functools.cache
def real_task(data_dir: Path, out: Path, task_id: str) -> harness.EncodedTask:
    from tasks import artifact
    from tasks.spec import all_specs

    spec = all_specs()[task_id]
    artifact.build(spec, data_dir, out)
    return harness.encode(artifact.load(out / task_id), spec)


@pytest.fixture
def one_thread():
    """One torch thread, as a bench worker runs a cell (``COLDBENCH_THREADS=1``): several threads on a busy
    machine make the small per-episode ops of these methods many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", METHODS)
def test_real_data_beats_the_floors(
    name: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None
) -> None:
    from methods.floors import GlobalMean, Random

    out = tmp_path_factory.getbasetemp() / "items_metric_tasks"
    for task_id, floor, metric, better in (
        ("I-movies-k5", GlobalMean, "item_mae", np.less),
        ("I-beauty-k5", Random, "item_ndcg@10", np.greater),
    ):
        enc = real_task(data_dir, out, task_id)
        config = load_method(name).default_config(enc.spec.family) | REAL
        ours = runner.execute(enc, load_method(name), config, 0)
        base = runner.execute(enc, floor, floor.default_config(enc.spec.family), 0)
        assert ours.status == "ok" and base.status == "ok", (ours.error, base.error)
        mine, theirs = ours.evaluation.pooled[metric], base.evaluation.pooled[metric]
        assert better(mine, theirs), f"{name} {task_id}: {metric} {mine:.4f} vs floor {theirs:.4f}"

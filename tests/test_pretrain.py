"""Train once per task group: a cached ``pretrain`` gives the run an uncached one gives, bit for bit.

Tiny family-L tasks at K=1 and K=3 share their training table and validation query (the query is the rows
after the pool), so a method's pretraining on one is its pretraining on the other.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark import harness, pretrain, runner
from benchmark.api import Interactions
from benchmark.registry import available, load_method
from tests import tiny_tasks

TWO_STAGE = [name for name in available() if callable(getattr(load_method(name), "pretrain", None))]
FAST = {"epochs": 2, "pretrain_epochs": 2, "finetune_epochs": 1, "mf_epochs": 2, "source_epochs": 2}


@functools.cache
def task_l(k: int) -> harness.EncodedTask:
    """Tiny family-L task at K=k, built once per k (``tiny_tasks.tiny_l``)."""
    return tiny_tasks.tiny_l(k)


def config_of(name: str) -> dict:
    cls = load_method(name)
    base = cls.default_config("L")
    return {**base, **{k: v for k, v in FAST.items() if k in base}}


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("COLDBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("COLDBENCH_PRETRAIN_CACHE", raising=False)
    pretrain._MEMORY.clear()
    yield tmp_path
    pretrain._MEMORY.clear()


def run(enc: harness.EncodedTask, name: str, seed: int = 0, config: dict | None = None) -> runner.Outcome:
    outcome = runner.execute(enc, load_method(name), config or config_of(name), seed, keep_predictions=True)
    assert outcome.status == "ok", outcome.error
    return outcome


def assert_same_run(a: runner.Outcome, b: runner.Outcome) -> None:
    assert a.evaluation is not None and b.evaluation is not None
    pd.testing.assert_frame_equal(a.evaluation.predictions, b.evaluation.predictions, check_exact=True)
    assert a.evaluation.pooled == b.evaluation.pooled
    assert a.view.examples_used == b.view.examples_used
    assert a.view.charged_domains == b.view.charged_domains
    assert getattr(a.method, "validation_score", None) == getattr(b.method, "validation_score", None)
    assert a.method.selected == b.method.selected
    assert a.method.train_flops_estimate(a.view.examples_used) == b.method.train_flops_estimate(
        b.view.examples_used
    )


def test_the_k_tasks_of_a_group_share_the_pretraining_key():
    k1, k3 = task_l(1), task_l(3)
    assert k1.split_hash != k3.split_hash
    assert k1.pretrain_digest == k3.pretrain_digest
    cls = load_method("protonet")
    assert runner.pretrain_key(k1, cls, config_of("protonet"), 0) == runner.pretrain_key(
        k3, cls, config_of("protonet"), 0
    )


def test_validate_pretrain_is_the_same_on_every_k_of_a_group():
    """Support withheld: the score does not depend on K, while ``validate`` (with the support) may."""
    seen_support = []

    def predict(batch) -> np.ndarray:
        seen_support.append(len(batch.support))
        rng = np.random.default_rng(int(batch.users[0]))
        return rng.random((len(batch), len(batch.candidates))).astype(np.float32)

    scores = []
    for k in (1, 3):
        enc = task_l(k)
        view = harness.make_view(enc, harness.budget_of(enc.spec, 10), time.monotonic() + 60)
        scores.append(view.validate_pretrain(predict))
    assert scores[0] == scores[1]
    assert set(seen_support) == {0}


@pytest.mark.parametrize("name", TWO_STAGE)
def test_cached_pretraining_gives_the_uncached_run(name, monkeypatch):
    """K=1 pretrains and stores; K=3 loads it (from disk) and equals a K=3 run with the cache off."""
    first = run(task_l(1), name)
    assert first.pretrain is not None and first.pretrain.source == "ran"
    pretrain._MEMORY.clear()  # the disk entry, not the in-process one
    cached = run(task_l(3), name)
    assert cached.pretrain is not None and cached.pretrain.source == "cached"
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE", "0")
    uncached = run(task_l(3), name)
    assert uncached.pretrain is not None and uncached.pretrain.source == "ran"
    assert_same_run(cached, uncached)
    monkeypatch.delenv("COLDBENCH_PRETRAIN_CACHE")
    assert_same_run(run(task_l(3), name), uncached)  # the in-process entry too


def _with_table(enc: harness.EncodedTask, name: str, change) -> harness.EncodedTask:
    table = enc.tables[name]
    rows = change(table.rows)
    return dataclasses.replace(enc, tables={**enc.tables, name: harness.EncodedTable(rows, table.domain)})


def test_the_key_changes_with_data_config_seed_and_validation_query():
    enc, cls, config = task_l(3), load_method("protonet"), config_of("protonet")
    key = runner.pretrain_key(enc, cls, config, 0)
    train = _with_table(enc, "train", lambda r: Interactions(r.user, r.item, r.rating, r.ts + 1))
    query = _with_table(
        enc, "valid_query", lambda r: Interactions(r.user, r.item[::-1].copy(), r.rating, r.ts)
    )
    others = {
        runner.pretrain_key(train, cls, config, 0),
        runner.pretrain_key(query, cls, config, 0),
        runner.pretrain_key(enc, cls, {**config, "lr": config["lr"] * 2}, 0),
        runner.pretrain_key(enc, cls, config, 1),
        runner.pretrain_key(enc, load_method("siamese"), config_of("siamese"), 0),
    }
    assert key not in others and len(others) == 5


def test_a_corrupt_cache_entry_is_recomputed(cache_root):
    enc = task_l(3)
    reference = run(enc, "protonet")
    key = runner.pretrain_key(enc, load_method("protonet"), config_of("protonet"), 0)
    path = cache_root / "pretrain" / f"{key}.pt"
    assert path.is_file()
    path.write_bytes(b"not a torch file")
    pretrain._MEMORY.clear()
    again = run(enc, "protonet")
    assert again.pretrain is not None and again.pretrain.source == "ran"
    assert_same_run(again, reference)


def test_the_cache_folder_keeps_the_recently_used_entries_within_its_bound(cache_root, monkeypatch):
    folder = cache_root / "pretrain"
    folder.mkdir()
    for i, name in enumerate(("old", "used", "new")):
        path = folder / f"{name}.pt"
        torch.save({"key": name, "payload": torch.zeros(2**16)}, path)  # about 256 KiB each
        stamp = 1_000_000_000 + i
        os.utime(path, (stamp, stamp))
    assert pretrain._load("used") is not None  # a load marks the entry as used now
    kept = sum((folder / f"{n}.pt").stat().st_size for n in ("used", "new"))
    deleted = pretrain.evict(folder, limit=kept, keep=folder / "new.pt")
    assert deleted == [folder / "old.pt"]
    assert sorted(p.name for p in folder.glob("*.pt")) == ["new.pt", "used.pt"]
    assert pretrain.evict(folder, limit=0, keep=folder / "new.pt") == [folder / "used.pt"]
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="COLDBENCH_PRETRAIN_CACHE_MB"):
        pretrain.cache_limit_bytes()


def test_a_run_that_writes_the_cache_evicts_beyond_the_bound(cache_root, monkeypatch):
    folder = cache_root / "pretrain"
    folder.mkdir()
    stale = folder / "stale.pt"
    torch.save({"key": "stale", "payload": torch.zeros(2**16)}, stale)
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE_MB", "0.01")  # smaller than any entry
    outcome = run(task_l(3), "protonet")
    assert outcome.pretrain is not None and outcome.pretrain.source == "ran"
    assert [p.name for p in folder.glob("*.pt")] == [
        f"{runner.pretrain_key(task_l(3), load_method('protonet'), config_of('protonet'), 0)}.pt"
    ]


def _garbage_support(enc: harness.EncodedTask) -> harness.EncodedTask:
    """Every support table's items replaced by other target items: what pretraining must not read."""
    target = enc.target_items
    for name in ("support", "valid_support"):
        enc = _with_table(
            enc,
            name,
            lambda r: Interactions(r.user, target[(r.item + 7) % len(target)], r.rating, r.ts),
        )
    return enc


@pytest.mark.parametrize("name", ["mf-target", "protonet", "maml"])
def test_pretraining_never_sees_the_support(name, monkeypatch):
    monkeypatch.setenv("COLDBENCH_PRETRAIN_CACHE", "0")
    states = []
    for enc in (task_l(3), _garbage_support(task_l(3))):
        method = load_method(name)(config_of(name), 0)
        method.pretrain(harness.make_view(enc, harness.budget_of(enc.spec, 10**4), time.monotonic() + 60))
        states.append(method.pretrained_state())
    flat = [dict(_flatten(s)) for s in states]
    assert flat[0].keys() == flat[1].keys()
    for key, value in flat[0].items():
        other = flat[1][key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key


def _flatten(state, prefix: str = ""):
    for key, value in state.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value

"""The cold-item harness (families IR, IL): what a ``ColdItemBatch`` holds, and the item metrics it feeds,
checked against plain re-computations from the task's tables."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from benchmark import harness
from benchmark.api import ColdItemBatch
from tests.tiny_tasks import tiny_items


@functools.cache
def task(family: str, k: int = 2) -> harness.EncodedTask:
    return tiny_items(family, k)


def view_of(enc: harness.EncodedTask):
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    return harness.make_view(enc, budget, deadline=float("inf"))


def batches(family: str, support: str | None = "support", query: str = "query") -> list[ColdItemBatch]:
    enc = task(family)
    out = []
    for batch, *_ in harness.cold_batches(enc, view_of(enc), support, query, 0):
        assert isinstance(batch, ColdItemBatch)
        out.append(batch)
    return out


@pytest.mark.parametrize("family", ["IR", "IL"])
def test_a_cold_item_batch_holds_its_support_and_its_support_users_source_history(family: str) -> None:
    enc = task(family)
    sup, qry, train = enc.tables["support"].rows, enc.tables["query"].rows, enc.tables["train"]
    seen_items = []
    for batch in batches(family):
        rows = np.isin(sup.item, batch.items)
        assert sorted(zip(batch.support.user, batch.support.item, strict=True)) == sorted(
            zip(sup.user[rows], sup.item[rows], strict=True)
        )
        assert (np.diff(batch.support.item) >= 0).all()  # sorted by item
        np.testing.assert_array_equal(batch.items[batch.support_of()], batch.support.item)
        np.testing.assert_array_equal(batch.support_users, np.unique(batch.support.user))
        source = np.isin(train.domain, [enc.domains.index(d) for d in enc.spec.source])
        expected = np.isin(train.rows.user, batch.support_users) & source
        assert len(batch.history) == int(expected.sum())
        assert not np.isin(batch.history.item, batch.items).any()  # a cold item has no training row
        seen_items.append(batch.items)
        if family == "IR":
            q = np.isin(qry.item, batch.items)
            assert sorted(zip(batch.query_user, batch.query_item, strict=True)) == sorted(
                zip(qry.user[q], qry.item[q], strict=True)
            )
        else:
            np.testing.assert_array_equal(batch.items, np.unique(qry.item))  # every cold item, every batch
    if family == "IR":  # the rating batches partition the cold items
        np.testing.assert_array_equal(np.sort(np.concatenate(seen_items)), np.unique(qry.item))


@pytest.mark.parametrize("family", ["IR", "IL"])
def test_a_withheld_support_leaves_the_batches_without_support_rows(family: str) -> None:
    for batch in batches(family, support=None, query="valid_query"):
        assert len(batch.support) == 0 and len(batch.support_users) == 0 and len(batch.history) == 0


def test_item_mae_is_the_mean_over_cold_items_of_their_mae() -> None:
    enc = task("IR")
    qry = enc.tables["query"].rows

    def predict(batch: ColdItemBatch) -> np.ndarray:  # errors that differ by user and item
        return 1.0 + (batch.query_user % 3) + 0.5 * (batch.query_item % 2)

    result = harness.evaluate(enc, view_of(enc), predict, "support", "query", 0)
    pred = 1.0 + (qry.user % 3) + 0.5 * (qry.item % 2)
    err = np.abs(pred - qry.rating)
    per_item = {i: err[qry.item == i].mean() for i in np.unique(qry.item)}
    assert result.pooled["item_mae"] == pytest.approx(np.mean(list(per_item.values())))
    assert result.pooled["mae"] == pytest.approx(err.mean())
    assert result.pooled["item_mae"] != pytest.approx(result.pooled["mae"])
    np.testing.assert_array_equal(result.users, np.unique(qry.item))  # the units are the cold items
    np.testing.assert_allclose(result.per_user["item_mae"], [per_item[i] for i in result.users])


def test_item_ranks_count_the_cold_items_scored_at_least_as_high_minus_the_users_support() -> None:
    enc = task("IL")
    sup, qry = enc.tables["support"].rows, enc.tables["query"].rows
    items = np.unique(qry.item)
    weights = (items * 7919) % 13  # a fixed score per cold item, with ties

    def predict(batch: ColdItemBatch) -> np.ndarray:
        return np.tile(((batch.items * 7919) % 13).astype(np.float64), (len(batch.users), 1))

    result = harness.evaluate(enc, view_of(enc), predict, "support", "query", 0, keep_predictions=True)
    ndcg: dict[int, list[float]] = {}
    for user, item in zip(qry.user, qry.item, strict=True):
        excluded = set(sup.item[sup.user == user])
        score = weights[items == item][0]
        rank = sum(1 for i, w in zip(items, weights, strict=True) if i not in excluded and w >= score)
        ndcg.setdefault(int(item), []).append(1 / np.log2(rank + 1) if rank <= 10 else 0.0)
    expected = np.mean([np.mean(v) for v in ndcg.values()])
    assert result.pooled["item_ndcg@10"] == pytest.approx(expected)
    assert result.predictions is not None and len(result.predictions) == len(qry)


def test_a_constant_score_ranks_every_cold_item_last() -> None:
    enc = task("IL")
    result = harness.evaluate(
        enc, view_of(enc), lambda b: np.zeros((len(b.users), len(b.items))), "support", "query", 0
    )
    sup, qry = enc.tables["support"].rows, enc.tables["query"].rows
    items = np.unique(qry.item)
    last = {u: len(items) - np.isin(items, sup.item[sup.user == u]).sum() for u in np.unique(qry.user)}
    reciprocal: dict[int, list[float]] = {}
    for user, item in zip(qry.user, qry.item, strict=True):
        reciprocal.setdefault(int(item), []).append(1.0 / last[user])
    assert result.pooled["item_mrr"] == pytest.approx(np.mean([np.mean(v) for v in reciprocal.values()]))


def test_validation_scores_the_cold_item_families_by_their_rank_metric() -> None:
    enc = task("IR")
    view = view_of(enc)

    def predict(batch: ColdItemBatch) -> np.ndarray:
        return np.full(len(batch.query_item), 4.0)

    pooled = harness.evaluate(enc, view, predict, "valid_support", "valid_query", 0).pooled
    assert view.validate(predict) == -pooled["item_mae"]
    assert view.examples_used == 0  # the support users' history in a cold-item batch is free


def test_each_cold_item_batch_gets_a_generator_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.api import Method

    monkeypatch.setattr(harness, "BATCH_ITEMS", 3)
    method = Method({}, seed=3)
    ir = batches("IR")
    assert len(ir) >= 3
    draws = [method.batch_rng(b).random() for b in ir]
    assert draws == [method.batch_rng(b).random() for b in ir]  # a function of the batch, not of history
    assert len(set(draws)) == len(draws)

"""The shared contract every registered method passes, entry-point methods included.

Parametrized over the registry at collection time: a method is tested the moment its registry line exists.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from benchmark import harness, metrics
from benchmark.api import ColdBatch, Interactions
from benchmark.registry import available, load_method
from benchmark.seeding import seed_everything
from tests.tiny_tasks import tiny_task

CASES = [
    pytest.param(name, family, id=f"{name}-{family}")
    for name in available()
    for family in load_method(name).families
]


@functools.cache
def task(family: str) -> harness.EncodedTask:
    return tiny_task(family)


class Spy:
    """Records everything a view hands out during fit, and every output of predict."""

    def __init__(self, view) -> None:
        self.seen: list[Interactions] = []
        for verb in ("batches", "history", "batch_history"):
            setattr(view, verb, self._wrap(getattr(view, verb)))
        episodes = view.episodes

        def spied_episodes(*args, **kwargs):
            for ep in episodes(*args, **kwargs):
                self.seen.extend([self._globalize(ep.support, ep.users), self._globalize(ep.query, ep.users)])
                yield ep

        view.episodes = spied_episodes
        self._batch_users: np.ndarray | None = None

    @staticmethod
    def _globalize(rows: Interactions, users: np.ndarray) -> Interactions:
        return Interactions(users[rows.user], rows.item, rows.rating, rows.ts)

    def _wrap(self, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if isinstance(out, Interactions):
                users = args[0] if fn.__name__ == "batch_history" else None
                self.seen.append(self._globalize(out, users) if users is not None else out)
                return out
            return self._iterate(out)

        return wrapped

    def _iterate(self, gen):
        for rows in gen:
            self.seen.append(rows)
            yield rows


def run(name: str, family: str, seed: int = 0):
    enc = task(family)
    cls = load_method(name)
    seed_everything(seed, 1)
    budget = harness.budget_of(enc.spec, len(enc.tables["train"].rows))
    view = harness.make_view(enc, budget, deadline=float("inf"))
    spy = Spy(view)
    method = cls(cls.default_config(family), seed, "cpu")
    method.fit(view, budget)
    seen_in_fit = list(spy.seen)
    outputs: list[np.ndarray] = []
    batches: list[ColdBatch] = []

    def predict(batch: ColdBatch) -> np.ndarray:
        out = method.predict(batch)
        outputs.append(np.array(out, copy=True))
        batches.append(batch)
        return out

    evaluation = harness.evaluate(enc, view, predict, "support", "query", budget.adapt_steps)
    return enc, view, budget, seen_in_fit, outputs, batches, evaluation


def leaked(enc: harness.EncodedTask, seen: list[Interactions]) -> bool:
    """Whether anything handed out during fit is a test cold user's target-domain interaction."""
    target = enc.domains.index(enc.spec.target)
    test_users = np.union1d(enc.tables["query"].rows.user, enc.tables["support"].rows.user)
    return any(np.isin(rows.user[enc.item_domain[rows.item] == target], test_users).any() for rows in seen)


def test_the_leak_check_catches_a_view_that_serves_query_rows() -> None:
    enc = task("L")
    train, query = enc.tables["train"], enc.tables["query"]
    leaky_rows = Interactions(
        *(
            np.concatenate([getattr(train.rows, f), getattr(query.rows, f)])
            for f in ("user", "item", "rating", "ts")
        )
    )
    domain = np.concatenate([train.domain, np.full(len(query.rows), enc.domains.index(enc.spec.target))])
    leaky = dataclasses.replace(enc, tables={**enc.tables, "train": harness.EncodedTable(leaky_rows, domain)})
    view = harness.make_view(leaky, harness.budget_of(enc.spec, 10), deadline=float("inf"))
    spy = Spy(view)
    load_method("popularity")({}, 0).fit(view, view.budget)
    assert leaked(enc, spy.seen)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_method_contract(name: str, family: str) -> None:
    enc, view, budget, seen, outputs, batches, evaluation = run(name, family)
    # finite outputs of the right shape
    for out, batch in zip(outputs, batches, strict=True):
        shape = (len(batch.query_item),) if batch.wants_ratings else (len(batch), len(batch.candidates))
        metrics.validate_predictions(out, shape)
    assert np.isfinite(list(evaluation.pooled.values())).all()
    # within budget
    assert view.examples_used <= budget.train_examples
    assert evaluation.adapt_steps_used <= budget.adapt_steps
    # never sees query labels or cold users' target interactions during fit
    assert not leaked(enc, seen), "fit saw a test user's target-domain data"
    # deterministic under a seed
    *_, outputs_again, _, evaluation_again = run(name, family)
    assert len(outputs) == len(outputs_again)
    for a, b in zip(outputs, outputs_again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert evaluation.pooled == evaluation_again.pooled

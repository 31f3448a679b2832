"""The shared contract every registered method passes, entry-point methods included.

Parametrized over the registry at collection time: a method is tested the moment its registry line exists.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from benchmark import harness, metrics, protocols
from benchmark.api import BudgetExceeded, ColdBatch, ColdItemBatch, Interactions, Method
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
    batches: list[ColdBatch | ColdItemBatch] = []

    def predict(batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        out = method.predict(batch)
        outputs.append(np.array(out, copy=True))
        batches.append(batch)
        return out

    evaluation = harness.evaluate(enc, view, predict, "support", "query", budget.adapt_steps)
    return enc, view, budget, seen_in_fit, outputs, batches, evaluation


def leaked(enc: harness.EncodedTask, seen: list[Interactions]) -> bool:
    """Whether anything handed out during fit is a test cold user's target-domain interaction, or in a
    cold-item family any interaction of a test cold item."""
    if protocols.get(enc.spec.family).cold == "items":
        cold = np.union1d(enc.tables["query"].rows.item, enc.tables["support"].rows.item)
        return any(np.isin(rows.item, cold).any() for rows in seen)
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
    view = harness.make_view(leaky, harness.budget_of(enc.spec, len(leaky_rows)), deadline=float("inf"))
    spy = Spy(view)
    load_method("popularity")({}, 0).fit(view, view.budget)
    assert leaked(enc, spy.seen)


@pytest.mark.parametrize(("name", "family"), CASES)
def test_method_contract(name: str, family: str) -> None:
    enc, view, budget, seen, outputs, batches, evaluation = run(name, family)
    # finite outputs of the right shape
    for out, batch in zip(outputs, batches, strict=True):
        shape = (len(batch.query_item),) if batch.wants_ratings else (len(batch.users), len(batch.candidates))
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


# -- what the view charges to the training budget, and what it scores -------------------------------------


def fresh_view(family: str, multiple: float = 5.0):
    enc = task(family)
    n_train = len(enc.tables["train"].rows)
    budget = dataclasses.replace(harness.budget_of(enc.spec, n_train), train_examples=int(multiple * n_train))
    return enc, harness.make_view(enc, budget, deadline=float("inf"))


def test_each_domains_history_is_charged_once_and_the_source_merge_too() -> None:
    enc, view = fresh_view("L")
    rows = {d: view.n_rows(d) for d in enc.domains}
    assert view.examples_used == 0 and sum(rows.values()) == view.n_train  # counting rows is free
    first = view.history("A")
    assert view.examples_used == rows["A"] == len(first)
    assert view.history("A") is first and view.examples_used == rows["A"]  # cached: already held
    view.batch_history(np.arange(5))  # the merge of sources A and B: only B is new
    assert view.examples_used == rows["A"] + rows["B"]
    view.batch_history(np.arange(view.n_users))
    view.history("B")
    assert view.examples_used == rows["A"] + rows["B"]


def test_episodes_charge_the_source_history_they_carry() -> None:
    _, view = fresh_view("L")
    rng = np.random.default_rng(0)
    episodes = list(view.episodes(8, 2, 1, rng))
    handed = sum(len(e.support) + len(e.query) for e in episodes)
    assert view.examples_used == handed + view.n_rows("A") + view.n_rows("B")


def test_cold_batches_are_free_and_a_history_beyond_the_budget_is_refused() -> None:
    enc, view = fresh_view("R")
    harness.evaluate(enc, view, lambda b: np.full(len(b.query_item), 3.0), "support", "query", 0)
    view.validate(lambda b: np.full(len(b.query_item), 3.0))
    assert view.examples_used == 0  # a cold user's own source history is its input, not training data
    source, target = enc.spec.source[0], enc.spec.target
    view.budget = dataclasses.replace(view.budget, train_examples=view.n_rows(target) + 1)
    view.history(target)
    with pytest.raises(BudgetExceeded, match="history"):
        view.batch_history(np.arange(3))
    assert view.examples_used == view.n_rows(target)  # all or nothing: the refused read charged nothing
    assert source not in view._charged


def test_validation_scores_family_r_by_minus_user_mae() -> None:
    enc, view = fresh_view("R")

    def predict(batch: ColdBatch) -> np.ndarray:  # errors that differ per user, so MAE != user MAE
        return 1.0 + (batch.query_user % 3).astype(np.float64)

    pooled = harness.evaluate(enc, view, predict, "valid_support", "valid_query", 0).pooled
    assert pooled["mae"] != pytest.approx(pooled["user_mae"])
    assert view.validate(predict) == -pooled["user_mae"]


class DeclaresFlops(Method):
    def train_flops(self) -> float | None:
        return 1234.0


def test_a_method_may_declare_its_training_flops() -> None:
    assert DeclaresFlops({}, 0).train_flops_estimate(10**6) == 1234.0
    plain = load_method("cmf")(load_method("cmf").default_config("R"), 0)
    assert plain.train_flops() is None
    assert plain.train_flops_estimate(10) == 10 * plain.flops_per_example()

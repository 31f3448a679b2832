"""Tiny synthetic tasks of each family, built with the real split rules, for fast contract tests.

The interactions are synthetic but the path is the real one: canonical table -> split rule -> TaskData ->
``harness.encode``. Users have a latent taste so that learning methods have something to learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark import harness
from tasks.artifact import TaskData, content_digest, split_hash
from tasks.schema import canonical
from tasks.spec import TaskBudget, TaskSpec
from tasks.split import (
    sample_negatives,
    split_item_earliest,
    split_item_ratings,
    split_leave_one_domain_out,
    split_published,
    split_rating_transfer,
)

BUDGET = TaskBudget(train_examples_multiple=5, adapt_steps=5, wall_seconds=120)


def synthetic(domains: tuple[str, ...], explicit: bool, seed: int = 0, n_users: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    taste = rng.normal(size=(n_users, 4))
    frames = []
    for d, domain in enumerate(domains):
        n_items = 25 + 5 * d
        items = rng.normal(size=(n_items, 4))
        affinity = taste @ items.T + rng.normal(scale=0.5, size=(n_users, n_items))
        chosen = np.argsort(-affinity, axis=1)[:, : 8 + d]
        user = np.repeat(np.arange(n_users), chosen.shape[1])
        item = chosen.ravel()
        keep = rng.random(len(user)) < 0.9
        score = affinity[user, item]
        rating = np.clip(np.round(3 + score / (np.abs(score).max() / 2)), 1, 5) if explicit else np.nan
        frames.append(
            pd.DataFrame(
                {
                    "domain": domain,
                    "user": [f"U{u:03d}" for u in user[keep]],
                    "item": [f"{domain}-{i:03d}" for i in item[keep]],
                    "rating": rating[keep] if explicit else np.nan,
                    "ts": rng.integers(1_000_000, 2_000_000, size=int(keep.sum())),
                }
            )
        )
    return canonical(pd.concat(frames, ignore_index=True))


def _spec(
    family: str, source: tuple[str, ...], target: str, k: int, metrics: tuple[str, ...], **kw
) -> TaskSpec:
    return TaskSpec(
        id=f"tiny-{family}",
        family=family,
        dataset="synthetic",
        source=source,
        target=target,
        k=k,
        split_seed=7,
        metrics=metrics,
        budget=BUDGET,
        **kw,
    )


def _encode(spec: TaskSpec, tables: dict[str, pd.DataFrame]) -> harness.EncodedTask:
    content = {name: content_digest(t) for name, t in tables.items()}
    manifest = {"task_id": spec.id, "split_hash": split_hash(spec.id, content), "content": content}
    return harness.encode(TaskData(manifest, tables), spec)


def tiny_l(k: int) -> harness.EncodedTask:
    """The tiny family-L task at K=k: the same data, split seed and pool for every k (one task group)."""
    spec = _spec(
        "L",
        ("A", "B"),
        "C",
        k,
        ("ndcg@10", "hr@10", "recall@10", "mrr"),
        beta=0.3,
        valid_fraction=0.2,
        filters={"min_target": 6, "min_other": 1},
    )
    return _encode(spec, split_leave_one_domain_out(synthetic(("A", "B", "C"), explicit=False), spec))


def tiny_task(family: str) -> harness.EncodedTask:
    if family == "R":
        spec = _spec(
            "R",
            ("A",),
            "B",
            3,
            ("mae", "rmse", "user_mae", "user_rmse"),
            beta=0.3,
            valid_fraction=0.2,
            filters={"pool": 5},
        )
        return _encode(spec, split_rating_transfer(synthetic(("A", "B"), explicit=True), spec))
    if family == "L":
        return tiny_l(3)
    if family in ("IR", "IL"):
        return tiny_items(family, 2)
    spec = _spec(
        "C",
        ("A",),
        "B",
        0,
        ("ndcg@10", "hr@10", "recall@10", "mrr", "sampled_ndcg@10", "sampled_hr@10", "sampled_mrr"),
        filters={"negatives": 10},
    )
    table = synthetic(("A", "B"), explicit=False)
    target, source = table[table["domain"] == "B"], table[table["domain"] == "A"]
    users = np.sort(target["user"].unique())
    cold = set(users[-len(users) // 4 :])
    coin = np.random.default_rng(3).random(len(target)) < 0.5
    is_cold = target["user"].isin(cold).to_numpy()
    parts = {
        "train": target[~is_cold],
        "valid": target[is_cold & coin],
        "test": target[is_cold & ~coin],
    }
    tables = split_published(parts, {"train": source}, spec)
    tables["negatives"] = sample_negatives(tables["query"], target["item"].unique(), target, spec)
    return _encode(spec, tables)


def tiny_items(family: str, k: int) -> harness.EncodedTask:
    """The tiny cold-item task of ``family`` (IR: explicit, one source; IL: implicit, two sources) at K=k."""
    explicit = family == "IR"
    domains = ("A", "B") if explicit else ("A", "B", "C")
    metrics = (
        ("mae", "rmse", "item_mae", "item_rmse") if explicit else ("item_ndcg@10", "item_hr@10", "item_mrr")
    )
    spec = _spec(
        family, domains[:-1], domains[-1], k, metrics, beta=0.3, valid_fraction=0.2, filters={"pool": 3}
    )
    split = split_item_ratings if explicit else split_item_earliest
    return _encode(spec, split(synthetic(domains, explicit=explicit, n_users=120), spec))

"""The leaderboard's cold-item families (IR, IL): per-item files, item-cluster bootstrap, ranks in the rank
metric's direction, accuracy-vs-K curves, and "not applicable" rows for methods that do not declare a family.
"""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.records import (
    BudgetUse,
    Code,
    Env,
    MethodRef,
    RunRecord,
    TaskRef,
    Timing,
    record_path,
    write_record,
)
from leaderboard import statistics, views
from leaderboard.build import load_runs, render, render_text, summarize
from leaderboard.families import unit_column, unit_noun

ITEMS = [f"B{i:05d}" for i in range(120)]
SEEDS = (0, 1, 2)
DIRECTIONS = {
    "IR": {"mae": "lower", "item_mae": "lower", "item_rmse": "lower"},
    "IL": {"item_ndcg@10": "higher", "item_hr@10": "higher"},
    "R": {"mae": "lower", "user_mae": "lower"},
}
COLUMNS = {"IR": ("item_mae", "item_rmse"), "IL": ("item_ndcg@10", "item_hr@10"), "R": ("user_mae",)}
TASKS = {  # task id -> (family, k)
    "I-movies-k1": ("IR", 1),
    "I-movies-k3": ("IR", 3),
    "I-movies-k5": ("IR", 5),
    "I-beauty-k1": ("IL", 1),
    "I-beauty-k3": ("IL", 3),
    "R-b2m-b20-k1": ("R", 1),
}
OFFSETS = {"alpha": 0.0, "beta": 0.001, "gamma": 0.3}  # added in each metric's worse direction


def _record(task_id: str, method: str, seed: int, metrics: dict[str, float], n_units: int) -> RunRecord:
    family, k = TASKS[task_id]
    config = {"dim": 8}
    return RunRecord(
        task=TaskRef(
            id=task_id,
            family=family,
            split_hash="sha256:" + "cd" * 32,
            k=k,
            beta=0.2,
            source=["Books"],
            target="Movies_and_TV",
        ),
        method=MethodRef(
            name=method, config=config, config_hash=sha256(json.dumps(config).encode()).hexdigest()
        ),
        seed=seed,
        status="ok",
        metrics=metrics,
        metric_directions=DIRECTIONS[family],
        n_eval_users=n_units,
        budget=BudgetUse(
            train_examples_limit=1000,
            train_examples_used=900,
            adapt_steps_limit=5,
            adapt_steps_used=0,
            wall_seconds_limit=60.0,
            wall_seconds_used=1.0,
        ),
        timing=Timing(fit=0.5, adapt=0.0, eval=0.1),
        peak_rss_mb=100.0,
        n_params=10,
        train_flops_estimate=1e6,
        env=Env(
            python="3.11.7",
            torch="2.13.0",
            numpy="2.4.6",
            pandas="3.1.1",
            platform="Linux",
            cpu="x86_64",
            threads=1,
            device="cpu",
        ),
        code=Code(version="0.1.0", commit="c" * 40, dirty=False),
        command=f"coldbench run --task {task_id} --method {method} --seed {seed}",
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:01:00Z",
        artifacts={"per_user": f"seed-{seed}.users.parquet"},
    )


def write_run(root: Path, task_id: str, method: str, seed: int, offset: float) -> None:
    """A record and its per-unit file in the runner's layout: an ``item`` column in IR/IL, else ``user``.

    Values: a per-item difficulty shared by every method and seed, plus the method's offset, plus noise.
    """
    family = TASKS[task_id][0]
    units = ITEMS if family != "R" else [f"u{i:03d}" for i in range(50)]
    rng = np.random.default_rng([sorted(TASKS).index(task_id), seed, sum(map(ord, method))])
    base = np.random.default_rng(7).uniform(0.2, 0.8, len(units))
    noise = rng.normal(0.0, 0.1, len(units))
    noise -= noise.mean()  # the mean is the method's offset: alpha leads, beta ties it, gamma is worse
    columns = {}
    for metric in COLUMNS[family]:
        sign = 1.0 if DIRECTIONS[family][metric] == "lower" else -1.0
        columns[metric] = base + sign * offset + noise
    metrics = {m: float(np.mean(v)) for m, v in columns.items()}
    if family == "IR":
        metrics["mae"] = metrics["item_mae"] + 0.01  # pooled: not a per-item mean (no n_query column here)
    record = _record(task_id, method, seed, metrics, len(units))
    path = record_path(root, task_id, method, seed)
    write_record(record, path)
    frame = pd.DataFrame({unit_column(family): units, **columns})
    frame.to_parquet(path.with_name(f"seed-{seed}.users.parquet"))


def _no_ir(name: str) -> bool:
    support = views._support(name)
    return support is not None and "IR" not in support[0] and "IL" not in support[0]


@pytest.fixture(scope="module")
def outsider() -> str:
    """A registered method that declares neither IR nor IL (it runs in R here); skip if every one does."""
    from benchmark.registry import registrations

    names = [n for n in sorted(registrations()) if _no_ir(n) and "R" in views._support(n)[0]]
    if not names:
        pytest.skip("every registered method declares a cold-item family")
    return names[0]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, outsider: str) -> Path:
    root = tmp_path_factory.mktemp("results")
    for task_id in TASKS:
        for method, offset in OFFSETS.items():
            for seed in SEEDS:
                write_run(root, task_id, method, seed, offset)
    for seed in SEEDS:
        write_run(root, "R-b2m-b20-k1", outsider, seed, 0.5)
    return root


@pytest.fixture(scope="module")
def board(results: Path):
    runs, skipped = load_runs(results)
    return summarize(runs, skipped)


def test_the_unit_comes_from_the_family_protocol() -> None:
    assert unit_column("IR") == unit_column("IL") == "item"
    assert unit_column("R") == unit_column("L") == unit_column("C") == "user"
    assert unit_noun("IR") == "cold items" and unit_noun("L") == "users"


def test_loader_keeps_the_item_column(board) -> None:
    run = next(r for r in board.runs if r.record.task.id == "I-movies-k3")
    assert list(run.per_user.columns[:1]) == ["item"] and "user" not in run.per_user.columns
    assert sorted(run.per_user["item"]) == ITEMS


def test_bootstrap_clusters_by_cold_item(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each comparison resamples as many clusters as there are cold items, each with all its seeds."""
    seen: list[tuple[int, int]] = []
    original = statistics.paired_bootstrap

    def spy(diff, cluster=None, **kwargs):
        seen.append((len(diff), len(np.unique(cluster))))
        return original(diff, cluster, **kwargs)

    monkeypatch.setattr(statistics, "paired_bootstrap", spy)
    runs, _ = load_runs(results)
    board = summarize([r for r in runs if r.record.task.id == "I-movies-k1"])
    assert seen == [(len(ITEMS) * len(SEEDS), len(ITEMS))] * 2  # beta and gamma against the leader alpha
    cells = {key[0]: cell for key, cell in board.tasks["I-movies-k1"].cells.items()}
    assert cells["gamma"].rank.difference.n == len(ITEMS) * len(SEEDS)


def test_item_cluster_interval_is_the_hand_computed_one(board, results: Path) -> None:
    runs, _ = load_runs(results)
    cells = board.tasks["I-movies-k5"].cells
    leader = next(k[0] for k, c in cells.items() if c.rank.leader)
    frames = {}
    for method in (leader, "gamma"):
        ok = [r for r in runs if r.record.task.id == "I-movies-k5" and r.record.method.name == method]
        frames[method] = pd.concat(
            [
                pd.DataFrame(
                    {"item": r.per_user["item"], "seed": r.record.seed, "value": r.per_user["item_mae"]}
                )
                for r in ok
            ]
        )
    diff, cluster = statistics.paired_user_differences(frames["gamma"], frames[leader], unit="item")
    assert cluster.max() + 1 == len(ITEMS)
    expected = statistics.paired_bootstrap(diff, cluster)
    got = next(c for k, c in cells.items() if k[0] == "gamma").rank.difference
    assert got == expected


def test_ranks_follow_the_rank_metric_direction(board) -> None:
    ir = board.tasks["I-movies-k3"]
    assert ir.rank_metric == "item_mae" and ir.directions["item_mae"] == "lower"
    means = {key[0]: cell.metrics["item_mae"].mean for key, cell in ir.cells.items()}
    ranks = {key[0]: cell.rank for key, cell in ir.cells.items()}
    assert means["alpha"] < means["gamma"]  # lower is better: alpha leads
    assert ranks["alpha"].leader and ranks["beta"].tied and ranks["gamma"].rank == 3
    il = board.tasks["I-beauty-k1"]
    assert il.rank_metric == "item_ndcg@10" and il.directions["item_ndcg@10"] == "higher"
    assert {key[0]: cell.rank.rank for key, cell in il.cells.items()} == {"alpha": 1, "beta": 1, "gamma": 3}
    assert board.family_tasks["IR"] == ("I-movies-k1", "I-movies-k3", "I-movies-k5")
    assert {k[0]: v for k, v in board.average_ranks["IR"].items()} == {
        "alpha": 1.0,
        "beta": 1.0,
        "gamma": 3.0,
    }


def test_not_applicable_rows_name_the_method_and_reason(board, outsider: str, monkeypatch) -> None:
    assert views.not_applicable(board, "IR") == [(outsider, views.NO_REASON)]
    assert views.not_applicable(board, "R") == []  # alpha, beta, gamma are not installed: not listed
    reason = "It models users, not new items."
    real = views._support

    def support(name: str):
        found = real(name)
        return None if found is None else (found[0], {"IR": reason} if name == outsider else found[1])

    monkeypatch.setattr(views, "_support", support)
    files = render(board)
    md = files["LEADERBOARD.md"]
    ir = md[md.index("## Family IR") : md.index("## Family IL")]
    assert f"| {outsider} | not applicable | {reason} |" in ir
    il = md[md.index("## Family IL") :]
    assert f"| {outsider} | not applicable | {views.NO_REASON} |" in il
    assert "Not applicable to family IR" in files["index.html"] and reason in files["index.html"]
    assert f"{outsider}: {reason}" in render_text(board, family="IR")


def test_item_sections_rank_curve_and_name_the_unit(board) -> None:
    files = render(board)
    md = files["LEADERBOARD.md"]
    ir = md[md.index("## Family IR") : md.index("## Family IL")]
    assert "item\\_mae (lower is better), ranked:" in ir
    assert "mae (lower is better), reported, not ranked:" in ir
    assert "### Accuracy vs K:" in ir and "| Method | K=1 | K=3 | K=5 |" in ir
    assert "the unit is the cold item" in ir
    r = md[md.index("## Family R") : md.index("## Family IR")]
    assert "cold item" not in r
    index = files["index.html"]
    assert 'id="family-IR"' in index and 'id="family-IL"' in index
    assert "Accuracy vs K" in index[index.index('id="family-IR"') :]
    task = next(text for name, text in files.items() if "task-I-movies-k3" in name)
    assert "paired (cold item, seed) values" in task and "over cold items resampled" in task
    assert "Eval cold items" in task
    r_task = next(text for name, text in files.items() if "task-R-b2m-b20-k1" in name)
    assert "paired (user, seed) values" in r_task and "Eval users" in r_task
    assert "(cold item, seed) values" in render_text(board, task="I-beauty-k3")

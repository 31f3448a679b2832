"""The runner: records on real tasks, recomputation from saved predictions, and every failure status."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.api import ColdBatch, Method, TrainView
from benchmark.cli import main
from benchmark.records import RecordError, load_record
from benchmark.runner import execute
from tests.tiny_tasks import tiny_task


def cli_run(method: str, task: str, data_dir: Path, out: Path, *extra: str) -> int:
    args = ["run", "--method", method, "--task", task, "--seed", "0", "--data-dir", str(data_dir)]
    return main([*args, "--out", str(out), "--tasks-dir", str(out / "_tasks"), *extra])


def independent_ranking_metrics(ranks: pd.DataFrame) -> dict[str, float]:
    """NDCG@10, HR@10, recall@10 and MRR from saved query ranks, written without benchmark.metrics."""
    rows = []
    for _, group in ranks.groupby("user"):
        r = np.sort(group["rank"].to_numpy())
        hits = r[r <= 10]
        ideal = sum(1 / np.log2(j + 2) for j in range(min(len(r), 10)))
        rows.append(
            {
                "ndcg@10": sum(1 / np.log2(h + 1) for h in hits) / ideal,
                "hr@10": float(len(hits) > 0),
                "recall@10": len(hits) / len(r),
                "mrr": 1 / r[0],
            }
        )
    return pd.DataFrame(rows).mean().to_dict()


def test_popularity_record_matches_recomputation_and_repeats(data_dir: Path, tmp_path: Path) -> None:
    task = "L-beauty-k1"
    for out in (tmp_path / "a", tmp_path / "b"):
        assert cli_run("popularity", task, data_dir, out, "--save-predictions") == 0
    first = load_record(tmp_path / "a" / task / "popularity" / "seed-0.json")
    second = load_record(tmp_path / "b" / task / "popularity" / "seed-0.json")
    assert first.status == "ok" and first.metrics == second.metrics
    assert first.task.split_hash == second.task.split_hash
    ranks = pd.read_parquet(tmp_path / "a" / task / "popularity" / first.artifacts["predictions"])
    assert list(ranks.columns) == ["user", "item", "rank"]
    for name, value in independent_ranking_metrics(ranks).items():
        assert abs(first.metrics[name] - value) < 1e-6, name
    users = pd.read_parquet(tmp_path / "a" / task / "popularity" / first.artifacts["per_user"])
    assert len(users) == first.n_eval_users
    assert abs(users["ndcg@10"].mean() - first.metrics["ndcg@10"]) < 1e-9


def test_item_mean_record_matches_recomputation(data_dir: Path, tmp_path: Path) -> None:
    task = "R-books2movies-b20-k0"
    assert cli_run("item-mean", task, data_dir, tmp_path, "--save-predictions") == 0
    record = load_record(tmp_path / task / "item-mean" / "seed-0.json")
    pred = pd.read_parquet(tmp_path / task / "item-mean" / record.artifacts["predictions"])
    err = pred["prediction"] - pred["rating"]
    assert abs(record.metrics["mae"] - err.abs().mean()) < 1e-6
    assert abs(record.metrics["rmse"] - np.sqrt((err**2).mean())) < 1e-6
    per_user = err.abs().groupby(pred["user"]).mean().mean()
    assert abs(record.metrics["user_mae"] - per_user) < 1e-6
    assert record.metric_directions["mae"] == "lower"
    assert record.budget.train_examples_used <= record.budget.train_examples_limit
    assert record.code.commit and record.env.threads >= 1


class Explodes(Method):
    families = ("R", "L", "C")

    def fit(self, view: TrainView, budget) -> None:
        raise RuntimeError("boom in fit")


class ReturnsNaN(Method):
    families = ("R", "L", "C")

    def fit(self, view: TrainView, budget) -> None:
        pass

    def predict(self, batch: ColdBatch) -> np.ndarray:
        n = len(batch.query_item) if batch.wants_ratings else len(batch) * len(batch.candidates)
        out = np.zeros(n)
        out[0] = np.nan
        return out if batch.wants_ratings else out.reshape(len(batch), -1)


class Greedy(Method):
    families = ("R", "L", "C")

    def fit(self, view: TrainView, budget) -> None:
        pass

    def predict(self, batch: ColdBatch) -> np.ndarray:
        batch.spend_adapt_steps(batch.adapt_steps + 1)
        raise AssertionError("unreachable")


class Slow(Method):
    families = ("R", "L", "C")

    def fit(self, view: TrainView, budget) -> None:
        rng = np.random.default_rng(0)
        while True:  # trains until the view stops handing out batches
            if not any(True for _ in view.batches(8, rng)):
                break

    def predict(self, batch: ColdBatch) -> np.ndarray:
        return (
            np.zeros(len(batch.query_item))
            if batch.wants_ratings
            else np.zeros((len(batch), len(batch.candidates)))
        )


@pytest.mark.parametrize(
    ("cls", "status", "message"),
    [
        (Explodes, "failed", "boom in fit"),
        (ReturnsNaN, "failed", "non-finite"),
        (Greedy, "over_budget", "adaptation steps"),
    ],
)
def test_failures_become_statuses(cls: type[Method], status: str, message: str) -> None:
    outcome = execute(tiny_task("R"), cls, {}, 0)
    assert outcome.status == status
    assert message in outcome.error
    assert outcome.evaluation is None


def test_wall_clock_ceiling_gives_timeout() -> None:
    enc = tiny_task("L")
    spec = dataclasses.replace(
        enc.spec, budget=dataclasses.replace(enc.spec.budget, wall_seconds=0.2, train_examples_multiple=1e9)
    )
    outcome = execute(dataclasses.replace(enc, spec=spec), Slow, {}, 0)
    assert outcome.status == "timeout"
    assert outcome.view.timed_out


def test_example_budget_stops_the_view() -> None:
    outcome = execute(tiny_task("L"), Slow, {}, 0)
    assert outcome.status == "ok"
    assert outcome.view.examples_used == outcome.budget.train_examples


def test_a_failing_method_writes_a_failed_record_and_exits_nonzero(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(__import__("methods").REGISTRY, "explodes", "tests.test_runner:Explodes")
    assert cli_run("explodes", "R-books2movies-b20-k0", data_dir, tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed" in err[0] and "boom in fit" in err[0]
    record = load_record(tmp_path / "R-books2movies-b20-k0" / "explodes" / "seed-0.json")
    assert record.status == "failed" and "boom in fit" in record.error and record.metrics == {}


def test_tampered_or_incomplete_records_are_refused(data_dir: Path, tmp_path: Path) -> None:
    assert cli_run("item-mean", "R-books2movies-b20-k1", data_dir, tmp_path) == 0
    path = tmp_path / "R-books2movies-b20-k1" / "item-mean" / "seed-0.json"
    data = json.loads(path.read_text())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "status": "great"}))
    with pytest.raises(RecordError, match="status"):
        load_record(bad)
    bad.write_text(json.dumps({k: v for k, v in data.items() if k != "task"}))
    with pytest.raises(RecordError, match="task"):
        load_record(bad)
    bad.write_text(path.read_text()[:100])
    with pytest.raises(RecordError, match="not a readable JSON"):
        load_record(bad)
    assert not list(path.parent.glob(".*.tmp"))

"""The runner: records on real tasks, recomputation from saved predictions, and every failure status."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter, OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import harness, runner
from benchmark.api import ColdBatch, Method, TrainView
from benchmark.cli import main
from benchmark.records import RecordError, load_record
from benchmark.registry import available, load_method
from benchmark.runner import execute
from benchmark.seeding import available_cpus, seed_everything, threads_per_worker
from tasks import artifact
from tasks.artifact import TaskData
from tasks.spec import TaskSpec
from tasks.split import POOL
from tests import tiny_tasks
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


def tiny_tables(family: str, monkeypatch: pytest.MonkeyPatch) -> tuple[TaskSpec, dict[str, pd.DataFrame]]:
    """The spec and tables a tiny task is encoded from."""
    seen: dict = {}

    def capture(spec: TaskSpec, tables: dict[str, pd.DataFrame]) -> None:
        seen.update(spec=spec, tables=tables)

    monkeypatch.setattr(tiny_tasks, "_encode", capture)
    tiny_tasks.tiny_task(family)
    monkeypatch.undo()
    return seen["spec"], seen["tables"]


@pytest.mark.parametrize("family", ["R", "L", "C"])
def test_encode_sorts_users_by_id_and_items_by_domain_then_id(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, tables = tiny_tables(family, monkeypatch)
    enc = harness.encode(TaskData({"split_hash": "x"}, tables), spec)
    frames = [t for n, t in tables.items() if n != "negatives"]
    everything = pd.concat(frames)
    assert list(enc.users) == sorted(everything["user"].unique())
    order = {d: i for i, d in enumerate(enc.domains)}
    pairs = sorted({(order[d], i) for d, i in zip(everything["domain"], everything["item"], strict=True)})
    assert list(enc.items) == [i for _, i in pairs]
    assert list(enc.item_domain) == [d for d, _ in pairs]
    assert POOL not in enc.tables  # it widens the universe only; no method or metric reads it
    for name, frame in tables.items():
        if name in ("negatives", POOL):
            continue
        rows = enc.tables[name].rows
        assert rows.user.dtype == rows.item.dtype == np.int64
        assert list(enc.users[rows.user]) == list(frame["user"])
        assert list(enc.items[rows.item]) == list(frame["item"])
    if family == "C":
        neg = tables["negatives"]["negatives"]
        assert [list(enc.items[r]) for r in enc.negatives] == [list(r) for r in neg]


def test_encode_reads_negatives_as_ids_or_as_target_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    spec, tables = tiny_tables("C", monkeypatch)
    by_id = harness.encode(TaskData({"split_hash": "x"}, tables), spec)
    target = by_id.target_items
    positions = np.searchsorted(by_id.items[target], np.stack(tables["negatives"]["negatives"].to_numpy()))
    as_ints = tables["negatives"].assign(negatives=[row.astype(np.int32) for row in positions])
    by_position = harness.encode(TaskData({"split_hash": "x"}, {**tables, "negatives": as_ints}), spec)
    assert by_position.negatives.dtype == np.int64
    assert np.array_equal(by_position.negatives, by_id.negatives)


def test_a_task_is_loaded_and_encoded_once_per_process(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter = Counter()
    for module, name in ((artifact, "load"), (artifact, "build"), (harness, "encode")):
        original = getattr(module, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    monkeypatch.setattr(runner, "_TASKS", OrderedDict())
    tasks = tmp_path / "tasks"
    task = "R-books2movies-b20-k1"
    first = runner.run_cell(task, "item-mean", 0, data_dir, tmp_path / "out", tasks_dir=tasks)
    assert calls == {"build": 1, "load": 1, "encode": 1}
    split_hash = first.record.task.split_hash
    for method, seed in (("global-mean", 0), ("item-mean", 1)):  # bench passes the hash: no build, no load
        result = runner.run_cell(
            task, method, seed, data_dir, tmp_path / "out", tasks_dir=tasks, split_hash=split_hash
        )
        assert result.record.status == "ok" and result.record.task.split_hash == split_hash
    assert calls == {"build": 1, "load": 1, "encode": 1}
    with pytest.raises(ValueError, match="split hash"):  # a rebuilt artifact is never taken for another
        runner.run_cell(
            task, "item-mean", 2, data_dir, tmp_path / "out", tasks_dir=tasks, split_hash="0" * 64
        )
    assert len(runner._TASKS) <= runner.TASK_CACHE_SIZE


def test_seeding_is_deterministic_without_importing_dynamo() -> None:
    script = (
        "import sys, torch\n"
        "from benchmark.seeding import seed_everything\n"
        "seed_everything(0)\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "assert 'torch._dynamo' not in sys.modules, 'seeding imported torch._dynamo'\n"
        "import torch._inductor.config as inductor\n"
        "assert inductor.deterministic\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_DETERMINISTIC"}
    subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[1], env=env
    )


def test_threads_never_exceed_the_cpus() -> None:
    cpus = available_cpus()
    assert seed_everything(0, 10_000) == cpus
    assert threads_per_worker(jobs=cpus, requested=8) == 1
    assert threads_per_worker(jobs=1, requested=10_000) == cpus
    assert threads_per_worker(jobs=10_000, requested=2) == 1
    seed_everything(0, 1)


def fingerprint(enc: harness.EncodedTask) -> str:
    digest = hashlib.sha256()
    negatives = enc.negatives if enc.negatives is not None else np.zeros(0)
    arrays = [enc.users, enc.items, enc.item_domain, negatives]
    for table in enc.tables.values():
        arrays += [table.domain, table.rows.user, table.rows.item, table.rows.rating, table.rows.ts]
    for array in arrays:
        digest.update(array.astype(str).tobytes() if array.dtype == object else array.tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("family", ["R", "L", "C"])
def test_no_method_writes_to_the_shared_encoded_task(family: str) -> None:
    """A worker reuses one encoded task for every method and seed, so none may modify it."""
    enc = tiny_task(family)
    before = fingerprint(enc)
    for name in available():
        cls = load_method(name)
        if family in cls.families:
            seed_everything(0, 1)
            outcome = execute(enc, cls, cls.default_config(family), 0)
            assert fingerprint(enc) == before, f"{name} modified the encoded task"
            assert outcome.status == "ok", (name, outcome.error)


def test_record_identity_keeps_standard_set_and_tuned_configs_apart(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task, method, configuration, seed: a ``--set`` run gets its own record, never the standard one's."""
    from benchmark import tuning

    task, method = "R-books2movies-b20-k0", "bias-transfer"
    (tmp_path / "tuned").mkdir()  # no tuned file at first: the standard configuration is the TOML default
    monkeypatch.setenv(tuning.TUNED_ENV, str(tmp_path / "tuned"))
    assert cli_run(method, task, data_dir, tmp_path) == 0
    standard = load_record(tmp_path / task / method / "seed-0.json")
    default = json.dumps(standard.method.config["lambda_cold"]).replace(" ", "")
    assert cli_run(method, task, data_dir, tmp_path, "--set", "lambda_cold=[1.0]") == 0
    assert cli_run(method, task, data_dir, tmp_path, "--set", f"lambda_cold={default}") == 0  # the default
    folders = sorted(p.name for p in (tmp_path / task).iterdir() if p.name.startswith(method))
    assert len(folders) == 2 and folders[1].startswith(f"{method}@set-")
    other = load_record(tmp_path / task / folders[1] / "seed-0.json")
    again = load_record(tmp_path / task / method / "seed-0.json")  # rewritten by the third run
    assert standard.method.variant == again.method.variant == ""
    assert (again.method.config_hash, again.metrics) == (standard.method.config_hash, standard.metrics)
    assert other.method.variant == folders[1].split("@")[1] == f"set-{other.method.config_hash[:12]}"
    assert other.method.config["lambda_cold"] == [1.0] and other.metrics != standard.metrics

    group = tuning.group_of(task)  # a tuned group: its winner becomes the standard configuration
    entry = {"complete": True, "config": {"lambda_cold": [1.0]}, "trials": [{"status": "ok"}] * 8}
    tuned_file = {"groups": {group.name: entry}}
    (tmp_path / "tuned" / f"{method}.toml").write_text(tuning.dumps(tuned_file))
    assert cli_run(method, task, data_dir, tmp_path) == 0
    tuned = load_record(tmp_path / task / method / "seed-0.json")
    assert tuned.method.variant == "" and tuned.method.trials == 8
    assert tuned.method.config_hash == other.method.config_hash and tuned.metrics == other.metrics

    # tuning that keeps a record's configuration re-stamps its trials instead of running the cell again
    from benchmark.bench import DoneCheck
    from benchmark.suite import Cell

    entry["trials"] = [{"status": "ok"}] * 5
    (tmp_path / "tuned" / f"{method}.toml").write_text(tuning.dumps(tuned_file))
    done = DoneCheck(tmp_path, runner.code_info(), retry_failed=False)
    assert done(Cell(task, method, 0), tuned.task.split_hash)
    restamped = load_record(tmp_path / task / method / "seed-0.json")
    assert restamped.method.trials == 5 and restamped.metrics == tuned.metrics

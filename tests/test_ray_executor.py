"""``--executor ray``: the same records as the process executor, a dead worker's cell retried once, the
wall-clock ceiling enforced, and a clear error naming the extra where Ray is missing.

The Ray tests start a local Ray instance (``tox -e ray`` installs the ``coldbench[ray]`` extra); they are
skipped, with the reason, where ``ray`` is not importable.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.api import Budget, TrainView
from benchmark.bench import LOCK_NAME, run_suite
from benchmark.cli import main
from benchmark.executors import Interrupted
from benchmark.records import RunRecord, iter_records, load_record, record_path
from benchmark.suite import Suite
from tests import faultworld
from tests.test_bench import write_suite

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed: install the coldbench[ray] extra (tox -e ray does)",
)

FLOORS = ("global-mean", "item-mean", "popularity", "random")
SMALL = Suite("small-ray", (0,), ("R-books2movies-b20-k1", "L-beauty-k1"), FLOORS)
WALL = 4.0  # the tiny tasks' wall-clock ceiling
MARKERS = "COLDBENCH_TEST_MARKERS"  # a folder where the methods below count their attempts (forwarded)


def _attempt(name: str) -> int:
    """Count one more attempt of ``name`` (a file line per attempt); the count so far."""
    path = Path(os.environ[MARKERS]) / name
    with path.open("a") as out:
        out.write("attempt\n")
    return len(path.read_text().splitlines())


class DiesOnce(faultworld._Hostile):
    """Its worker dies on the first attempt only: the retry must give an ok record."""

    def fit(self, view: TrainView, budget: Budget) -> None:
        if _attempt("dies-once") == 1:
            os._exit(9)


class DiesAlways(faultworld._Hostile):
    """Its worker dies on every attempt: one retry, then the cell is recorded as failed."""

    def fit(self, view: TrainView, budget: Budget) -> None:
        _attempt("dies-always")
        os._exit(9)


MINE = {"dies-once": f"{__name__}:DiesOnce", "dies-always": f"{__name__}:DiesAlways"}


def identity(results: Path) -> dict[str, tuple]:
    """What must not depend on the executor: each record's outcome and identity (not its timings)."""
    out = {}
    for path in iter_records(results):
        r = load_record(path)
        out[str(path.relative_to(results))] = (
            r.status,
            r.metrics,
            r.task.split_hash,
            r.method.config_hash,
            r.method.config,
            r.seed,
            r.n_eval_users,
            r.validation_score,
            r.budget.train_examples_used,
            r.env.threads,
            r.error,
        )
    return out


def files(results: Path) -> list[str]:
    return sorted(
        str(p.relative_to(results)) for p in results.rglob("*") if p.is_file() and p.name != LOCK_NAME
    )


def test_missing_ray_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from benchmark.ray_executor import RayExecutor, RayMissing

    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now raises ImportError
    with pytest.raises(RayMissing, match=r"coldbench\[ray\]"):
        RayExecutor()
    assert main(["bench", "--executor", "ray", "--results", str(tmp_path / "r"), "--no-leaderboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'coldbench[ray]'" in err[0], err
    assert not (tmp_path / "r").exists()  # refused before any work
    assert main(["bench", "--address", "auto", "--results", str(tmp_path / "r"), "--no-leaderboard"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err


def test_a_signal_inside_a_ray_call_ends_the_bench_as_without_ray() -> None:
    """Ray's C++ wraps what a signal handler raised in SystemError; bench must still see ``Interrupted``."""
    from benchmark.ray_executor import signals_through_ray

    with pytest.raises(Interrupted) as caught, signals_through_ray():
        try:
            raise Interrupted(signal.SIGTERM)
        except Interrupted as exc:
            raise SystemError("<cyfunction CoreWorker.wait> returned a result with an exception set") from exc
    assert caught.value.signum == signal.SIGTERM
    with pytest.raises(SystemError), signals_through_ray():  # any other SystemError is left alone
        raise SystemError("something else")


def test_workers_get_coldbench_settings_and_thread_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.ray_executor import worker_env

    monkeypatch.setenv("COLDBENCH_TUNED", "/somewhere/tuned")
    monkeypatch.setenv("WANDB_API_KEY", "not-forwarded")
    env = worker_env(1)
    assert env["COLDBENCH_TUNED"] == "/somewhere/tuned" and env["OMP_NUM_THREADS"] == "1"
    assert "WANDB_API_KEY" not in env


@needs_ray
@pytest.mark.realdata
def test_ray_records_equal_process_records(data_dir: Path, tmp_path: Path) -> None:
    """Small real cells (floors on an R and an L task) under both executors: equal records and files."""
    tasks = tmp_path / "tasks"
    process = run_suite(SMALL, data_dir, tmp_path / "process", tasks, jobs=2)
    assert process.statuses == {"ok": len(FLOORS)}
    suite_file = write_suite(tmp_path / "small.toml", SMALL)
    folders = ["--results", str(tmp_path / "ray"), "--tasks-dir", str(tasks), "--data-dir", str(data_dir)]
    code = main(
        [
            "bench",
            "--suite",
            str(suite_file),
            "--executor",
            "ray",
            "--jobs",
            "2",
            *folders,
            "--no-leaderboard",
        ]
    )
    assert code == 0
    assert files(tmp_path / "ray") == files(tmp_path / "process")
    assert identity(tmp_path / "ray") == identity(tmp_path / "process")
    for path in iter_records(tmp_path / "process"):
        users = path.with_name(load_record(path).artifacts["per_user"])
        mirror = tmp_path / "ray" / users.relative_to(tmp_path / "process")
        pd.testing.assert_frame_equal(pd.read_parquet(users), pd.read_parquet(mirror))


@needs_ray
def test_ray_retries_a_dead_worker_once_and_stops_a_hung_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmark.ray_executor import RayExecutor

    for target, name, value in faultworld.patches(tmp_path / "tasks", dict.fromkeys(faultworld.TASKS, WALL)):
        if name == "REGISTRY":
            value = {**value, **MINE}
        monkeypatch.setattr(target, name, value)
    monkeypatch.setenv("COLDBENCH_NO_PROGRESS", "1")
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(MARKERS, str(markers))
    results = tmp_path / "results"
    suite = Suite("tiny", (0,), ("tiny-R",), ("dies-once", "dies-always", "hang", "slow-item-mean"))
    summary = run_suite(suite, tmp_path, results, tmp_path / "tasks", jobs=2, executor=RayExecutor())

    def record(method: str) -> RunRecord:
        return load_record(record_path(results, "tiny-R", method, 0))

    assert summary.statuses == {"ok": 2, "failed": 1, "timeout": 1}, summary.failed
    assert (markers / "dies-once").read_text().count("attempt") == 2  # died, retried, ok
    assert record("dies-once").status == "ok"
    assert (markers / "dies-always").read_text().count("attempt") == 2  # retried once, not more
    failed = record("dies-always")
    assert failed.status == "failed" and "died again after a retry" in failed.error
    assert "while the method ran" in failed.error
    hung = record("hang")
    assert hung.status == "timeout" and "wall-clock ceiling" in hung.error
    assert hung.budget.wall_seconds_used <= 2 * WALL
    assert record("slow-item-mean").status == "ok"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "running it once more" in line]
    assert len(warnings) == 2, warnings

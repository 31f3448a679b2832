"""bench: only missing cells run, a SIGKILL midway loses nothing, and wandb logs offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.bench import CellJob, chunked, run_suite
from benchmark.protocols import FAMILIES
from benchmark.records import iter_records, load_record
from benchmark.seeding import available_cpus
from benchmark.suite import Suite, cells, load_suite
from tasks.spec import all_specs, get_spec

FLOORS = ("global-mean", "item-mean", "popularity", "random")
SMALL = Suite("small", (0, 1), ("R-books2movies-b20-k1", "L-beauty-k1"), FLOORS)


def write_suite(path: Path, suite: Suite) -> Path:
    tasks = ", ".join(f'"{t}"' for t in suite.tasks)
    methods = ", ".join(f'"{m}"' for m in suite.methods)
    path.write_text(
        f'name = "{suite.name}"\nseeds = {list(suite.seeds)}\ntasks = [{tasks}]\nmethods = [{methods}]\n'
    )
    return path


def metrics_by_cell(results: Path) -> dict[tuple, dict]:
    out = {}
    for path in iter_records(results):
        record = load_record(path)
        out[(record.task.id, record.method.name, record.seed)] = (record.status, record.metrics)
    return out


def test_suites_expand_to_supported_cells() -> None:
    quick = load_suite("quick")
    assert quick.seeds == (0,)
    assert sorted(get_spec(t).family for t in quick.tasks) == sorted(FAMILIES)  # one task per family
    standard = load_suite("standard")
    assert standard.seeds == (0, 1, 2) and set(standard.tasks) == set(all_specs())
    grid = cells(SMALL)
    assert len(grid) == 2 * 2 * 2  # R: global-mean, item-mean; L: popularity, random; two seeds
    assert all((c.task.startswith("R")) == (c.method in ("global-mean", "item-mean")) for c in grid)


def test_second_run_only_runs_missing_cells(data_dir: Path, tmp_path: Path) -> None:
    results, tasks = tmp_path / "results", tmp_path / "tasks"
    first = run_suite(SMALL, data_dir, results, tasks, jobs=1)
    assert first.statuses["ok"] == 8 and first.skipped == 0
    victim = results / "L-beauty-k1" / "random" / "seed-1.json"
    victim.unlink()
    second = run_suite(SMALL, data_dir, results, tasks, jobs=1)
    assert second.skipped == 7 and second.statuses["ok"] == 1
    assert victim.is_file()


def test_sigkill_midway_then_restart_matches_an_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    suite_file = write_suite(tmp_path / "small.toml", SMALL)
    env = {**os.environ, "COLDBENCH_NO_PROGRESS": "1", "COLDBENCH_CACHE": str(tmp_path / "cache")}

    def bench(results: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "benchmark.cli",
            "bench",
            "--suite",
            str(suite_file),
            "--jobs",
            "2",
            "--results",
            str(results),
            "--no-leaderboard",
            "--data-dir",
            str(data_dir),
        ]

    reference = tmp_path / "reference"
    subprocess.run(bench(reference), env=env, check=True, capture_output=True)

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        bench(interrupted),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(iter_records(interrupted)) < 2:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the bench and its workers, mid-suite
    proc.wait()
    partial = len(iter_records(interrupted))
    assert 2 <= partial < 8, "the kill should land midway"
    for path in iter_records(interrupted):
        load_record(path)  # every record present is complete and valid
    subprocess.run(bench(interrupted), env=env, check=True, capture_output=True)
    assert not list(interrupted.glob("**/.*.tmp"))
    assert metrics_by_cell(interrupted) == metrics_by_cell(reference)


def test_wandb_offline_logs_each_run(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    from benchmark.tracking import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb-dir").mkdir()
    suite = Suite("one", (0,), ("L-beauty-k1",), ("popularity",))
    run_suite(
        suite,
        data_dir,
        tmp_path / "results",
        tmp_path / "tasks",
        jobs=1,
        on_record=WandbLogger("coldbench-test"),
    )
    runs = list((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logs = list(runs[0].glob("*.wandb"))
    assert len(logs) == 1
    raw = logs[0].read_bytes()  # wandb's offline log: protobuf records with the keys and JSON values as text
    record = load_record(tmp_path / "results" / "L-beauty-k1" / "popularity" / "seed-0.json")
    assert b"L-beauty-k1/popularity/seed-0" in raw
    assert b"metric/ndcg@10" in raw and json.dumps(record.metrics["ndcg@10"]).encode() in raw
    assert b"cost/fit_seconds" in raw


def test_bench_cli_builds_the_site_and_the_markdown_copy(data_dir: Path, tmp_path: Path) -> None:
    from benchmark.cli import main

    suite_file = write_suite(
        tmp_path / "one.toml", Suite("one", (0,), ("R-books2movies-b20-k1",), ("item-mean",))
    )
    site, markdown = tmp_path / "site", tmp_path / "copy" / "LEADERBOARD.md"
    code = main(
        [
            "bench",
            "--suite",
            str(suite_file),
            "--jobs",
            "1",
            "--results",
            str(tmp_path / "results"),
            "--site",
            str(site),
            "--markdown",
            str(markdown),
            "--data-dir",
            str(data_dir),
        ]
    )
    assert code == 0
    assert (site / "index.html").is_file()
    assert markdown.read_bytes() == (site / "LEADERBOARD.md").read_bytes()
    assert "item-mean" in markdown.read_text()


def test_cells_come_seed_first_and_chunk_by_task(tmp_path: Path) -> None:
    grid = cells(SMALL)
    assert [c.seed for c in grid] == sorted(c.seed for c in grid)
    jobs = [CellJob(c, tmp_path, tmp_path, tmp_path) for c in grid]
    chunks = chunked(jobs, workers=2)
    assert [j for chunk in chunks for j in chunk] == jobs  # order kept
    assert all(len({(j.cell.seed, j.cell.task) for j in chunk}) == 1 for chunk in chunks)
    assert len(chunks) == 4  # one per (seed, task): 2 cells each
    assert len(chunked(jobs[:4], workers=2)) == 4  # too few tasks to keep both workers busy: split
    assert all(len(chunk) == 1 for chunk in chunked(jobs, workers=1))  # in-process: per-cell progress


def test_bench_runs_git_once_and_caps_jobs_times_threads(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark import runner

    git_calls = []
    real_run = subprocess.run

    def counting_run(args, *a, **kw):
        git_calls.append(args)
        return real_run(args, *a, **kw)

    monkeypatch.setattr(runner.subprocess, "run", counting_run)
    runner.code_info.cache_clear()
    monkeypatch.setenv("COLDBENCH_THREADS", "64")
    suite = Suite("one", (0, 1), ("R-books2movies-b20-k1",), ("global-mean", "item-mean"))
    summary = run_suite(suite, data_dir, tmp_path / "results", tmp_path / "tasks", jobs=1)
    assert summary.statuses["ok"] == 4
    assert len(git_calls) == 2  # rev-parse and status, once for the whole suite
    assert summary.jobs * summary.threads <= available_cpus()
    threads = {load_record(p).env.threads for p in iter_records(tmp_path / "results")}
    assert threads == {summary.threads}
    runner.code_info.cache_clear()

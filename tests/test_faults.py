"""Faults (issue 14): a method cannot hang or end the suite; caches, records and manifests are verified;
every bad input gets one line naming the file, field or cell.

Everything runs on tiny tasks written as real artifacts (``tests/faultworld.py``), no Amazon data. Timing
assertions are generous bounds only (a hung method ends within 2x its ceiling).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import tasks.cache
from benchmark import harness, runner
from benchmark.bench import DoneCheck, clean_partial_files, results_lock, run_suite, split_methods
from benchmark.cli import build_parser, main
from benchmark.records import RecordError, RunRecord, iter_records, load_record, record_path
from benchmark.registry import available
from benchmark.seeding import seed_everything
from benchmark.suite import Cell, Suite
from benchmark.verify import check_manifest, derived_metrics, verify_record
from methods.floors import ItemMean, Popularity
from tasks import artifact
from tasks.cache import CacheWarning, cached_table, store_table, write_text_atomic
from tasks.checksums import read_sums
from tasks.schema import ARROW_SCHEMA, DataError, canonical
from tasks.sources import abxi, recbole
from tasks.spec import parse_spec
from tests import faultworld

REPO = Path(__file__).resolve().parents[1]
WALL = 4.0  # the tiny tasks' wall-clock ceiling: a hung method is killed 1.4 s (the grace) past it


@dataclass
class World:
    root: Path
    manifests: dict  # task id -> the artifact manifest

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    def bench(self, *methods: str, jobs: int = 2, tasks: tuple[str, ...] = (), extra: tuple = ()) -> int:
        suite = faultworld.write_suite(self.root / "suite.toml", list(methods), tasks=tasks)
        folders = [
            "--results",
            str(self.results),
            "--tasks-dir",
            str(self.tasks),
            "--data-dir",
            str(self.root),
        ]
        return main(
            ["bench", "--suite", str(suite), *folders, "--no-leaderboard", "--jobs", str(jobs), *extra]
        )

    def record(self, task: str, method: str, seed: int = 0) -> RunRecord:
        return load_record(record_path(self.results, task, method, seed))


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    for target, name, value in faultworld.patches(tmp_path / "tasks", dict.fromkeys(faultworld.TASKS, WALL)):
        monkeypatch.setattr(target, name, value)
    monkeypatch.setenv("COLDBENCH_NO_PROGRESS", "1")
    return World(tmp_path, {t: artifact.verify(tmp_path / "tasks" / t) for t in faultworld.TASKS})


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# --- cell isolation -----------------------------------------------------------------------------------------


HOSTILE = {
    "exits": ("failed", "SystemExit(3) raised inside the method"),
    "interrupts": ("failed", "KeyboardInterrupt raised inside the method"),
    "os-exit": ("failed", "worker process exited with status 7 while the method ran"),
    "self-kill": ("failed", "worker process killed by SIGKILL while the method ran"),
    "hang": ("timeout", "wall-clock ceiling"),
}


def test_hostile_methods_cost_only_their_own_cell(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code = world.bench(*HOSTILE, "slow-item-mean", "slow-popularity", jobs=2)
    lines = error_lines(capsys)
    assert code == 1
    for method, (status, text) in HOSTILE.items():
        record = world.record("tiny-R", method)
        assert record.status == status and text in record.error, (method, record.error)
        assert [line for line in lines if f" {method} seed 0:" in line] == [
            f"coldbench: {status}: tiny-R {method} seed 0: {_first(record.error)}"
        ]
    assert len(lines) == len(HOSTILE)  # one line per failed cell, nothing else
    assert world.record("tiny-R", "hang").budget.wall_seconds_used <= 2 * WALL
    assert world.record("tiny-R", "slow-item-mean").status == "ok"  # innocent cells beside them
    assert world.record("tiny-L", "slow-popularity").status == "ok"


def _first(error: str | None) -> str:
    return (error or "").strip().splitlines()[0]


def test_one_worker_survives_sys_exit_keeps_its_task_cache_and_rerun_reruns(world: World) -> None:
    suite = Suite("tiny", (0, 1), ("tiny-R",), ("exits", "interrupts", "slow-item-mean"))
    first = run_suite(suite, world.root, world.results, world.tasks, jobs=1)
    assert first.statuses == {"failed": 4, "ok": 2} and first.jobs == 1
    assert first.loads == 1  # one worker ran all six cells and loaded the task once
    again = run_suite(suite, world.root, world.results, world.tasks, jobs=1)
    assert again.skipped == 6 and not again.statuses
    forced = run_suite(suite, world.root, world.results, world.tasks, jobs=1, rerun=True)
    assert forced.skipped == 0 and forced.statuses == {"failed": 4, "ok": 2}


def test_sigkill_inside_a_method_with_one_job_costs_only_its_cell(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.bench("self-kill", "slow-item-mean", jobs=1, tasks=("tiny-R",)) == 1
    assert world.record("tiny-R", "self-kill").status == "failed"
    assert world.record("tiny-R", "slow-item-mean").status == "ok"
    assert len(error_lines(capsys)) == 1


def test_run_stops_a_hung_method_at_its_ceiling(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    folders = ["--data-dir", str(world.root), "--tasks-dir", str(world.tasks), "--out", str(world.results)]
    start = time.monotonic()
    assert main(["run", "--method", "hang", "--task", "tiny-R", *folders]) == 1
    assert time.monotonic() - start < 120  # it ends (worker start-up included, on a loaded machine)
    record = world.record("tiny-R", "hang")
    assert record.status == "timeout" and record.budget.wall_seconds_used <= 2 * WALL
    assert error_lines(capsys) == [f"coldbench: timeout: tiny-R hang seed 0: {_first(record.error)}"]


# --- signals and locking ------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _reference_metrics(world_tasks: Path, task: str, cls: type, seed: int) -> dict[str, float]:
    """The metrics of one uninterrupted cell, computed in this process."""
    data = artifact.load(world_tasks / task)
    spec = parse_spec(data.manifest["spec"], task)
    seed_everything(seed, 1)
    outcome = runner.execute(harness.encode(data, spec), cls, cls.default_config(spec.family), seed)
    return {m: float(outcome.evaluation.pooled[m]) for m in spec.metrics}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts worker processes through /proc")
def test_sigterm_stops_every_worker_with_one_line_and_a_restart_completes_identically(tmp_path: Path) -> None:
    faultworld.write_suite(tmp_path / "suite.toml", ["slow-item-mean", "slow-popularity"], seeds=(0, 1, 2))
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLDBENCH_NO_PROGRESS": "1", "FAULTWORLD_SLOW": "1.5"}
    command = [sys.executable, "-m", "tests.faultworld", str(tmp_path)]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    results = tmp_path / "results"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(iter_records(results)) < 2:
        time.sleep(0.1)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # the bench process only, not its group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("coldbench: stopped by SIGTERM: workers stopped;"), err
    assert workers
    end = time.monotonic() + 10
    while time.monotonic() < end and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)], "orphaned workers"
    partial = len(iter_records(results))
    assert 2 <= partial < 6, "the signal should land midway"
    restart = subprocess.run(
        command, cwd=REPO, env={**env, "FAULTWORLD_SLOW": "0"}, capture_output=True, text=True
    )
    assert restart.returncode == 0, restart.stderr
    assert not list(results.glob("**/.*.tmp"))
    for task, method, cls in (
        ("tiny-R", "slow-item-mean", ItemMean),
        ("tiny-L", "slow-popularity", Popularity),
    ):
        for seed in (0, 1, 2):
            record = load_record(record_path(results, task, method, seed))
            assert record.metrics == _reference_metrics(tmp_path / "tasks", task, cls, seed)


def test_a_second_bench_on_the_same_results_stops_at_once_naming_the_holder(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.results.mkdir(parents=True)
    with results_lock(world.results):
        assert world.bench("slow-item-mean") == 2
    (line,) = error_lines(capsys)
    assert f"pid {os.getpid()} on host {socket.gethostname()} since" in line and str(world.results) in line
    assert not iter_records(world.results)


def test_start_up_clean_up_keeps_the_temporary_file_of_a_live_writer(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "task" / "method"
    folder.mkdir(parents=True)
    live = folder / f".seed-0.json.{os.getpid()}.tmp"
    dead = folder / f".seed-1.json.{gone.pid}.tmp"
    for path in (live, dead):
        path.write_text("{")
    assert clean_partial_files(tmp_path) == 1
    assert live.exists() and not dead.exists()


# --- verified caches, records and manifests -------------------------------------------------------------


def _table(rating: float | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"domain": "Movies", "user": ["u1", "u2", "u3"], "item": ["a", "b", "a"], "rating": [1.0, 4.0, 2.0]}
    )
    return canonical(frame.assign(ts=[1, 2, 3], rating=frame["rating"] if rating is None else rating))


def test_a_corrupted_or_truncated_cache_entry_is_detected_and_rebuilt(tmp_path: Path) -> None:
    store_table(tmp_path, "k", _table(), "removed", {"Movies": 0})
    assert cached_table(tmp_path, "k", "removed")[0].equals(_table())
    path = tmp_path / "k.parquet"
    pq.write_table(pa.Table.from_pandas(_table(rating=5.0), schema=ARROW_SCHEMA, preserve_index=False), path)
    with pytest.warns(CacheWarning, match=r"k\.parquet: sha256 differs"):
        assert cached_table(tmp_path, "k", "removed") is None
    store_table(tmp_path, "k", _table(), "removed", {"Movies": 0})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(CacheWarning, match="edited or truncated"):
        assert cached_table(tmp_path, "k", "removed") is None
    assert not path.exists()  # removed, so the next load rebuilds it


def _ok_record(world: World) -> Path:
    manifest = world.manifests["tiny-R"]
    result = runner.run_cell(
        "tiny-R",
        "item-mean",
        0,
        world.root,
        world.results,
        tasks_dir=world.tasks,
        split_hash=manifest["split_hash"],
    )
    assert result.record.status == "ok"
    return result.path


def _edit(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_records_are_verified_against_their_side_files(world: World) -> None:
    path = _ok_record(world)
    record = verify_record(path, world.results)
    users = pd.read_parquet(path.with_name(record.artifacts["per_user"]))
    assert list(users.columns) == ["user", "user_mae", "user_rmse", "n_query"]
    derived = derived_metrics(users, list(record.metrics))
    assert set(derived) == set(record.metrics)  # pooled mae and rmse too, through n_query
    assert all(abs(derived[m] - record.metrics[m]) < 1e-12 for m in derived)
    original = path.read_text()
    _edit(path, lambda d: d["metrics"].update(mae=d["metrics"]["mae"] - 0.01))
    with pytest.raises(RecordError, match=r"seed-0\.json: metric 'mae' is .* but its per-user file gives"):
        verify_record(path, world.results)
    path.write_text(original)
    users.drop(columns="n_query").to_parquet(path.with_name(record.artifacts["per_user"]))
    assert verify_record(path, world.results) == record  # files written before n_query still verify


def test_a_record_counts_as_done_only_if_its_side_files_and_method_code_match(world: World) -> None:
    path = _ok_record(world)
    cell, split = Cell("tiny-R", "item-mean", 0), world.manifests["tiny-R"]["split_hash"]

    def done() -> bool:
        return DoneCheck(world.results, runner.code_info(), retry_failed=False)(cell, split)

    assert done()
    original = path.read_text()
    _edit(path, lambda d: d["method"].update(source_sha256=None, dist=None, dist_version=None))
    assert not done()  # a record that does not name its method's code: nothing shows it is current
    _edit(path, lambda d: d["method"].update(source_sha256="0" * 16))
    assert not done()  # the method's module changed since
    path.write_text(original)
    _edit(path, lambda d: d["method"].update(dist_version="9.9"))
    assert not done()
    path.write_text(original)
    users = path.with_name("seed-0.users.parquet")
    users.write_bytes(users.read_bytes()[:100])
    check = DoneCheck(world.results, runner.code_info(), retry_failed=False)
    assert not check(cell, split)
    assert (
        check.rejected
        and "per-user file 'seed-0.users.parquet' is missing or unreadable" in check.rejected[0]
    )


def test_a_forged_manifest_count_is_refused(world: World) -> None:
    folder = world.tasks / "tiny-R"
    assert check_manifest(folder)["counts"] == world.manifests["tiny-R"]["counts"]
    _edit(folder / "manifest.json", lambda d: d["counts"].update(test_users=999999))
    with pytest.raises(
        DataError, match=r"manifest\.json: counts\.test_users is 999999 but the tables have \d+"
    ):
        check_manifest(folder)


# --- fail before working ------------------------------------------------------------------------------------


def _unwritable(root: Path, how: str) -> Path:
    if how == "under-a-file":
        (root / "blocker").write_text("a file, not a folder")
        return root / "blocker" / "out"
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    folder = root / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("how", ["under-a-file", "read-only"])
@pytest.mark.parametrize("flag", ["--results", "--site", "--tasks-dir", "cache"])
def test_an_unwritable_folder_fails_before_any_cell_runs(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str, how: str
) -> None:
    bad = _unwritable(world.root, how)
    args = {"--results": world.results, "--site": world.root / "site", "--tasks-dir": world.tasks}
    if flag == "cache":
        monkeypatch.setenv("COLDBENCH_CACHE", str(bad))
    else:
        args[flag] = bad
    suite = faultworld.write_suite(world.root / "suite.toml", ["slow-item-mean"])
    argv = ["bench", "--suite", str(suite), "--data-dir", str(world.root), "--jobs", "1"]
    assert main(argv + [str(x) for pair in args.items() for x in pair]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith("coldbench: error: ") and f"{bad} is not writable" in line
    assert not (world.results.is_dir() and iter_records(world.results))


def test_run_checks_its_out_folder_first(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _unwritable(world.root, "under-a-file")
    argv = ["run", "--method", "slow-item-mean", "--task", "tiny-R", "--data-dir", str(world.root)]
    assert main([*argv, "--tasks-dir", str(world.tasks), "--out", str(bad)]) == 2
    assert error_lines(capsys) == [f"coldbench: error: --out folder {bad} is not writable (Not a directory)"]


def test_a_full_disk_leaves_the_previous_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "LEADERBOARD.md"
    target.write_text("the previous board\n")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tasks.cache.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        write_text_atomic(target, "the new board\n" * 1000)
    assert caught.value.filename == str(target)
    assert target.read_text() == "the previous board\n"
    assert [p.name for p in tmp_path.iterdir()] == ["LEADERBOARD.md"]


# --- registry isolation -------------------------------------------------------------------------------------


def _plugin(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution whose module raises RuntimeError at import, and that re-registers a name."""
    (root / "exploding_plugin.py").write_text("raise RuntimeError('plugin exploded at import')\n")
    info = root / "exploding_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exploding_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[coldbench.methods]\nexploding = exploding_plugin:Thing\npopularity = exploding_plugin:Other\n"
    )
    monkeypatch.syspath_prepend(str(root))


def test_a_broken_or_duplicate_plugin_costs_only_its_own_name(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (world.root / "plugins").mkdir()
    _plugin(world.root / "plugins", monkeypatch)
    assert main(["methods", "list"]) == 1
    captured = capsys.readouterr()
    rows = {line.split()[0]: line for line in captured.out.splitlines()}
    assert "BROKEN" in rows["exploding"] and "RuntimeError: plugin exploded at import" in rows["exploding"]
    assert "BROKEN" in rows["popularity"] and "registered twice" in rows["popularity"]
    assert "BROKEN" not in rows["item-mean"] and "BROKEN" not in rows["slow-item-mean"]
    assert len(captured.err.strip().splitlines()) == 2
    loadable, broken = split_methods(Suite("all", (0,), ("tiny-R",), tuple(available())), None)
    assert set(broken) == {"exploding", "popularity"} and "item-mean" in loadable
    assert main(["run", "--method", "exploding", "--task", "tiny-R"]) == 2
    (line,) = error_lines(capsys)
    assert "method 'exploding': cannot load exploding_plugin:Thing (RuntimeError: plugin exploded" in line
    assert world.bench("exploding") == 1  # a suite naming it records a failed cell and goes on
    (line,) = error_lines(capsys)
    assert line.startswith("coldbench: failed: exploding (every cell of the method): method 'exploding'")


# --- command line -------------------------------------------------------------------------------------------


def test_options_are_never_abbreviated() -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "--tasks", "tiny-R"]).tasks == ["tiny-R"]
    assert parser.parse_args(["bench", "--tasks", "tiny-R"]).tasks_dir is None
    for argv in (
        ["bench", "--tasks-d", "x"],
        ["run", "--meth", "item-mean", "--task", "x"],
        ["bench", "--resul", "x"],
    ):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(argv)
        assert caught.value.code == 2


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nosuch=1", "unknown config key(s) ['nosuch'] for this method; known: ['backend', 'lr', 'steps']"),
        ("lr=abc", "config key 'lr' expects a number like its default 0.01, got 'abc'"),
        ("steps=1.5", "config key 'steps' expects an integer like its default 3, got 1.5"),
        ("backend=2", "config key 'backend' expects a string"),
    ],
)
def test_set_keys_must_exist_and_values_must_have_their_type(
    world: World, capsys: pytest.CaptureFixture[str], setting: str, message: str
) -> None:
    argv = ["run", "--method", "tunable", "--task", "tiny-R", "--set", setting, "--data-dir", str(world.root)]
    assert main([*argv, "--tasks-dir", str(world.tasks), "--out", str(world.results)]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith("coldbench: error: ") and message in line
    assert world.bench("tunable", extra=("--set", setting)) == 2
    (line,) = error_lines(capsys)
    assert "--set for method 'tunable'" in line and message in line
    assert not iter_records(world.results)


def test_set_on_a_method_without_configuration_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--method", "item-mean", "--task", "R-books2movies-b20-k1", "--set", "nosuch=1"]) == 2
    (line,) = error_lines(capsys)
    assert "unknown config key(s) ['nosuch']" in line and "takes no configuration" in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nseeds = [0]\ntasks = ["tiny-R"]\n', "missing field 'methods'"),
        ('name = "x"\nseeds = [-1]\ntasks = ["tiny-R"]\nmethods = ["item-mean"]\n', "field 'seeds' must be"),
        ('name = "x"\nseeds = [0\n', "not a readable TOML suite"),
    ],
)
def test_a_bad_suite_file_is_one_line_naming_it(
    world: World, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    suite = world.root / "bad.toml"
    suite.write_text(text)
    assert main(["bench", "--suite", str(suite), "--results", str(world.results), "--no-leaderboard"]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"coldbench: error: {suite}: ") and message in line


def test_a_negative_seed_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["run", "--method", "item-mean", "--task", "x", "--seed", "-1"],
        ["bench", "--seeds", "0", "-1"],
    ):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert "expected an integer >= 0, got -1" in capsys.readouterr().err


def test_bench_takes_tasks_and_seeds(world: World) -> None:
    code = world.bench(
        "tunable", jobs=1, tasks=("tiny-R", "tiny-L"), extra=("--tasks", "tiny-L", "--seeds", "3")
    )
    assert code == 0
    assert [p.relative_to(world.results).as_posix() for p in iter_records(world.results)] == [
        "tiny-L/tunable/seed-3.json"
    ]


# --- data rows and checksums --------------------------------------------------------------------------------


def test_an_empty_user_id_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\nu1\ta\t5\n\tb\t4\n")
    with pytest.raises(DataError, match=r"m\.inter line 3: user_id is missing"):
        recbole.read_inter(path, "Movies")


def test_a_negative_timestamp_is_called_negative(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text('{"A1": 0}')
    (tmp_path / "items.txt").write_text('{"I1": [0, 0]}')
    (tmp_path / "seq.txt").write_text("0 0|100\n0 0|-5\n")
    with pytest.raises(
        DataError, match=r"seq\.txt line 2: timestamp '-5' is not a non-negative integer \(it is negative\)"
    ):
        abxi.read_sequences(tmp_path / "seq.txt", tmp_path / "users.txt", tmp_path / "items.txt", ["Beauty"])
    (tmp_path / "users.txt").write_text('{" ": 0}')
    with pytest.raises(DataError, match=r"users\.txt: key ' ' is an empty ID"):
        abxi.read_sequences(tmp_path / "seq.txt", tmp_path / "users.txt", tmp_path / "items.txt", ["Beauty"])


@pytest.mark.parametrize("entry", ["../outside.txt", "data/../../outside.txt", "/etc/passwd"])
def test_a_checksum_entry_outside_the_data_root_is_refused(tmp_path: Path, entry: str) -> None:
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  ok.txt\n{'0' * 64}  {entry}\n")
    with pytest.raises(DataError, match=rf"SHA256SUMS line 2: path '{entry}' (climbs out|is absolute)"):
        read_sums(tmp_path)

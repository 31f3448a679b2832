"""The page generator: refusal of bad records, ranks and tie marks, escaping, byte-identical output, CLI."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from hashlib import sha256
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import tuning
from benchmark.cli import COMMANDS
from benchmark.commands import leaderboard as command
from benchmark.records import (
    BudgetUse,
    Code,
    Env,
    MethodRef,
    RecordError,
    RunRecord,
    TaskRef,
    Timing,
    record_path,
    write_record,
)
from leaderboard import build as site
from leaderboard import formatting, views
from leaderboard import markdown as md_page
from leaderboard import svg as plots
from leaderboard.build import BuildError, build, load_runs, md, ranking_rows, render, render_text, summarize

EVIL = '<script>alert("x")<!-- <img src=x onerror="alert(1)"> |*_'
USERS = [f"u{i:03d}" for i in range(200)]
SEEDS = (1, 2, 3)
DIRECTIONS = {
    "R": {"mae": "lower", "rmse": "lower", "user_mae": "lower", "user_rmse": "lower"},
    "L": {"ndcg@10": "higher", "hr@10": "higher"},
    "C": {"ndcg@10": "higher", "sampled_ndcg@10": "higher"},
}
# task id -> (family, k, beta)
TASKS = {
    "R-b2m-b20": ("R", 0, 20.0),
    "R-b2m-b20-k1": ("R", 1, 20.0),
    "R-b2m-b20-k3": ("R", 3, 20.0),
    "R-b2m-b20-k5": ("R", 5, 20.0),
    "L-beauty-k1": ("L", 1, None),
    "L-beauty-k3": ("L", 3, None),
    "C-cloth": ("C", 0, None),
    "C-cloth-published": ("C", 0, None),
}
# method -> offset added to the per-user values (in the "worse" direction); beta is within noise of alpha
OFFSETS = {"alpha": 0.0, "beta": 0.001, "gamma": 0.3}


def make_record(
    task_id: str,
    method: str,
    seed: int,
    metrics: dict[str, float],
    status: str = "ok",
    error: str | None = None,
    fit: float = 1.5,
    config: dict | None = None,
) -> RunRecord:
    family, k, beta = TASKS[task_id]
    config = config or {"dim": 8, "lr": 0.01}
    return RunRecord(
        task=TaskRef(
            id=task_id,
            family=family,
            split_hash="sha256:" + "ab" * 32,
            k=k,
            beta=beta,
            source=["Books"],
            target="Movies_and_TV",
        ),
        method=MethodRef(
            name=method,
            config=config,
            config_hash=sha256(json.dumps(config).encode()).hexdigest(),
            paper="https://example.org/paper",
        ),
        seed=seed,
        status=status,
        metrics=metrics,
        metric_directions=DIRECTIONS[family],
        validation_score=0.5,
        n_eval_users=len(USERS),
        budget=BudgetUse(
            train_examples_limit=1000,
            train_examples_used=900,
            adapt_steps_limit=5,
            adapt_steps_used=5,
            wall_seconds_limit=60.0,
            wall_seconds_used=2.0,
        ),
        timing=Timing(fit=fit, adapt=0.1, eval=0.2),
        peak_rss_mb=100.0,
        n_params=1000,
        train_flops_estimate=1e9 * (1 + OFFSETS.get(method, 0.5)),
        env=Env(
            python="3.11.7",
            torch="2.13.0",
            numpy="2.4.6",
            pandas="3.1.1",
            platform="Linux",
            cpu="x86_64",
            threads=2,
            device="cpu",
        ),
        code=Code(version="0.1.0", commit="c" * 40, dirty=False),
        command=f"coldbench run --task {task_id} --method {method} --seed {seed}",
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:01:00Z",
        error=error,
        artifacts={"per_user": f"seed-{seed}.users.parquet"} if status == "ok" else {},
    )


def write_ok_run(
    root: Path, task_id: str, method: str, seed: int, offset: float, config: dict | None = None
) -> RunRecord:
    """Per-user values: a per-user base + the method offset + zero-mean noise, in the runner's layout.

    User-level metrics (``user_mae``, ``ndcg@10``, ...) are the means of their per-user column; pooled ones
    (R's ``mae`` over all ratings, C's ``sampled_ndcg@10`` over test pairs) differ from any per-user mean.
    """
    family = TASKS[task_id][0]
    rng = np.random.default_rng([sorted(TASKS).index(task_id), seed, sum(map(ord, method))])
    base = np.random.default_rng(seed).uniform(0.2, 0.8, len(USERS))
    noise = rng.normal(0.0, 0.2, len(USERS))
    noise -= noise.mean()
    columns = {"R": ("user_mae", "user_rmse"), "L": ("ndcg@10", "hr@10"), "C": ("ndcg@10", "sampled_ndcg@10")}
    per_user = {}
    for metric in columns[family]:
        sign = 1.0 if DIRECTIONS[family][metric] == "lower" else -1.0
        per_user[metric] = base + sign * offset + noise
    metrics = {m: float(np.mean(v)) for m, v in per_user.items()}
    if family == "R":
        metrics |= {"mae": metrics["user_mae"] - 0.01, "rmse": metrics["user_rmse"] + 0.2}
    if family == "C":
        metrics["sampled_ndcg@10"] += 0.2
    record = make_record(task_id, method, seed, metrics, config=config)
    path = record_path(root, task_id, method, seed)
    write_record(record, path)
    pd.DataFrame({"user": USERS, **per_user}).to_parquet(path.with_name(f"seed-{seed}.users.parquet"))
    return record


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for task_id in TASKS:
        for method, offset in OFFSETS.items():
            for seed in SEEDS:
                if (task_id, method, seed) == ("L-beauty-k1", "gamma", 3):
                    continue
                write_ok_run(root, task_id, method, seed, offset)
    write_ok_run(root, "R-b2m-b20-k1", EVIL, 1, 0.1)
    failed = make_record(
        "R-b2m-b20-k1", "delta", 1, {}, status="failed", error="ValueError: NaN in predictions"
    )
    write_record(failed, record_path(root, "R-b2m-b20-k1", "delta", 1))
    over = make_record("L-beauty-k1", "gamma", 3, {}, status="over_budget", error="train examples exhausted")
    write_record(over, record_path(root, "L-beauty-k1", "gamma", 3))
    return root


@pytest.fixture(scope="module")
def board(results: Path):
    runs, skipped = load_runs(results)
    return summarize(runs, skipped)


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_leader_tie_and_rank_follow_the_paired_bootstrap(board) -> None:
    cells = board.tasks["R-b2m-b20-k3"].cells
    ranks = {key[0]: cell.rank for key, cell in cells.items()}
    assert ranks["alpha"].leader and ranks["alpha"].rank == 1
    assert ranks["beta"].tied and ranks["beta"].rank == 1
    assert ranks["beta"].difference.covers(0.0) and ranks["beta"].difference.n == len(USERS) * len(SEEDS)
    assert not ranks["gamma"].tied and ranks["gamma"].rank == 3
    assert ranks["gamma"].difference.low > 0.25  # gamma is 0.3 worse in MAE on every pair


def test_direction_comes_from_the_record(board) -> None:
    # L metrics are higher-is-better: the leader has the highest mean, gamma (0.3 lower) is last
    cells = board.tasks["L-beauty-k3"].cells
    ranks = {key[0]: cell.rank.rank for key, cell in cells.items()}
    assert ranks == {"alpha": 1, "beta": 1, "gamma": 3}
    assert board.tasks["L-beauty-k3"].directions["ndcg@10"] == "higher"


def test_average_rank_only_for_methods_on_every_task(board) -> None:
    averages = {key[0]: value for key, value in board.average_ranks["R"].items()}
    # gamma is third on three tasks and fourth on the one where EVIL (offset 0.1) beats it
    assert averages["alpha"] == 1.0 and averages["beta"] == 1.0 and averages["gamma"] == 3.25
    assert averages[EVIL] is None  # ranked on one of the four R tasks only


def test_cell_shows_mean_and_hand_computed_t_interval(board, results: Path) -> None:
    key = next(k for k in board.tasks["R-b2m-b20-k5"].cells if k[0] == "gamma")
    values = [
        json.loads(record_path(results, "R-b2m-b20-k5", "gamma", s).read_text())["metrics"]["user_mae"]
        for s in SEEDS
    ]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = 4.302653 * sd / math.sqrt(3)
    interval = board.tasks["R-b2m-b20-k5"].cells[key].metrics["user_mae"]
    assert interval.mean == pytest.approx(mean, abs=1e-12)
    assert interval.half_width == pytest.approx(half, rel=1e-6)
    text = render(board)["LEADERBOARD.md"]
    assert f"{mean:.4f} ± {half:.4f} (3)" in text  # ranked user_mae
    assert f"{mean - 0.01:.4f} ± {half:.4f} |" in text  # pooled mae, shown unranked


def test_failed_and_over_budget_runs_are_listed_apart(board) -> None:
    md_text = render(board)["LEADERBOARD.md"]
    left_off = md_text.split("## Runs left off the leaderboard", 1)[1]
    assert "delta" in left_off and "ValueError: NaN in predictions" in left_off
    assert "over\\_budget" in left_off and "train examples exhausted" in left_off
    assert all(key[0] != "delta" for key in board.tasks["R-b2m-b20-k1"].cells)
    gamma = next(c for k, c in board.tasks["L-beauty-k1"].cells.items() if k[0] == "gamma")
    assert len(gamma.ok_runs) == 2 and len(gamma.left_off) == 1  # mean over the two ok seeds, marked ‡
    family_l = md_text.split("## Family L", 1)[1].split("## ", 1)[0]
    assert "‡" in family_l


def test_k_curves_group_k_shot_tasks_of_one_setting(board) -> None:
    files = render(board)
    assert "### Accuracy vs K: Books → Movies\\_and\\_TV, beta 20 (user\\_mae)" in files["LEADERBOARD.md"]
    assert "| Method | K=1 | K=3 | K=5 |" in files["LEADERBOARD.md"]  # the K=0 task is another protocol
    assert files["index.html"].count("<polyline") >= 3


def test_build_twice_is_byte_identical_wherever_the_records_live(results: Path, tmp_path: Path) -> None:
    build(results, tmp_path / "a")
    build(results, tmp_path / "b")
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(results, moved)
    build(moved, tmp_path / "c")
    a, b, c = (read_tree(tmp_path / name) for name in "abc")
    assert a == b == c
    assert {"LEADERBOARD.md", "index.html"} <= set(a)
    assert sum(name.startswith("pages/task-") for name in a) == len(TASKS)


class TagBalance(HTMLParser):
    """Records tags that close out of order: what a name leaking unescaped into the markup would cause."""

    VOID = frozenset({"meta", "br", "line", "circle", "polyline", "img", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.errors.append(f"</{tag}> at {self.getpos()} inside {self.open[-3:]}")


def test_site_is_self_contained(results: Path, tmp_path: Path) -> None:
    build(results, tmp_path)
    for name, data in read_tree(tmp_path).items():
        if not name.endswith(".html"):
            continue
        page = data.decode()
        assert not re.search(r"<\s*(script|link|img|iframe|object|embed|base|form)\b", page, re.IGNORECASE)
        assert "@import" not in page and "url(" not in page and " src=" not in page.replace(" src=x", "")
        assert "Content-Security-Policy" in page
        balance = TagBalance()
        balance.feed(page)
        assert not balance.errors and not balance.open, (name, balance.errors, balance.open)
        for href in re.findall(r'href="([^"]*)"', page):
            if href.startswith("https://example.org"):
                continue  # the paper link on method cards, a plain anchor
            assert "://" not in href and not href.startswith("/")
            assert (tmp_path / name).parent.joinpath(href.split("#")[0] or name.split("/")[-1]).exists(), href


def test_names_from_records_are_escaped(results: Path, tmp_path: Path) -> None:
    build(results, tmp_path)
    tree = read_tree(tmp_path)
    for name, data in tree.items():
        assert EVIL.encode() not in data, name
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;!-- &lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in (
        tree["index.html"].decode()
    )
    assert md(EVIL) in tree["LEADERBOARD.md"].decode()
    assert md("a|b\nc") == "a\\|b c"


def tamper(root: Path, task_id: str, method: str, seed: int, change) -> None:
    target = record_path(root, task_id, method, seed)
    data = json.loads(target.read_text())
    change(data)
    target.write_text(json.dumps(data))


def test_tampered_record_is_refused_with_its_file_named(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    tamper(copy, "R-b2m-b20-k3", "beta", 2, lambda d: d.update(status="great"))
    with pytest.raises(RecordError, match=r"R-b2m-b20-k3/beta/seed-2\.json: field status"):
        build(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing is written when a record is refused


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.pop("timing"), "field timing"),
        (lambda d: d.update(extra_field=1), "field extra_field"),
        (lambda d: d["metrics"].update(mae=float("nan")), "not finite"),
        (lambda d: d["metric_directions"].pop("rmse"), "without a declared direction"),
        (lambda d: d["artifacts"].update(per_user="../../secret.parquet"), "not a plain file name"),
        (lambda d: d["artifacts"].update(per_user="seed-9.users.parquet"), "missing or unreadable"),
        (lambda d: d["artifacts"].clear(), "incomplete record"),
        (lambda d: d.update(seed=7), "stored at"),
        (
            lambda d: d["metrics"].update(user_mae=d["metrics"]["user_mae"] - 0.05),
            "mean of its per-user values",
        ),
    ],
)
def test_incomplete_or_moved_records_are_refused(results: Path, tmp_path: Path, change, reason: str) -> None:
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    tamper(copy, "R-b2m-b20-k3", "alpha", 1, change)
    with pytest.raises(RecordError, match=reason):
        load_runs(copy)


def test_records_outside_the_layout_and_bad_per_user_files_are_refused(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    stray = copy / "R-b2m-b20-k3" / "alpha" / "old" / "seed-1.json"
    stray.parent.mkdir()
    shutil.copy(record_path(copy, "R-b2m-b20-k3", "alpha", 1), stray)
    with pytest.raises(RecordError, match="where records live"):
        load_runs(copy)
    stray.unlink()
    per_user = record_path(copy, "L-beauty-k1", "beta", 2).with_name("seed-2.users.parquet")
    pd.DataFrame({"user": USERS[:-1] + USERS[:1], "ndcg@10": 0.5}).to_parquet(per_user)
    with pytest.raises(RecordError, match="duplicate"):
        load_runs(copy)
    per_user.write_bytes(b"not parquet")
    with pytest.raises(RecordError, match=r"L-beauty-k1/beta/seed-2\.json: per-user file .* unreadable"):
        load_runs(copy)


def test_conflicting_split_hashes_stop_the_build(results: Path, tmp_path: Path) -> None:
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    target = record_path(copy, "C-cloth", "gamma", 2)
    data = json.loads(target.read_text())
    data["task"]["split_hash"] = "sha256:" + "00" * 32
    target.write_text(json.dumps(data))
    runs, _ = load_runs(copy)
    with pytest.raises(BuildError, match="disagree on the task definition"):
        summarize(runs)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="coldbench")
    command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_refuses_with_exit_2_and_skips_with_a_listed_warning(
    results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "leaderboard" in COMMANDS
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    bad = record_path(copy, "C-cloth", "beta", 3)
    bad.write_text(bad.read_text()[:-40])  # truncated JSON
    out = tmp_path / "site"
    assert run_cli("leaderboard", "build", "--results", str(copy), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("coldbench: error: ") and "C-cloth/beta/seed-3.json" in err and "--skip-invalid" in err
    )
    assert not out.exists() or not any(
        out.iterdir()
    )  # --out is proven writable first, but nothing is written
    assert run_cli("leaderboard", "build", "--results", str(copy), "--out", str(out), "--skip-invalid") == 0
    captured = capsys.readouterr()
    assert "skipped invalid record C-cloth/beta/seed-3.json: not a readable JSON record" in captured.err
    page = (out / "LEADERBOARD.md").read_text()
    assert "## Invalid records skipped" in page and "| C-cloth/beta/seed-3.json | not a readable JSON" in page
    cloth = next(
        c
        for k, c in summarize(*load_runs(copy, skip_invalid=True)).tasks["C-cloth"].cells.items()
        if k[0] == "beta"
    )
    assert [r.record.seed for r in cloth.ok_runs] == [1, 2]
    assert run_cli("leaderboard", "build", "--results", str(tmp_path / "none"), "--out", str(out)) == 2


def test_stale_pages_are_removed(results: Path, tmp_path: Path) -> None:
    stale = tmp_path / "pages" / "method-gone-00000000.html"
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    keep = tmp_path / "pages" / "notes.txt"
    keep.write_text("mine")
    result = build(results, tmp_path)
    assert not stale.exists() and keep.exists() and result.removed == ("method-gone-00000000.html",)


def test_one_seed_cells_show_no_interval(tmp_path: Path) -> None:
    write_ok_run(tmp_path, "C-cloth", "alpha", 1, 0.0)
    write_ok_run(tmp_path, "C-cloth", "gamma", 1, 0.3)
    runs, _ = load_runs(tmp_path)
    board = summarize(runs)
    cell = next(c for k, c in board.tasks["C-cloth"].cells.items() if k[0] == "alpha")
    assert not cell.metrics["ndcg@10"].has_interval
    assert f"**{cell.metrics['ndcg@10'].mean:.4f}** (1) |" in render(board)["LEADERBOARD.md"]


def write_variant(root: Path, task_id: str, method: str, seed: int, offset: float, **ref: object) -> None:
    """A run written like ``write_ok_run`` but with other ``MethodRef`` fields (name, variant, config)."""
    scratch = root / ".scratch"
    record = write_ok_run(scratch, task_id, "alpha", seed, offset)
    source = record_path(scratch, task_id, "alpha", seed)
    config = ref.pop("config", record.method.config)
    digest = sha256(json.dumps(config).encode()).hexdigest()
    update = {"name": method, "config": config, "config_hash": digest, **ref}
    record = record.model_copy(update={"method": record.method.model_copy(update=update)})
    path = record_path(root, *record.path_parts)
    write_record(record, path)
    shutil.copy(source.with_name(f"seed-{seed}.users.parquet"), path.with_name(f"seed-{seed}.users.parquet"))
    shutil.rmtree(scratch)


def test_other_configurations_are_reported_apart_and_never_ranked(tmp_path: Path) -> None:
    for seed in (1, 2):
        write_ok_run(tmp_path, "R-b2m-b20-k3", "alpha", seed, 0.3)
        write_ok_run(tmp_path, "R-b2m-b20-k3", "gamma", seed, 0.1)
        write_variant(tmp_path, "R-b2m-b20-k3", "alpha", seed, 0.0, variant="reference", config={"dim": 10})
    write_variant(tmp_path, "R-b2m-b20-k3", "alpha", 1, 0.0, variant="set-0123456789ab", config={"dim": 64})
    assert (tmp_path / "R-b2m-b20-k3" / "alpha@reference" / "seed-2.json").is_file()
    board = summarize(load_runs(tmp_path)[0])
    task = board.tasks["R-b2m-b20-k3"]
    assert sorted(task.cells) == [("alpha", ""), ("gamma", "")]  # the better reference run is not ranked
    assert task.cells[("gamma", "")].rank.rank == 1
    assert sorted(task.others) == [("alpha", "reference"), ("alpha", "set-0123456789ab")]
    assert all(c.rank is None for c in task.others.values())
    assert board.labels[("alpha", "reference")] == "alpha (reference)"
    assert board.labels[("alpha", "set-0123456789ab")] == "alpha @0123456789ab"
    pages = render(board)
    other = pages["LEADERBOARD.md"].split("### Other configurations, reported, not ranked (user\\_mae)")[1]
    assert "| alpha \\(reference\\) |" in other and "| alpha @0123456789ab |" in other
    card = pages[f"pages/{formatting.slug('method', 'alpha')}"]
    assert "as published" in card and "Standard configuration (ranked)" in card


def test_seeds_of_one_entry_with_two_configs_are_refused(tmp_path: Path) -> None:
    write_ok_run(tmp_path, "C-cloth", "alpha", 1, 0.0, config={"dim": 8})
    write_ok_run(tmp_path, "C-cloth", "alpha", 2, 0.0, config={"dim": 64})
    with pytest.raises(BuildError, match="seeds of one entry but ran different configurations"):
        summarize(load_runs(tmp_path)[0])


def test_methods_with_identical_per_user_results_are_named(tmp_path: Path) -> None:
    for seed in (1, 2):
        write_ok_run(tmp_path, "L-beauty-k3", "alpha", seed, 0.0)
        write_ok_run(tmp_path, "L-beauty-k3", "gamma", seed, 0.1)
        write_variant(tmp_path, "L-beauty-k3", "twin", seed, 0.0)  # alpha's per-user values exactly
    board = summarize(load_runs(tmp_path)[0])
    assert board.tasks["L-beauty-k3"].identical == ((("alpha", ""), ("twin", "")),)
    assert "- L-beauty-k3: alpha = twin" in render(board)["LEADERBOARD.md"]


def test_a_task_whose_audit_fails_is_reported_not_ranked(tmp_path: Path) -> None:
    """A published variant with measured leaks appears apart, with its audit figures, and out of the ranks."""
    audit = {
        "passed": False,
        "duplicate_pairs": 790,
        "query_pairs": 3085,
        "query_touched_pairs": 442,
        "query_touched_share": 0.143274,
        "valid_query_touched_share": 0.138783,
        "valid_test_user_overlap": 832,
        "cold_source_after_first_query": None,
        "target_train_after_first_query_median": None,
    }
    for method, offset in (("alpha", 0.0), ("gamma", 0.3)):
        write_ok_run(tmp_path, "C-cloth", method, 1, offset)
        record = write_ok_run(tmp_path, "C-cloth-published", method, 1, -offset)
        leaky = record.model_copy(update={"task": record.task.model_copy(update={"audit": audit})})
        write_record(leaky, record_path(tmp_path, "C-cloth-published", method, 1))
    board = summarize(load_runs(tmp_path)[0])
    assert board.family_tasks["C"] == ("C-cloth",)
    assert not board.tasks["C-cloth-published"].ranked and board.tasks["C-cloth"].ranked
    text = render(board)["LEADERBOARD.md"]
    ranked_part, reported_part = text.split("### Reported, not ranked")
    assert "C-cloth-published" not in ranked_part
    assert r"14.3% of its test pairs \(442 of 3,085\)" in reported_part
    assert "832 of its test users are also validation users" in reported_part
    # gamma leads the leaky task but must not lead the ranked table
    alpha = next(k for k in board.tasks["C-cloth"].cells if k[0] == "alpha")
    assert board.average_ranks["C"][alpha] == 1.0
    page = next(v for k, v in render(board).items() if k.startswith("pages/task") and "published" in k)
    assert "Leak audit" in page and "failed" in page


# -- the researcher's path: terminal view, method cards, plot styles, how-to-read lines ---------------------


def test_twenty_methods_get_twenty_distinct_colour_and_marker_pairs() -> None:
    def look(index: int) -> tuple[str, str]:
        svg = plots._marker(index, 50.0, 50.0, 4)
        shape = re.match(r"<(\w+)", svg).group(1)
        if shape == "polygon":  # triangle, diamond and cross differ in their number of corners
            corners = re.search(r'points="([^"]*)"', svg).group(1).split()
            shape = f"polygon/{len(corners)}"
        return re.search(r'fill="([^"]+)"', svg).group(1), shape

    looks = [look(i) for i in range(20)]
    assert len(set(looks)) == 20
    assert all(looks[i][0] != looks[i + 1][0] and looks[i][1] != looks[i + 1][1] for i in range(19))
    # a scatter of 20 methods draws each legend entry with its own pair
    points = [plots.Point(f"m{i:02d}", i, 10.0 * (i + 1), float(i)) for i in range(20)]
    svg = plots.svg_scatter("t", points, "x", "y")
    assert all(plots._marker(i, plots._W + 19, plots._TOP + 8 + 16 * i, 4) in svg for i in range(20))


def _plain(markdown_cell: str) -> str:
    return markdown_cell.replace("**", "").replace("\\", "")


def test_show_prints_the_numbers_of_the_markdown(
    board, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("leaderboard", "show", "--results", str(results)) == 0
    shown = capsys.readouterr().out
    assert shown == render_text(board)
    markdown = render(board)["LEADERBOARD.md"]
    for family in ("R", "L", "C"):
        ranked = board.family_tasks[family]
        section = shown.split(f"Family {family}: ", 1)[1].split("\nFamily ", 1)[0]
        for key in views.family_entries(board, family):
            line = next(ln for ln in section.splitlines() if ln.startswith(board.labels[key] + " "))
            for task_id in ranked:
                cell = md_page._md_cell(board.tasks[task_id].cells.get(key), site.RANK_METRIC[family], True)
                assert _plain(cell) in line, (key, task_id)
                assert cell in markdown
    assert "C-cloth-published" in shown.split("Reported, not ranked")[-1]


def test_show_one_family_or_one_task(results: Path, board, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("leaderboard", "show", "--results", str(results), "--family", "L") == 0
    out = capsys.readouterr().out
    assert "Family L" in out and "Family R" not in out and "L-beauty-k3" in out
    assert run_cli("leaderboard", "show", "--results", str(results), "--task", "R-b2m-b20-k3") == 0
    out = capsys.readouterr().out
    for _, row in ranking_rows(board, board.tasks["R-b2m-b20-k3"]):
        assert any(all(cell in line for cell in row) for line in out.splitlines()), row
    assert "tied with leader" in out and "[" in out  # the paired difference and its interval
    assert run_cli("leaderboard", "show", "--results", str(results), "--task", "nope") == 2
    assert "no records of task 'nope'" in capsys.readouterr().err
    args = ("--task", "R-b2m-b20-k3", "--family", "L")
    assert run_cli("leaderboard", "show", "--results", str(results), *args) == 2


def test_every_table_says_how_to_read_it(results: Path, tmp_path: Path) -> None:
    build(results, tmp_path)
    for name, data in read_tree(tmp_path).items():
        if not name.endswith(".html"):
            continue
        lines = data.decode().splitlines()
        tables = [i for i, line in enumerate(lines) if line.startswith('<div class="scroll"><table>')]
        assert tables, name
        for i in tables:
            assert lines[i - 1].startswith('<p class="legend how">How to read: '), (name, lines[i - 1])


def test_method_card_shows_summary_defaults_and_tuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered method's card reads its class and the tuned file; an unknown one still builds."""
    TASKS["R-tuned-k3"] = ("R", 3, 20.0)
    try:
        write_ok_run(tmp_path / "results", "R-tuned-k3", "mf-target", 1, 0.0)
        write_ok_run(tmp_path / "results", "R-tuned-k3", "alpha", 1, 0.1)
    finally:
        del TASKS["R-tuned-k3"]
    trials = [
        {"config": {}, "status": "ok", "score": -0.81, "seconds": 1.0},
        {"config": {"lr": 0.03}, "status": "ok", "score": -0.79, "seconds": 1.0},
    ]
    group = {
        "scored_on": "R-tuned-k0",
        "n_trials": 2,
        "complete": True,
        "score": -0.79,
        "config": {"lr": 0.03},
    }
    monkeypatch.setenv(tuning.TUNED_ENV, str(tmp_path / "tuned"))
    tuning.write_tuned(
        "mf-target", {"method": "mf-target", "groups": {"R-tuned": {**group, "trials": trials}}}
    )
    build(tmp_path / "results", tmp_path / "site")
    pages = read_tree(tmp_path / "site")
    card = next(v.decode() for k, v in pages.items() if k.startswith("pages/method-mf-target-"))
    from benchmark.registry import load_method

    cls = load_method("mf-target")
    assert f"<dt>Summary</dt><dd>{formatting.esc(cls.summary)}</dd>" in card
    assert "<dt>Package</dt><dd>coldbench " in card and "<code>R</code>: dim=32" in card
    tuned = card.split("</dl>\n", 1)[1]
    assert tuned.startswith(
        "<h2>Tuning: 2 configurations per task group, validation users or items, seed 0</h2>"
    )
    assert "<td>R-tuned-k0</td><td>2 (2 ok)</td><td>-0.7900</td><td>-0.8100</td><td>lr=0.03</td>" in tuned
    other = next(v.decode() for k, v in pages.items() if k.startswith("pages/method-alpha-"))
    assert "not installed where this page was built" in other and "<h2>Tuning" not in other
    again = tmp_path / "again"
    build(tmp_path / "results", again)
    assert read_tree(again) == pages  # the card's extra inputs keep the build deterministic


def test_method_card_lists_the_deviations_from_the_paper(tmp_path: Path) -> None:
    from methods.ptupcdr import PTUPCDR

    write_ok_run(tmp_path, "R-b2m-b20-k3", "ptupcdr", 1, 0.0)
    card = render(summarize(load_runs(tmp_path)[0]))[f"pages/{formatting.slug('method', 'ptupcdr')}"]
    assert "Deviations from the paper and the official code" in card and len(PTUPCDR.deviations) >= 5
    assert all(formatting.esc(d) in card for d in PTUPCDR.deviations)

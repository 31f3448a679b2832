"""Equal-budget tuning: search spaces, sampler, task groups, the tuned file, no access to test labels."""

from __future__ import annotations

import dataclasses
import functools
import math
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from benchmark import cli, harness, tuning
from benchmark.api import Interactions
from benchmark.registry import load_method
from benchmark.runner import execute, resolve_config
from methods import REGISTRY
from methods.knn import ClassicalMethod
from tasks.spec import all_specs
from tests.tiny_tasks import tiny_task

TUNED = [name for name in REGISTRY if not REGISTRY[name].startswith("methods.floors:")]


@functools.cache
def task(family: str) -> harness.EncodedTask:
    return tiny_task(family)


@pytest.mark.parametrize("name", TUNED)
def test_every_method_but_the_floors_declares_a_search_space(name: str) -> None:
    cls = load_method(name)
    for family in cls.families:
        space = tuning.search_space(cls, family)  # raises on unknown keys or a default not first
        default = cls.default_config(family)
        assert space, f"{name} ({family}): empty [search]"
        # 2-4 values per searched key; one value pins a key of the shared [search] table to this family's
        # default (the cold-item families, whose defaults differ), which the sampler then never moves
        assert all(1 <= len(v) <= 4 for v in space.values()), f"{name}: 1-4 values per key"
        assert sum(len(v) >= 2 for v in space.values()) >= 2, f"{name} ({family}): fewer than 2 searched keys"
        if issubclass(cls, ClassicalMethod):  # in-fit grids: every list pinned to one value per trial
            grids = {k for k, v in default.items() if isinstance(v, list)}
            assert grids <= set(space), f"{name} ({family}): in-fit grids {grids - set(space)} not searched"
            assert all(len(v) == 1 for k in grids for v in space[k]), f"{name}: a grid not pinned"


def test_search_space_refuses_unknown_keys_and_a_default_not_first(monkeypatch: pytest.MonkeyPatch) -> None:
    cls = load_method("mf-target")
    for search, message in [
        ({"nope": [1, 2]}, "not a key"),
        ({"lr": [0.003, 0.01]}, "must be the default"),
        ({"lr": []}, "non-empty"),
        ({"lr": [0.01, 0.01]}, "repeats"),
    ]:
        monkeypatch.setattr(tuning, "_method_tables", lambda _cls, s=search: {"search": s})
        with pytest.raises(ValueError, match=message):
            tuning.search_space(cls, "R")
    monkeypatch.setattr(tuning, "_method_tables", lambda _cls: {"search": {"lr": [0.01], "R": {"dim": [32]}}})
    assert tuning.search_space(cls, "R") == {"lr": [0.01], "dim": [32]}
    assert tuning.search_space(cls, "L") == {"lr": [0.01]}


def test_sampler_draws_the_default_first_then_distinct_configurations() -> None:
    space = {"a": [1, 2, 3], "b": [0.1, 0.2], "c": ["x", "y", "z", "w"]}
    configs = tuning.sample_configs(space, 8, seed=0)
    assert len(configs) == 8
    assert configs[0] == {"a": 1, "b": 0.1, "c": "x"}
    assert len({tuple(c.values()) for c in configs}) == 8
    assert all(c[k] in space[k] for c in configs for k in space)
    assert tuning.sample_configs(space, 8, seed=0) == configs
    assert tuning.sample_configs(space, 8, seed=1) != configs
    everything = tuning.sample_configs(space, 100)
    assert len(everything) == math.prod(len(v) for v in space.values())  # at most N, at most the space
    assert len({tuple(c.values()) for c in everything}) == len(everything)
    assert tuning.sample_configs({}, 8) == [{}]
    assert tuning.sample_configs(space, 1) == [configs[0]]


def test_task_groups_share_training_data_and_are_scored_on_the_smallest_k() -> None:
    specs = all_specs()
    groups = {g.name: g for g in tuning.task_groups(specs.values())}
    b20 = groups["R-books2movies-b20"]
    assert b20.tasks == tuple(f"R-books2movies-b20-k{k}" for k in (0, 1, 3, 5))
    assert b20.representative == "R-books2movies-b20-k0"
    assert groups["L-beauty"].representative == "L-beauty-k1"
    assert groups["L-beauty-globaltime"].tasks == ("L-beauty-k3-globaltime",)  # another training set
    assert groups["C-cloth"].tasks == ("C-cloth",) and "C-cloth-published" in groups
    assert sorted(t for g in groups.values() for t in g.tasks) == sorted(specs)
    for group in groups.values():
        assert len({tuning.group_key(specs[t]) for t in group.tasks}) == 1
        assert {s.family for s in (specs[t] for t in group.tasks)} == {group.family}
    assert tuning.group_of("R-books2movies-b20-k3") == b20


class ValidationTablesOnly(Mapping):
    """The training and validation tables; touching a test table or listing the tables fails the test."""

    def __init__(self, tables: dict[str, harness.EncodedTable]) -> None:
        self._tables = tables

    def __getitem__(self, name: str) -> harness.EncodedTable:
        assert name in tuning.VALIDATION_TABLES, f"tuning read the test table {name!r}"
        return self._tables[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("tuning listed the task's tables")

    def __len__(self) -> int:
        raise AssertionError("tuning listed the task's tables")


def permuted_test_labels(enc: harness.EncodedTask) -> harness.EncodedTask:
    """Test query labels shuffled across rows: ratings in family R, the query items in L and C (keeping the
    rows that stay valid: no support item and no pair twice)."""
    rows = enc.tables["query"].rows
    perm = np.random.default_rng(1).permutation(len(rows))
    keep = np.ones(len(rows), dtype=bool)
    if enc.spec.family == "R":
        rows = Interactions(rows.user, rows.item, rows.rating[perm], rows.ts)
    else:
        rows = Interactions(rows.user, rows.item[perm], rows.rating, rows.ts)
        support = enc.tables["support"].rows
        pair, taken = rows.user * len(enc.items) + rows.item, support.user * len(enc.items) + support.item
        keep = ~np.isin(pair, taken) & ~pd.Series(pair).duplicated().to_numpy()
        rows = Interactions(rows.user[keep], rows.item[keep], rows.rating[keep], rows.ts[keep])
    query = harness.EncodedTable(rows, enc.tables["query"].domain[keep])
    negatives = enc.negatives[keep] if enc.negatives is not None else None
    return dataclasses.replace(enc, tables={**enc.tables, "query": query}, negatives=negatives)


def comparable(trials: list[tuning.Trial]) -> list[tuple[Any, ...]]:
    return [(t.config, t.status, t.score, t.method_trials) for t in trials]


@pytest.mark.parametrize(
    ("method", "family"), [("mf-target", "R"), ("bias-transfer", "R"), ("mf-target", "L"), ("item-knn", "C")]
)
def test_permuting_test_query_labels_changes_no_trial(method: str, family: str) -> None:
    """Test labels cannot influence the chosen configuration: the same trials, scores and winner after the
    test query labels are permuted, and the tuning path never even reads a test table."""
    cls = load_method(method)
    enc = task(family)
    configs = tuning.sample_configs(tuning.search_space(cls, family), 3)
    permuted = permuted_test_labels(enc)
    test_metric = "user_mae" if family == "R" else "ndcg@10"
    config = resolve_config(cls, family, {})
    before = execute(enc, cls, config, 0).evaluation
    after = execute(permuted, cls, config, 0).evaluation
    assert before is not None and after is not None
    assert before.pooled[test_metric] != after.pooled[test_metric]  # the permutation moves test metrics

    trials = tuning.run_trials(enc, cls, configs)
    assert all(t.status == "ok" for t in trials), [t.error for t in trials]
    assert comparable(tuning.run_trials(permuted, cls, configs)) == comparable(trials)
    guarded = dataclasses.replace(enc, tables=ValidationTablesOnly(dict(enc.tables)), negatives=None)
    assert comparable(tuning.run_trials(guarded, cls, configs)) == comparable(trials)
    assert "read the test table" in (execute(guarded, cls, config, 0).error or "")  # the guard works
    assert tuning.winner(tuning.run_trials(permuted, cls, configs)) == tuning.winner(trials)


def test_winner_is_the_best_ok_trial_and_the_earlier_on_a_tie() -> None:
    def trial(score: float | None) -> tuning.Trial:
        return tuning.Trial({}, "ok" if score is not None else "failed", score, 0.0)

    assert tuning.winner([trial(-1.0), trial(-0.5), trial(-0.5), trial(None)]) == 1
    assert tuning.winner([trial(0.2), trial(0.2)]) == 0
    assert tuning.winner([trial(None)]) is None
    assert tuning.winner([]) is None


def test_tuned_file_round_trips_through_toml() -> None:
    data = {
        "method": "m",
        "groups": {
            "R-x-b20": {
                "complete": True,
                "config": {"lr": 1e-05, "hidden": [32, 64], "backend": 'a "b"\nc', "flag": False},
                "space": {"lr": [1e-05, 0.003], "hidden": [[32], [64, 64]]},
                "score": -0.75,
                "trials": [
                    {"config": {"lr": 1e-05}, "status": "ok", "score": -0.75, "seconds": 1.5},
                    {"config": {}, "status": "failed", "score": None, "seconds": 0.1, "error": "x: 'y'"},
                ],
            }
        },
    }
    loaded = tomllib.loads(tuning.dumps(data))
    expected = dict(data)
    expected["groups"]["R-x-b20"]["trials"][1].pop("score")
    assert loaded == expected


def tune_cli(*args: str) -> int:
    parser_commands = cli.COMMANDS if "tune" in cli.COMMANDS else (*cli.COMMANDS, "tune")
    saved, cli.COMMANDS = cli.COMMANDS, parser_commands
    try:
        return cli.main(["tune", *args])
    finally:
        cli.COMMANDS = saved


def test_tune_writes_the_winner_bench_reads_and_resumes(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, tasks_dir = tmp_path / "tuned", tmp_path / "tasks"
    args = ["--method", "bias-transfer", "--tasks", "R-books2movies-b20-k3", "--trials", "3"]
    common = ["--data-dir", str(data_dir), "--tasks-dir", str(tasks_dir), "--out", str(out)]
    assert tune_cli(*args, *common) == 0
    data = tomllib.loads((out / "bias-transfer.toml").read_text())
    group = data["groups"]["R-books2movies-b20"]
    assert group["complete"] and group["scored_on"] == "R-books2movies-b20-k0"
    assert len(group["trials"]) == 3 and group["trials"][0]["config"] == {
        "lambda_item": [25.0],
        "lambda_cold": [3.0],
    }
    assert all(t["status"] == "ok" and t["method_trials"] == 1 for t in group["trials"])
    assert group["score"] == max(t["score"] for t in group["trials"])
    assert not (tasks_dir / "R-books2movies-b20-k3").exists()  # only the scored task was built
    for task_id in group["tasks"]:
        assert tuning.tuned_config("bias-transfer", task_id, out) == (group["config"], 3)
    assert tuning.tuned_config("bias-transfer", "R-books2movies-b50-k0", out) is None
    assert tuning.tuned_config("mf-target", "R-books2movies-b20-k0", out) is None
    assert tuning.tuned_config("bias-transfer", "tiny-R", out) is None  # not a catalogue task
    monkeypatch.setenv(tuning.TUNED_ENV, str(out))
    assert tuning.tuned_config("bias-transfer", "R-books2movies-b20-k5") == (group["config"], 3)
    rows = tuning.card_rows("bias-transfer", out)
    assert rows[0][:3] == ["R-books2movies-b20", "R-books2movies-b20-k0", "3 (3 ok)"]

    capsys.readouterr()
    assert tune_cli(*args, *common) == 0  # complete: nothing runs again
    assert "tuned already" in capsys.readouterr().out
    assert tomllib.loads((out / "bias-transfer.toml").read_text()) == data

    group = data["groups"]["R-books2movies-b20"]  # an interrupted run: two trials kept, resumed
    unfinished = {**data, "groups": {"R-books2movies-b20": {**group, "complete": False}}}
    unfinished["groups"]["R-books2movies-b20"]["trials"] = group["trials"][:2]
    (out / "bias-transfer.toml").write_text(tuning.dumps(unfinished))
    assert tuning.tuned_config("bias-transfer", "R-books2movies-b20-k0", out) is None
    capsys.readouterr()
    assert tune_cli(*args, *common) == 0
    assert capsys.readouterr().out.count("/3] ") == 1  # one trial ran: the third
    resumed = tomllib.loads((out / "bias-transfer.toml").read_text())["groups"]["R-books2movies-b20"]
    strip = [{k: v for k, v in t.items() if k != "seconds"} for t in group["trials"]]
    assert [{k: v for k, v in t.items() if k != "seconds"} for t in resumed["trials"]] == strip


def test_tune_refuses_floors_and_unknown_tasks(data_dir: Path, tmp_path: Path) -> None:
    common = ["--data-dir", str(data_dir), "--tasks-dir", str(tmp_path), "--out", str(tmp_path)]
    assert tune_cli("--method", "item-mean", "--tasks", "R-books2movies-b20-k0", *common) == 2
    assert tune_cli("--method", "mf-target", "--tasks", "R-nope", *common) == 2

"""Protocol invariants of every task artifact, checked on the real data by reading the Parquet files."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import artifact
from tasks.schema import DataError
from tasks.spec import all_specs, parse_spec

SPECS = all_specs()
TABLES = ("train", "support", "query", "valid_support", "valid_query")


@pytest.fixture(scope="module")
def built(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tasks")
    for spec in SPECS.values():
        artifact.build(spec, data_dir, out)
    return out


@functools.cache
def read(built: Path, task_id: str) -> dict[str, pd.DataFrame]:
    """The artifact's tables read straight from Parquet, not through tasks.artifact (read only)."""
    folder = built / task_id
    return {p.stem: pd.read_parquet(p) for p in folder.glob("*.parquet")}


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user"], frame["item"], strict=True))


def test_there_are_26_tasks_in_three_families() -> None:
    families = pd.Series([s.family for s in SPECS.values()]).value_counts().to_dict()
    assert families == {"R": 12, "L": 12, "C": 2}


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_no_leakage_and_disjoint_support_query(built: Path, task_id: str) -> None:
    spec = SPECS[task_id]
    t = read(built, task_id)
    for name in TABLES:
        assert list(t[name].columns) == ["domain", "user", "item", "rating", "ts"]
    train = t["train"]
    cold = set(t["query"]["user"]) | set(t["support"]["user"]) | set(t["valid_query"]["user"])
    cold |= set(t["valid_support"]["user"])
    target_train = train[train["domain"] == spec.target]
    assert not (set(target_train["user"]) & cold), "a cold user has target interactions in train"
    assert not (pairs(t["query"]) & pairs(train))
    assert not (pairs(t["valid_query"]) & pairs(train))
    assert not (pairs(t["support"]) & pairs(t["query"]))
    assert not (pairs(t["valid_support"]) & pairs(t["valid_query"]))
    for name in ("support", "query", "valid_support", "valid_query"):
        assert set(t[name]["domain"]) <= {spec.target}
    # every test cold user has a source-domain interaction in train
    source_users = set(train[train["domain"].isin(spec.source)]["user"])
    assert set(t["query"]["user"]) <= source_users
    assert len(t["query"]) > 0 and len(t["valid_query"]) > 0
    if spec.family in ("R", "L"):
        assert not (set(t["query"]["user"]) & set(t["valid_query"]["user"])), "test and valid users overlap"


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_support_size_is_exactly_k(built: Path, task_id: str) -> None:
    spec = SPECS[task_id]
    t = read(built, task_id)
    for sup, qry in (("support", "query"), ("valid_support", "valid_query")):
        if spec.k == 0:
            assert len(t[sup]) == 0
            continue
        counts = t[sup].groupby("user").size()
        assert (counts == spec.k).all()
        assert set(counts.index) == set(t[qry]["user"])


def _eligible_overlap(data_dir: Path, spec) -> int:
    from tasks.catalog import load

    table = load(spec.dataset, data_dir).table
    src = set(table[table["domain"] == spec.source[0]]["user"])
    return len(src & set(table[table["domain"] == spec.target]["user"]))


@pytest.mark.parametrize("direction", ["books2movies", "movies2books"])
def test_family_r_beta_fractions_nest_and_validation_is_shared(
    built: Path, data_dir: Path, direction: str
) -> None:
    n = _eligible_overlap(data_dir, SPECS[f"R-{direction}-b20-k0"])
    test_users = {}
    valid_users = set()
    for beta in (20, 50, 80):
        t = read(built, f"R-{direction}-b{beta}-k0")
        test_users[beta] = set(t["query"]["user"])
        assert len(test_users[beta]) == int(np.floor(beta / 100 * n))
        valid = set(t["valid_query"]["user"])
        assert len(valid) == int(np.floor(0.1 * n))
        valid_users = valid_users or valid
        assert valid == valid_users
    assert test_users[20] <= test_users[50] <= test_users[80]


@pytest.mark.parametrize("direction", ["books2movies", "movies2books"])
def test_family_r_kshot_queries_identical_across_k(built: Path, direction: str) -> None:
    k0 = read(built, f"R-{direction}-b20-k0")
    queries = [read(built, f"R-{direction}-b20-k{k}")["query"] for k in (1, 3, 5)]
    supports = [read(built, f"R-{direction}-b20-k{k}")["support"] for k in (1, 3, 5)]
    assert queries[0].equals(queries[1]) and queries[1].equals(queries[2])
    assert pairs(supports[0]) <= pairs(supports[1]) <= pairs(supports[2])  # support = first K of one pool
    eligible = k0["query"].groupby("user").size()
    assert set(queries[0]["user"]) == set(eligible[eligible >= 6].index)
    # pool of 5 + query = all of a user's target ratings
    full = k0["query"][k0["query"]["user"].isin(set(queries[0]["user"]))]
    assert len(full) == len(queries[0]) + 5 * queries[0]["user"].nunique()


@pytest.mark.parametrize("target", ["beauty", "electronics", "grocery", "home"])
def test_family_l_support_is_chronological_and_query_follows_the_pool(built: Path, target: str) -> None:
    query = None
    for k in (1, 3, 5):
        t = read(built, f"L-{target}-k{k}")
        query = t["query"] if query is None else query
        assert t["query"].equals(query)
        last_support = t["support"].groupby("user")["ts"].max()
        first_query = t["query"].groupby("user")["ts"].min()
        assert (last_support <= first_query.reindex(last_support.index)).all()
        n_eligible = t["query"]["user"].nunique() + t["valid_query"]["user"].nunique()
        assert t["query"]["user"].nunique() >= int(0.2 * n_eligible / 0.3) - 1


def _cdrib(data_dir: Path, folder: str, name: str) -> pd.DataFrame:
    return pd.read_csv(data_dir / "2014-cdrib" / folder / f"{name}.txt", sep="\t", header=None, dtype=str)


@pytest.mark.parametrize(
    ("task_id", "folder", "short"), [("C-cloth", "cloth_sport", "cloth"), ("C-sport", "sport_cloth", "sport")]
)
def test_family_c_reproduces_cdrib_files(
    built: Path, data_dir: Path, task_id: str, folder: str, short: str
) -> None:
    t = read(built, task_id)
    for ours, theirs in (("query", "test"), ("valid_query", "valid")):
        raw = _cdrib(data_dir, folder, theirs)
        expected = {(f"u{u}", f"{short}:i{i}") for u, i in zip(raw[0], raw[1], strict=True)}
        assert pairs(t[ours]) == expected
    raw_train = _cdrib(data_dir, folder, "train")
    assert (t["train"]["item"].str.startswith(f"{short}:")).sum() == len(raw_train)
    neg = t["negatives"]
    assert len(neg) == len(t["query"]) and all(len(n) == 999 for n in neg["negatives"])
    positives = pd.concat([t["train"], t["query"], t["valid_query"]])
    seen = set(zip(positives["user"], positives["item"], strict=True))
    sample = neg.iloc[:50]
    for user, items in zip(sample["user"], sample["negatives"], strict=True):
        assert len(set(items)) == 999
        assert not any((user, i) in seen for i in items)
        assert all(i.startswith(f"{short}:") for i in items)


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_manifest_counts_and_hashes_rederive(built: Path, task_id: str) -> None:
    folder = built / task_id
    manifest = json.loads((folder / "manifest.json").read_text())
    t = read(built, task_id)
    for name in TABLES:
        assert manifest["counts"][f"{name}_rows"] == len(t[name])
    assert manifest["counts"]["test_users"] == pd.concat([t["support"]["user"], t["query"]["user"]]).nunique()
    for name, frame in t.items():
        assert artifact.content_digest(frame) == manifest["content"][name]
    assert artifact.split_hash(task_id, manifest["content"]) == manifest["split_hash"]


def test_split_hash_is_stable_across_processes_hash_seeds_and_rebuilds(
    built: Path, data_dir: Path, tmp_path: Path
) -> None:
    ids = ["R-books2movies-b20-k3", "L-beauty-k1", "C-cloth"]
    hashes = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmark.cli",
                "tasks",
                "build",
                *ids,
                "--data-dir",
                str(data_dir),
                "--out",
                str(out),
                "--force",
            ],
            check=True,
            env=env,
            capture_output=True,
        )
        hashes.append([json.loads((out / i / "manifest.json").read_text())["split_hash"] for i in ids])
    reference = [json.loads((built / i / "manifest.json").read_text())["split_hash"] for i in ids]
    assert hashes[0] == hashes[1] == reference


def test_tampered_artifact_is_refused_and_force_rebuilds(data_dir: Path, tmp_path: Path) -> None:
    spec = SPECS["R-books2movies-b20-k0"]
    manifest = artifact.build(spec, data_dir, tmp_path)
    query = tmp_path / spec.id / "query.parquet"
    frame = pd.read_parquet(query)
    frame.loc[0, "rating"] = 5.0 if frame.loc[0, "rating"] != 5.0 else 1.0
    frame.to_parquet(query)
    with pytest.raises(DataError, match=r"query\.parquet"):
        artifact.load(tmp_path / spec.id)
    rebuilt = artifact.build(spec, data_dir, tmp_path)  # a failed verification triggers a rebuild
    assert rebuilt["split_hash"] == manifest["split_hash"]
    assert artifact.load(tmp_path / spec.id).split_hash == manifest["split_hash"]


def test_spec_errors_name_the_field() -> None:
    good = {
        "id": "X",
        "family": "R",
        "dataset": "d",
        "source": ["A"],
        "target": "B",
        "k": 0,
        "split_seed": 1,
        "metrics": ["mae"],
        "beta": 0.2,
        "valid_fraction": 0.1,
        "budget": {"train_examples_multiple": 1, "adapt_steps": 1, "wall_seconds": 1},
    }
    parse_spec(good, "x.toml")
    with pytest.raises(DataError, match=r"x\.toml: missing field 'target'"):
        parse_spec({k: v for k, v in good.items() if k != "target"}, "x.toml")
    with pytest.raises(DataError, match="unknown field"):
        parse_spec({**good, "bogus": 1}, "x.toml")
    with pytest.raises(DataError, match="beta"):
        parse_spec({**good, "beta": 0.95}, "x.toml")
    with pytest.raises(DataError, match="also a source"):
        parse_spec({**good, "target": "A"}, "x.toml")

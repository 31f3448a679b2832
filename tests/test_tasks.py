"""Protocol invariants of every task artifact, checked on the real data by reading the Parquet files."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import artifact, protocols, search
from tasks.schema import DataError
from tasks.spec import all_specs, load_spec_file, parse_spec

SPECS = all_specs()
# tasks whose cold units are users; the cold-item families (IR, IL) have their own invariants in
# tests/test_family_i.py (their query users are warm users, their support is per item)
USER_COLD = sorted(t for t, s in SPECS.items() if protocols.get(s.family).cold == "users")
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


def test_every_family_has_ranked_tasks_and_every_reported_variant_says_why() -> None:
    for family in ("R", "L", "C"):
        assert any(s.family == family and s.ranked for s in SPECS.values())
    for spec in SPECS.values():
        if spec.ranked:  # protocol v2: ranked tasks drop duplicate queries (and L cuts histories in time)
            assert spec.rule("duplicates") == "drop-query"
            assert spec.family != "L" or spec.rule("history") == "before-first-query"
            assert spec.family != "C" or spec.rule("users") == "disjoint"
        else:
            assert spec.id.endswith(("-published", "-globaltime"))


@pytest.mark.parametrize("task_id", USER_COLD)
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
    if spec.ranked:
        assert not (set(t["query"]["user"]) & set(t["valid_query"]["user"])), "test and valid users overlap"


@pytest.mark.parametrize("task_id", USER_COLD)
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
        task_id = f"R-{direction}-b{beta}-k0"
        t = read(built, task_id)
        cleaning = json.loads((built / task_id / "manifest.json").read_text())["cleaning"]
        test_users[beta] = set(t["query"]["user"])
        assert len(test_users[beta]) == int(np.floor(beta / 100 * n)) - cleaning["query_users_removed"]
        valid = set(t["valid_query"]["user"])
        assert len(valid) == int(np.floor(0.1 * n)) - cleaning["valid_query_users_removed"]
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
    # the K-shot users are K=0 test users; their query is their K=0 query less the pool of 5 (less, at most,
    # the pool items that the K=0 cleaning had already dropped)
    assert set(queries[0]["user"]) <= set(k0["query"]["user"])
    assert pairs(queries[0]) <= pairs(k0["query"])
    full = k0["query"][k0["query"]["user"].isin(set(queries[0]["user"]))]
    extra = full.groupby("user").size() - queries[0].groupby("user").size()
    assert ((extra >= 0) & (extra <= 5)).all() and (extra == 5).mean() > 0.95


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
        # beta 0.2 test users against 0.1 validation users, before the time-honest cut drops a few of each
        assert 1.7 <= t["query"]["user"].nunique() / t["valid_query"]["user"].nunique() <= 2.3


@pytest.mark.parametrize("task_id", sorted(t for t, s in SPECS.items() if s.family == "L"))
def test_family_l_no_cold_user_sees_source_rows_from_after_their_first_query(
    built: Path, task_id: str
) -> None:
    """Independent of the builder: every cold user's source rows in train end before their first query."""
    spec, t = SPECS[task_id], read(built, task_id)
    queries = pd.concat([t["query"], t["valid_query"]])
    first_query = queries.groupby("user")["ts"].min()
    train = t["train"]
    cold_source = train[train["user"].isin(first_query.index) & (train["domain"] != spec.target)]
    last_source = cold_source.groupby("user")["ts"].max()
    assert (last_source < first_query.reindex(last_source.index)).all()
    assert set(first_query.index) <= set(last_source.index), "a cold user has no source row"
    if spec.rule("time_cut") == "global":
        assert train["ts"].max() < first_query.min(), "a training row is later than a cold user's first query"


def _identical_reviewer_pairs(train: pd.DataFrame, spec) -> set[tuple[str, str]]:
    """Independent duplicate finder: items whose sets of (cross-domain) reviewers are equal, >= 3 of them.

    A different method from ``tasks.audit`` (exact set equality through sorted reviewer strings, no sparse
    algebra); it finds the Jaccard = 1 pairs, which the audit must also catch at its 0.95 default.
    """
    source = train[train["domain"] != spec.target]
    target = train[train["domain"] == spec.target]
    both = set(source["user"]) & set(target["user"])

    def signatures(frame: pd.DataFrame) -> pd.Series:
        frame = frame[frame["user"].isin(both)]
        groups = frame.groupby("item")["user"]
        return groups.apply(lambda u: "|".join(sorted(u)))[groups.size() >= 3]

    src, tgt = signatures(source), signatures(target)
    matched = pd.DataFrame({"s": src.index, "sig": src.values}).merge(
        pd.DataFrame({"t": tgt.index, "sig": tgt.values}), on="sig"
    )
    return set(zip(matched["s"], matched["t"], strict=True))


@pytest.mark.parametrize("task_id", sorted(t for t, s in SPECS.items() if s.ranked))
def test_ranked_tasks_ask_for_no_copy_of_the_users_own_source_items(built: Path, task_id: str) -> None:
    spec, t = SPECS[task_id], read(built, task_id)
    dup = _identical_reviewer_pairs(t["train"], spec)
    source = t["train"][t["train"]["domain"] != spec.target]
    history = source.groupby("user")["item"].apply(set).to_dict()
    for name in ("query", "valid_query"):
        for user, item in pairs(t[name]):
            assert not any((s, item) in dup for s in history.get(user, ())), (name, user, item)
    manifest = json.loads((built / task_id / "manifest.json").read_text())
    assert manifest["audit"]["passed"] and manifest["audit"]["query"]["touched_pairs"] == 0


def test_audit_figures_on_the_shared_data(built: Path) -> None:
    audits = {t: json.loads((built / t / "manifest.json").read_text())["audit"] for t in SPECS}
    published = audits["C-cloth-published"]
    assert 780 <= published["duplicate_pairs"] <= 800
    assert 0.13 <= published["query"]["touched_share"] <= 0.16
    assert published["valid_test_user_overlap"] > 800 and not published["passed"]
    for task_id, a in audits.items():
        if task_id.startswith("R-"):
            assert a["duplicate_pairs"] == 5
            assert a["co_reviews"]["same_rating"] == a["co_reviews"]["co_reviews"] > 0
        if task_id.startswith("L-"):
            assert a["duplicate_pairs"] <= 20


def _cdrib(data_dir: Path, folder: str, name: str) -> pd.DataFrame:
    return pd.read_csv(data_dir / "2014-cdrib" / folder / f"{name}.txt", sep="\t", header=None, dtype=str)


@pytest.mark.parametrize(
    ("task_id", "folder", "short"),
    [("C-cloth-published", "cloth_sport", "cloth"), ("C-sport-published", "sport_cloth", "sport")],
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
    with pytest.raises(DataError, match=r"x\.toml: unknown field\(s\) \['bogus'\] in the spec"):
        parse_spec({**good, "bogus": 1}, "x.toml")
    with pytest.raises(DataError, match="beta"):
        parse_spec({**good, "beta": 0.95}, "x.toml")
    with pytest.raises(DataError, match="also a source"):
        parse_spec({**good, "target": "A"}, "x.toml")


@pytest.mark.parametrize(("task_id", "folder"), [("C-cloth", "cloth_sport"), ("C-sport", "sport_cloth")])
def test_family_c_clean_split_halves_cdrib_cold_users(
    built: Path, data_dir: Path, task_id: str, folder: str
) -> None:
    t = read(built, task_id)
    published = read(built, f"{task_id}-published")
    assert t["train"].equals(published["train"])  # the training rows are CDRIB's
    assert pairs(t["query"]) <= pairs(published["query"])  # test users scored on test.txt pairs
    assert pairs(t["valid_query"]) <= pairs(published["valid_query"])  # validation users on valid.txt
    test_users, valid_users = set(t["query"]["user"]), set(t["valid_query"]["user"])
    assert not test_users & valid_users
    cold = set(published["query"]["user"]) | set(published["valid_query"]["user"])
    assert abs(len(test_users) - len(valid_users)) < 0.1 * len(cold)
    neg = t["negatives"]
    assert len(neg) == len(t["query"])
    assert list(zip(neg["user"], neg["item"], strict=True)) == list(
        zip(t["query"]["user"], t["query"]["item"], strict=True)
    )


R_SPEC = (search.PACKAGE_TASKS / "R-books2movies-b20-k3.toml").read_text()
L_SPEC = (search.PACKAGE_TASKS / "L-beauty-k3.toml").read_text()
C_SPEC = (search.PACKAGE_TASKS / "C-cloth.toml").read_text()


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("base", "old", "new", "message"),
    [
        (R_SPEC, "[budget]\n", "[budget]\ncpus = 2\n", r"unknown field\(s\) \['cpus'\] in \[budget\]"),
        (R_SPEC, "pool = 5\n", "pool = 5\npoool = 5\n", r"unknown field\(s\) \['poool'\] in \[filters\]"),
        (C_SPEC, "negatives = 999\n", "negatives = 999\nmax_users = 10\n", r"\['max_users'\] in \[filters\]"),
        (R_SPEC, "min_co = 3\n", "min_co = 3\nmax_co = 9\n", r"\[audit\] takes only"),
        (
            R_SPEC,
            'duplicates = "drop-query"\n',
            'duplicates = "drop-query"\ndedup = 1\n',
            r"unknown rule 'dedup'",
        ),
        (R_SPEC, "k = 3\n", "k = 3\nbogus = 1\n", r"unknown field\(s\) \['bogus'\] in the spec"),
        (
            R_SPEC,
            'target = "Movies_and_TV"',
            'target = "Music"',
            r"field 'target': data set '2018-dense-books-movies' has no domain 'Music'; it has \['Books', "
            r"'Movies_and_TV'\]",
        ),
        (
            R_SPEC,
            'source = ["Books"]',
            'source = ["Beauty"]',
            r"field 'source': data set .* has no domain 'Beauty'",
        ),
        (R_SPEC, "k = 3\n", "k = 6\n", r"field 'k' \(6\) must be <= \[filters\] pool \(5\)"),
        (L_SPEC, "k = 3\n", "k = 6\n", r"field 'k' \(6\) must be < \[filters\] min_target \(6\)"),
        (
            R_SPEC,
            "wall_seconds = 300",
            "wall_seconds = -1",
            r"field 'budget\.wall_seconds' must be > 0, got -1",
        ),
        (R_SPEC, "adapt_steps = 20", "adapt_steps = 0", r"field 'budget\.adapt_steps' must be >= 1, got 0"),
        (R_SPEC, "adapt_steps = 20", "adapt_steps = -5", r"field 'budget\.adapt_steps' must be >= 1, got -5"),
        (
            R_SPEC,
            "train_examples_multiple = 30",
            "train_examples_multiple = 0",
            r"'budget\.train_examples_multiple' must be > 0",
        ),
        (R_SPEC, "wall_seconds = 300\n", "", r"missing field 'budget\.wall_seconds'"),
        (
            R_SPEC,
            'metrics = ["mae"',
            'metrics = ["bogus@10", "mae"',
            r"field 'metrics' has unknown metric\(s\) \['bogus@10'\]; known: \[.*'mae'.*'ndcg@10'",
        ),
        (R_SPEC, 'target = "Movies_and_TV"\n', "", r"missing field 'target'"),
        (R_SPEC, "pool = 5\n", "", r"missing field 'filters\.pool'"),
        (L_SPEC, "min_target = 6\n", "", r"missing field 'filters\.min_target'"),
        (R_SPEC, 'source = ["Books"]', "source = []", r"field 'source' must be a non-empty list of names"),
        (
            R_SPEC,
            'dataset = "2018-dense-books-movies"',
            'dataset = "nope"',
            r"field 'dataset': unknown data set 'nope'; known: \[",
        ),
        (R_SPEC, 'source = ["Books"]', 'source = ["Books", "Books"]', r"field 'source' lists a name twice"),
        (R_SPEC, "split_seed = 2026", 'split_seed = "2026"', r"field 'split_seed' must be an integer"),
        (R_SPEC, "k = 3", "k = true", r"field 'k' must be an integer"),
        (R_SPEC, 'family = "R"', 'family = "X"', r"field 'family' must be one of"),
        (
            R_SPEC,
            'dataset = "2018-dense-books-movies"',
            'dataset = "2014-abxi"',
            r"family R needs explicit ratings",
        ),
        (L_SPEC, 'dataset = "2014-abxi"', 'dataset = "2014-cdrib"', r"family L needs timestamps"),
        (C_SPEC, 'dataset = "2014-cdrib"', 'dataset = "2014-abxi"', r"family C needs a published split"),
        (C_SPEC, "k = 0\n", "k = 0\nbeta = 0.2\n", r"family C takes no 'beta'"),
        (
            R_SPEC,
            "[filters]\n",
            "[filters]\nmax_users = 10\nmin_overlap = 20\n",
            r"max_users' \(10\) is below",
        ),
        (
            R_SPEC,
            'duplicates = "drop-query"\n',
            'duplicates = "drop-query"\nhistory = "before-first-query"\n',
            r"\[clean\] history needs timestamps",
        ),
        (
            R_SPEC,
            'id = "R-books2movies-b20-k3"',
            'id = "R-other"',
            r"id 'R-other' differs from the file name",
        ),
    ],
)
def test_a_bad_spec_file_names_the_file_and_the_field(
    tmp_path: Path, base: str, old: str, new: str, message: str
) -> None:
    from benchmark.metrics import METRICS

    path = tmp_path / f"{_id(base)}.toml"
    path.write_text(_edit(base, old, new))
    with pytest.raises(DataError, match=re.escape(str(path)) + ": .*" + message):
        load_spec_file(path, metrics=METRICS)


def _id(text: str) -> str:
    return text.split('id = "', 1)[1].split('"', 1)[0]


def test_every_package_spec_is_valid_with_the_known_metrics_and_aliases_resolve(tmp_path: Path) -> None:
    from benchmark.metrics import METRICS

    for path in sorted(search.PACKAGE_TASKS.glob("*.toml")):
        assert load_spec_file(path, metrics=METRICS) == SPECS[path.stem]
    path = tmp_path / "R-books2movies-b20-k3.toml"
    path.write_text(
        _edit(_edit(R_SPEC, 'target = "Movies_and_TV"', 'target = "movies"'), '["Books"]', '["books"]')
    )
    assert load_spec_file(path) == SPECS["R-books2movies-b20-k3"]


def test_tasks_show_prints_the_audit_for_a_reader_and_json_on_request(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmark.cli import main

    assert main(["tasks", "show", "C-cloth-published", "--out", str(built)]) == 0
    text = capsys.readouterr().out
    assert "reported, not ranked" in text and "Sports_and_Outdoors -> Clothing_Shoes_and_Jewelry" in text
    assert "query: 442 of 3,085 pairs touched (14.33%)" in text
    assert main(["tasks", "show", "C-cloth", "--out", str(built), "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"]["audit"]["passed"] and shown["spec"]["ranked"]

"""Family I (cold-start items, issue 18): the IR and IL artifacts' invariants, checked on the real data.

The tables are read straight from Parquet; the independent checks re-derive the cold items, the pools and
the supports from the raw files (the RecBole ``.inter`` files and ABXI's sequence files) and the documented
seeding rule (ids sorted, ``numpy.random.default_rng([split_seed, stream])``), without ``tasks.split``.
Real-data tests skip with a reason when the data root is absent (``tests/conftest.py``).
"""

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

from tasks import artifact, protocols
from tasks.audit import AuditParams, audit, duplicate_pairs
from tasks.catalog import load
from tasks.schema import DataError, canonical
from tasks.spec import all_specs, parse_spec
from tasks.split import split_item_earliest, split_item_ratings

SPECS = {t: s for t, s in all_specs().items() if protocols.get(s.family).cold == "items"}
SETTINGS = sorted({t.rsplit("-k", 1)[0] for t in SPECS})  # I-movies, I-books, I-beauty, ...
COLD_TABLES = ("support", "query", "valid_support", "valid_query")


@pytest.fixture(scope="module")
def built(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tasks")
    for spec in SPECS.values():
        artifact.build(spec, data_dir, out)
    return out


@functools.cache
def read(built: Path, task_id: str) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_parquet(p) for p in (built / task_id).glob("*.parquet")}


def manifest(built: Path, task_id: str) -> dict:
    return json.loads((built / task_id / "manifest.json").read_text())


def pairs(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user"], frame["item"], strict=True))


def items(frame: pd.DataFrame) -> set[str]:
    return set(frame["item"])


def test_the_catalogue_declares_both_cold_item_families_for_every_target() -> None:
    assert {s.family for s in SPECS.values()} == {"IR", "IL"}
    expected = {
        f"I-{t}-k{k}"
        for t in ("movies", "books", "beauty", "electronics", "grocery", "home")
        for k in (1, 3, 5)
    }
    assert set(SPECS) == expected
    assert SPECS["I-movies-k3"].source == ("Books",) and SPECS["I-books-k1"].source == ("Movies_and_TV",)
    assert set(SPECS["I-beauty-k1"].source) == {"Electronics", "Grocery_and_Gourmet_Food", "Home_and_Kitchen"}
    for spec in SPECS.values():  # protocol v2: ranked, duplicate queries dropped
        assert spec.ranked and spec.rule("duplicates") == "drop-query" and spec.filters == {"pool": 5}


def test_a_method_runs_on_the_cold_item_families_only_when_it_declares_them() -> None:
    """A method that lists no families (a plugin written for cold users) is never run on IR/IL; the suite's
    I cells are those of methods that declare the family, and the floors are among them."""
    from benchmark.api import Method
    from benchmark.registry import available, load_method
    from benchmark.suite import cells, load_suite

    assert "IR" not in Method.families and "IL" not in Method.families
    assert set(protocols.FAMILIES) - set(Method.families) == {"IR", "IL"}
    i_cells = [c for c in cells(load_suite("standard")) if c.task in SPECS]
    assert {c.method for c in i_cells} >= {"global-mean", "item-mean", "random"}
    for c in i_cells:
        assert SPECS[c.task].family in load_method(c.method).families
    declares = {m for m in available() if {"IR", "IL"} & set(load_method(m).families)}
    assert {c.method for c in i_cells} == declares


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_cold_items_never_train_and_support_query_are_disjoint(built: Path, task_id: str) -> None:
    spec, t = SPECS[task_id], read(built, task_id)
    train = t["train"]
    cold = set().union(*(items(t[name]) for name in COLD_TABLES))
    # no cold item's interaction is in train: not its query, not its support (as family L keeps a cold
    # user's support out of train), in no domain
    assert not (cold & items(train)), "a cold item has a training row"
    for name in COLD_TABLES:
        assert set(t[name]["domain"]) == {spec.target}
        assert not (pairs(t[name]) & pairs(train))
    assert not (pairs(t["support"]) & pairs(t["query"]))
    assert not (pairs(t["valid_support"]) & pairs(t["valid_query"]))
    test, valid = items(t["query"]) | items(t["support"]), items(t["valid_query"]) | items(t["valid_support"])
    assert not (test & valid), "a cold item is both a test and a validation item"
    assert len(t["query"]) > 0 and len(t["valid_query"]) > 0
    # the source domains are all in train
    assert set(spec.source) <= set(train["domain"])


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_every_cold_item_has_exactly_k_support_rows(built: Path, task_id: str) -> None:
    spec, t = SPECS[task_id], read(built, task_id)
    for support, query in (("support", "query"), ("valid_support", "valid_query")):
        counts = t[support].groupby("item").size()
        assert (counts == spec.k).all()
        assert set(counts.index) == items(t[query])


@pytest.mark.parametrize("setting", SETTINGS)
def test_kshot_queries_are_identical_across_k_and_supports_nest(built: Path, setting: str) -> None:
    tables = [read(built, f"{setting}-k{k}") for k in (1, 3, 5)]
    for name in ("query", "valid_query", "train"):
        assert tables[0][name].equals(tables[1][name]) and tables[1][name].equals(tables[2][name])
    for name in ("support", "valid_support"):
        assert pairs(tables[0][name]) <= pairs(tables[1][name]) <= pairs(tables[2][name])
    hashes = [manifest(built, f"{setting}-k{k}")["content"] for k in (1, 3, 5)]
    assert len({h["query"] for h in hashes}) == len({h["valid_query"] for h in hashes}) == 1


# ---------------------------------------------------------------- planted data (no data root needed)


def _spec(family: str = "IR", **fields):
    data = {
        "id": f"I-planted-{family}",
        "family": family,
        "dataset": "planted",
        "source": ["Books"],
        "target": "Movies",
        "k": 2,
        "beta": 0.5,
        "valid_fraction": 0.5,
        "split_seed": 7,
        "metrics": ["item_mae"] if family == "IR" else ["item_ndcg@10"],
        "filters": {"pool": 5},
        "budget": {"train_examples_multiple": 1, "adapt_steps": 1, "wall_seconds": 1},
        "clean": {"duplicates": "drop-query"},
    }
    return parse_spec(data | fields, f"I-planted-{family}.toml")


def _planted_rows(timed: bool = True) -> pd.DataFrame:
    """20 users. Target items m0..m4 have 8 raters each (eligible: > 5), ``dup-t`` has the same 10 raters as
    the source item ``dup`` (the same product in both categories), s0..s4 4 raters each (never cold: every
    user keeps a warm target row); every user also rates the source item ``filler``. Timestamps (``timed``):
    the row's position, so the earliest are known; else none, as in 2018-dense-books-movies."""
    users = [f"u{i:02d}" for i in range(20)]
    target = [(u, f"m{j}") for j in range(5) for u in users[2 * j : 2 * j + 8]]
    target += [(u, "dup-t") for u in users[:10]]
    target += [(u, f"s{j}") for j in range(5) for u in users[4 * j : 4 * j + 4]]
    source = [(u, "dup") for u in users[:10]] + [(u, "filler") for u in users]
    frame = pd.DataFrame(
        [("Movies", u, i) for u, i in target] + [("Books", u, i) for u, i in source],
        columns=["domain", "user", "item"],
    )
    ts = np.arange(len(frame)) * 10 if timed else [pd.NA] * len(frame)
    return canonical(frame.assign(rating=3.0 + (np.arange(len(frame)) % 3), ts=ts))


def test_planted_cold_items_leave_train_and_a_duplicate_product_is_cleaned_away() -> None:
    spec, rows = _spec(), _planted_rows(timed=False)
    tables = split_item_ratings(rows, spec)
    cold = set().union(*(items(tables[n]) for n in COLD_TABLES))
    assert cold == {"m0", "m1", "m2", "m3", "m4", "dup-t"} and not (cold & items(tables["train"]))
    assert {f"s{j}" for j in range(5)} <= items(tables["train"])  # too few ratings to be cold: warm
    # the cold duplicate has no training row: the training rows alone cannot reveal it, every row does
    assert duplicate_pairs(tables["train"], ("Books",), "Movies", AuditParams(), raw_ids=False).empty
    cleaned, report, counts = artifact.clean(tables, spec, raw_item_ids=False, rows=rows)
    # every query user of dup-t owns ``dup``: its query pairs go, then the item with its support
    assert "dup-t" not in set().union(*(items(cleaned[n]) for n in COLD_TABLES))
    assert counts["query_pairs_removed"] + counts["valid_query_pairs_removed"] == 10 - 5
    assert counts["query_items_removed"] + counts["valid_query_items_removed"] == 1
    assert report["passed"] and report["duplicate_pairs"] == 1 and report["cold"] == "items"
    assert report["co_reviews"]["co_reviews"] == 10  # read from every row: dup-t has no training row
    for k in (1, 3, 5):  # the query is the same for every K <= pool
        again = artifact.clean(split_item_ratings(rows, _spec(k=k)), _spec(k=k), False, rows)[0]
        assert again["query"].equals(cleaned["query"]) and again["valid_query"].equals(cleaned["valid_query"])
        assert (again["support"].groupby("item").size() == k).all()


def test_planted_earliest_support_and_the_cold_item_audit_failures() -> None:
    spec, rows = _spec("IL", source=["Books"]), _planted_rows()
    tables = split_item_earliest(rows, spec)
    for support, query in (("support", "query"), ("valid_support", "valid_query")):
        assert (tables[support].groupby("item")["ts"].max() < tables[query].groupby("item")["ts"].min()).all()
    m0 = rows[rows["item"] == "m0"].sort_values("ts")
    assert pairs(m0.head(2)) <= pairs(tables["support"]) | pairs(tables["valid_support"])
    tables, report, _ = artifact.clean(tables, spec, raw_item_ids=False, rows=rows)
    assert report["passed"] and report["look_ahead"]["support_after_first_query"] == 0.0
    params = AuditParams()
    # a support row after its item's first query, a cold item in train, an item both test and valid
    late = tables["support"].iloc[[0]].assign(ts=10**6)
    broken = {**tables, "support": pd.concat([tables["support"], late])}
    report = audit(broken, ("Books",), "Movies", params, False, False, cold="items", rows=rows)
    assert report["look_ahead"]["support_after_first_query"] > 0 and not report["passed"]
    leaked = {**tables, "train": pd.concat([tables["train"], tables["query"].iloc[[0]]])}
    report = audit(leaked, ("Books",), "Movies", params, False, False, cold="items", rows=rows)
    assert report["cold_items_in_train"] == 1 and not report["passed"]
    shared = {**tables, "valid_query": pd.concat([tables["valid_query"], tables["query"].iloc[[0]]])}
    report = audit(shared, ("Books",), "Movies", params, False, False, cold="items", rows=rows)
    assert report["valid_test_item_overlap"] == 1 and not report["passed"]


def test_cold_item_spec_rules() -> None:
    with pytest.raises(DataError, match=r"'k' \(6\) must be <= \[filters\] pool \(5\)"):
        _spec(k=6)
    with pytest.raises(DataError, match=r"missing field 'filters.pool'"):
        _spec(filters={})
    with pytest.raises(DataError, match=r"\[clean\] history applies to families \('R', 'L'\) only"):
        _spec(clean={"history": "before-first-query"})
    with pytest.raises(DataError, match="exactly one domain in family IR"):
        _spec(source=["Books", "Music"])
    assert _spec("IL", source=["Books", "Music"]).source == ("Books", "Music")


# ---------------------------------------------------------------- independent checks from the raw files


def _raw_recbole(data_dir: Path, domain: str) -> pd.DataFrame:
    """Distinct (user, item) pairs of one domain of 2018-dense-books-movies, read with pandas alone."""
    name = {"Books": "Amazon-Books-Dense.inter", "Movies_and_TV": "Amazon-Movies-Dense.inter"}[domain]
    raw = pd.read_csv(data_dir / "2018-dense-books-movies" / name, sep="\t", dtype=str)
    return raw.rename(columns={"user_id": "user", "item_id": "item"})[["user", "item"]].drop_duplicates()


def _raw_abxi(data_dir: Path, pair: str, index: int) -> pd.DataFrame:
    """(user, item, ts) of one ABXI category: the sequence file mapped back to reviewerIDs and ASINs."""
    folder = data_dir / "2014-abxi" / pair
    lines = pd.Series((folder / f"{pair}_50_preprocessed.txt").read_text().splitlines())
    parts = lines.str.split(" ")
    tokens = pd.DataFrame({"uid": parts.str[0], "tok": parts.str[1:]}).explode("tok").dropna()
    iid_ts = tokens["tok"].str.split("|", expand=True)
    users = {str(v): k for k, v in json.loads((folder / "map_user_50.txt").read_text()).items()}
    item_map = json.loads((folder / "map_item_50.txt").read_text())
    asin = {str(v[0]): k for k, v in item_map.items() if v[1] == index}
    frame = pd.DataFrame(
        {"user": tokens["uid"].map(users), "item": iid_ts[0].map(asin), "ts": iid_ts[1].astype(np.int64)}
    )
    return frame.dropna(subset=["item"]).reset_index(drop=True)


def _documented_cold_items(counts: pd.Series, spec) -> tuple[set[str], set[str]]:
    """The cold items by the protocol's text: items with > pool rows, sorted, permuted by the seed's stream
    0; the first floor(beta n) test, the last floor(valid_fraction n) validation."""
    eligible = np.sort(counts.index[counts > spec.filters["pool"]].to_numpy(dtype=object))
    order = np.random.default_rng([spec.split_seed, 0]).permutation(eligible)
    n_test, n_valid = int(np.floor(spec.beta * len(order))), int(np.floor(spec.valid_fraction * len(order)))
    return set(order[:n_test]), set(order[len(order) - n_valid :])


@pytest.mark.parametrize("setting", ["I-movies", "I-books"])
def test_ir_cold_items_and_pools_rederive_from_the_raw_file(
    built: Path, data_dir: Path, setting: str
) -> None:
    """The K=5 support is the whole pool: recomputed from the raw pairs (seeded keys over the cold items'
    pairs sorted by item then user, stream 1; the 5 smallest per item)."""
    spec, t = SPECS[f"{setting}-k5"], read(built, f"{setting}-k5")
    raw = _raw_recbole(data_dir, spec.target)
    test, valid = _documented_cold_items(raw.groupby("item").size(), spec)
    cleaning = manifest(built, spec.id)["cleaning"]
    assert items(t["query"]) <= test and len(test - items(t["query"])) == cleaning["query_items_removed"]
    assert items(t["valid_query"]) <= valid
    assert len(valid - items(t["valid_query"])) == cleaning["valid_query_items_removed"]
    rows = raw[raw["item"].isin(test | valid)].sort_values(["item", "user"], kind="stable")
    rows = rows.assign(key=np.random.default_rng([spec.split_seed, 1]).random(len(rows)))
    pool = rows.sort_values(["item", "key"], kind="stable").groupby("item").head(spec.filters["pool"])
    kept = pool[pool["item"].isin(items(t["support"]) | items(t["valid_support"]))]
    assert pairs(kept) == pairs(t["support"]) | pairs(t["valid_support"])
    # every other pair of a kept cold item is its query, less the pairs the duplicate rule removed
    rest = rows[rows["item"].isin(items(t["query"]) | items(t["valid_query"]))]
    expected = pairs(rest) - pairs(pool)
    found = pairs(t["query"]) | pairs(t["valid_query"])
    assert found <= expected
    removed = cleaning["query_pairs_removed"] + cleaning["valid_query_pairs_removed"]
    gone_items = (test | valid) - items(t["query"]) - items(t["valid_query"])
    assert len(expected - found) + int((raw["item"].isin(gone_items)).sum()) - 5 * len(gone_items) == removed


@pytest.mark.parametrize(
    ("setting", "pair", "index"),
    [("I-beauty", "abe", 0), ("I-electronics", "abe", 1), ("I-grocery", "afk", 0), ("I-home", "afk", 1)],
)
def test_il_supports_are_the_earliest_interactions_from_the_raw_sequences(
    built: Path, data_dir: Path, setting: str, pair: str, index: int
) -> None:
    spec, t = SPECS[f"{setting}-k5"], read(built, f"{setting}-k5")
    raw = _raw_abxi(data_dir, pair, index)
    test, valid = _documented_cold_items(raw.groupby("item").size(), spec)
    assert items(t["query"]) <= test and items(t["valid_query"]) <= valid
    assert manifest(built, spec.id)["cleaning"]["query_items_removed"] == len(test - items(t["query"]))
    for support, query in (("support", "query"), ("valid_support", "valid_query")):
        cold = raw[raw["item"].isin(items(t[query]))]
        # the 5 earliest timestamps of each item (ties at the 5th may swap users, never times)
        earliest = (
            cold.sort_values(["item", "ts"]).groupby("item").head(5).groupby("item")["ts"].apply(sorted)
        )
        ours = t[support].groupby("item")["ts"].apply(sorted)
        assert earliest.sort_index().equals(ours.sort_index())
        # no support row after a query row of the same item
        assert (t[support].groupby("item")["ts"].max() <= t[query].groupby("item")["ts"].min()).all()
        sizes = cold.groupby("item").size() - 5
        assert sizes.sort_index().equals(t[query].groupby("item").size().sort_index())


def _identical_reviewer_pairs(rows: pd.DataFrame, spec) -> set[tuple[str, str]]:
    """Exact reviewer-set equality (>= 3 reviewers among users with rows in both sides), by sorted strings;
    another method than ``tasks.audit``'s sparse products, on every row of the task's domains."""
    source = rows[rows["domain"].isin(spec.source)]
    target = rows[rows["domain"] == spec.target]
    both = set(source["user"]) & set(target["user"])

    def signatures(frame: pd.DataFrame) -> pd.Series:
        groups = frame[frame["user"].isin(both)].groupby("item")["user"]
        return groups.apply(lambda u: "|".join(sorted(u)))[groups.size() >= 3]

    src, tgt = signatures(source), signatures(target)
    matched = pd.DataFrame({"s": src.index, "sig": src.values}).merge(
        pd.DataFrame({"t": tgt.index, "sig": tgt.values}), on="sig"
    )
    return set(zip(matched["s"], matched["t"], strict=True))


@pytest.mark.parametrize("setting", SETTINGS)
def test_no_query_asks_for_a_copy_of_the_users_source_item_and_the_audit_passes(
    built: Path, data_dir: Path, setting: str
) -> None:
    spec = SPECS[f"{setting}-k5"]
    rows = load(spec.dataset, data_dir, domains=spec.domains()).table
    dup = _identical_reviewer_pairs(rows, spec)
    for k in (1, 3, 5):
        t, audit = read(built, f"{setting}-k{k}"), manifest(built, f"{setting}-k{k}")["audit"]
        source = t["train"][t["train"]["domain"].isin(spec.source)]
        history = source.groupby("user")["item"].apply(set).to_dict()
        for name in ("query", "valid_query"):
            copies = [(u, i) for u, i in pairs(t[name]) if any((s, i) in dup for s in history.get(u, ()))]
            assert copies == [], (name, copies[:3])
        assert audit["passed"] and audit["cold"] == "items"
        assert audit["valid_test_item_overlap"] == 0 and audit["cold_items_in_train"] == 0
        assert audit["query"]["touched_pairs"] == audit["valid_query"]["touched_pairs"] == 0
        assert audit["duplicate_pairs"] >= len(dup)  # Jaccard-1 pairs are caught at the 0.95 default
        if spec.family == "IR":  # the 5 same-product pairs of the data README, same rating in every co-review
            assert audit["duplicate_pairs"] == 5
            assert audit["co_reviews"]["same_rating"] == audit["co_reviews"]["co_reviews"] == 286
        else:
            assert audit["look_ahead"]["support_after_first_query"] == 0.0
            assert audit["duplicate_pairs"] <= 20


@pytest.mark.parametrize("task_id", sorted(SPECS))
def test_manifest_counts_and_hashes_rederive(built: Path, task_id: str) -> None:
    m, t = manifest(built, task_id), read(built, task_id)
    for name in ("train", *COLD_TABLES):
        assert m["counts"][f"{name}_rows"] == len(t[name])
    assert m["counts"]["test_cold_items"] == len(items(t["support"]) | items(t["query"]))
    assert m["counts"]["valid_cold_items"] == len(items(t["valid_support"]) | items(t["valid_query"]))
    for name, frame in t.items():
        assert artifact.content_digest(frame) == m["content"][name]
    assert artifact.split_hash(task_id, m["content"]) == m["split_hash"]


def test_split_hashes_are_stable_across_builds_and_hash_seeds(
    built: Path, data_dir: Path, tmp_path: Path
) -> None:
    ids = ["I-movies-k3", "I-books-k1", "I-beauty-k1", "I-home-k5"]
    hashes = []
    command = [sys.executable, "-m", "benchmark.cli", "tasks", "build"]
    for seed in ("1", "2"):
        out = tmp_path / seed
        subprocess.run(
            [*command, *ids, "--data-dir", str(data_dir), "--out", str(out), "--force"],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
        )
        hashes.append([manifest(out, i)["split_hash"] for i in ids])
    assert hashes[0] == hashes[1] == [manifest(built, i)["split_hash"] for i in ids]

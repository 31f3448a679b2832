"""Data sets declared in TOML: the package's declarations, outside folders on the search path, the hub path
end to end (offline, through ``datasets``), the hub-scale filters, and ``coldbench data fetch``."""

from __future__ import annotations

import ast
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from benchmark.cli import main
from tasks import artifact, catalog, filters, search
from tasks.checksums import SUMS_FILE, read_sums, sha256_file
from tasks.schema import ARROW_SCHEMA, DataError, canonical, deduplicate
from tasks.sources import hub2023
from tasks.spec import find_specs, get_spec, package_specs, parse_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
HUB = "amazon-reviews-2023"
HUB_HEADER = b"user_id,parent_asin,rating,timestamp\n"


@pytest.fixture(autouse=True)
def _own_search_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--specs`` extends $COLDBENCH_SPECS of the process (for its workers): restore it after each test."""
    monkeypatch.setenv(search.SPECS_ENV, "")


# ---------------------------------------------------------------- the package's declarations


def test_every_package_declaration_is_valid_and_its_files_are_shipped_with_checksums() -> None:
    assert catalog.PACKAGE_ERRORS == {}
    shipped = read_sums(search.PACKAGE_DATASETS)
    for dataset in catalog.DATASETS.values():
        assert Path(dataset.origin).stem == dataset.name
        if dataset.remote:
            assert (
                dataset.provenance["hub"] == hub2023.REPOSITORY and dataset.provenance["revision"] == "main"
            )
            continue
        assert set(dataset.files) <= set(shipped), dataset.name
        assert {d for files in dataset.domain_files.values() for d in files} == set(dataset.files)


def test_shipped_checksums_are_the_data_roots_lines(data_dir: Path) -> None:
    assert read_sums(search.PACKAGE_DATASETS) == read_sums(data_dir)


def test_provenance_is_what_the_data_readme_records(data_dir: Path) -> None:
    readme = data_dir.parent / "README.md"
    if not readme.is_file():
        pytest.skip(f"{readme} not found")
    text = " ".join(readme.read_text().split())
    for dataset in catalog.DATASETS.values():
        if dataset.remote:
            continue
        prov = dataset.provenance
        assert f"`{prov['repository']}` @ {prov['commit']}" in text, dataset.name
        assert f"`{prov['path']}/" in text, dataset.name
        assert f"`{dataset.folder}/`" in text, dataset.name


def _string_constants(path: Path) -> set[str]:
    """String literals of a module's code, docstrings left out (they may cite examples)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }


def test_no_data_set_folder_or_category_name_is_coded() -> None:
    names = set()
    for d in catalog.DATASETS.values():
        names |= {d.name, d.folder, *d.domains, *d.aliases}
        if not d.remote:  # a hub data set's file paths are the hub's layout, which its reader documents
            names |= {p.split("/")[0] for decl in d.declared for p in decl.files.values() if "/" in p}
    modules = [
        *(REPO / "tasks").glob("*.py"),
        REPO / "tasks" / "sources" / "hub2023.py",
        REPO / "benchmark" / "commands" / "tasks.py",
        REPO / "benchmark" / "commands" / "data.py",
    ]
    for path in modules:
        found = {s for s in _string_constants(path) for n in names if n in s.split("/") or s == n}
        assert not found, f"{path.name} codes {sorted(found)}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, r"unknown field\(s\) \['colour'\]"),
        ({"format": "parquet"}, r"field 'format' must be one of"),
        ({"ratings": "stars"}, r"field 'ratings' must be one of"),
        ({"folder": "../elsewhere"}, r"field 'folder' .* without '\.\.'"),
        ({"provenance": {"repository": "a/b", "commit": "abc", "path": "d"}}, r"40-digit commit"),
        ({"provenance": {"repository": "a/b", "path": "d"}}, r"\[provenance\]: missing field 'commit'"),
        ({"domains": {"Books": {}}}, r"\[domains\.Books\]: missing field 'inter'"),
        ({"domains": {"Books": {"inter": "b", "shelf": 1}}}, r"\[domains\.Books\]: unknown field"),
        ({"domains": {"Bad Name": {"inter": "b"}}}, r"Amazon category name"),
        ({"domains": {}}, r"declares no domain"),
        ({"ids": {"users": "shared"}}, r"\[ids\] users must be one of \('raw',\)"),
        (
            {"domains": {"Books": {"inter": "b", "aliases": ["M"]}, "M": {"inter": "m"}}},
            r"alias 'M' of domain 'Books' names another domain",
        ),
    ],
)
def test_a_bad_declaration_names_the_file_and_field(change: dict, message: str) -> None:
    good = {
        "name": "d",
        "format": "recbole",
        "folder": "d",
        "ratings": "explicit",
        "timestamps": False,
        "raw_item_ids": True,
        "provenance": {"repository": "a/b", "commit": "0" * 40, "path": "x"},
        "domains": {"Books": {"inter": "b.inter"}},
    }
    catalog.parse_dataset(good, "d.toml")
    with pytest.raises(DataError, match=r"d\.toml.*" + message):
        catalog.parse_dataset({**good, **change}, "d.toml")


# ---------------------------------------------------------------- folders outside the package


EXAMPLE = EXAMPLES / "custom-dataset"


@pytest.fixture
def example_specs() -> Path:
    """The README's worked example on the search path (as ``--specs`` would put it)."""
    search.use_spec_dirs([EXAMPLE])
    return EXAMPLE


def package_ids() -> set[str]:
    return {p.stem for p in search.PACKAGE_TASKS.glob("*.toml")}


def test_the_worked_example_adds_a_data_set_and_two_tasks_without_python(example_specs: Path) -> None:
    found = find_specs()
    ours = {p.stem for p in example_specs.glob("*.toml")}
    assert len(ours) == 2 and found.errors == {}
    assert set(found.specs) == package_ids() | ours
    assert set(package_specs()) == package_ids()
    assert {found.origins[t].parent for t in ours} == {example_specs}
    (declaration,) = (example_specs / "datasets").glob("*.toml")
    dataset = catalog.get_dataset(declaration.stem)
    assert dataset.origin == str(declaration)
    shipped = read_sums(example_specs / "datasets")
    assert set(dataset.files) == set(shipped)


def test_the_worked_example_builds_and_changes_no_existing_split(
    example_specs: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    ours = sorted(p.stem for p in example_specs.glob("*.toml"))
    out = tmp_path / "ex"
    assert main(["tasks", "build", *ours, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    (declaration,) = (example_specs / "datasets").glob("*.toml")
    for task in ours:
        manifest = artifact.verify(out / task)
        assert manifest["audit"]["passed"], task
        assert manifest["dataset"]["declared_in"] == str(declaration)
    capsys.readouterr()
    assert main(["tasks", "list", "--out", str(out)]) == 0
    listed = capsys.readouterr().out.splitlines()
    for task in ours:
        (line,) = [row for row in listed if row.startswith(task + " ")]
        assert line.endswith(str(example_specs))
    # an existing task on the files the example re-declares: the same split with and without the example
    with_example = artifact.build(get_spec("L-beauty-k3"), data_dir, tmp_path / "with")
    monkeypatch.setenv(search.SPECS_ENV, "")
    without = artifact.build(get_spec("L-beauty-k3"), data_dir, tmp_path / "without")
    assert with_example["split_hash"] == without["split_hash"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _spec_text(task_id: str, **override: object) -> str:
    fields: dict[str, object] = {
        "id": task_id,
        "family": "R",
        "dataset": "2018-dense-books-movies",
        "source": ["Books"],
        "target": "Movies_and_TV",
        "beta": 0.2,
        "valid_fraction": 0.1,
        "k": 0,
        "split_seed": 1,
        "metrics": ["mae"],
    } | override
    lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n[budget]\ntrain_examples_multiple = 1\nadapt_steps = 1\nwall_seconds = 10\n"


def test_coldbench_specs_paths_duplicates_and_bad_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _write(one / "R-mine.toml", _spec_text("R-mine"))
    _write(two / "R-mine.toml", _spec_text("R-mine", split_seed=2))  # the same id again
    _write(two / "R-books2movies-b20-k0.toml", _spec_text("R-books2movies-b20-k0"))  # a package id
    _write(two / "R-broken.toml", _spec_text("R-broken", k=-1))
    monkeypatch.setenv(search.SPECS_ENV, f"{one}:{two}")
    found = find_specs()
    assert found.origins["R-mine"] == one / "R-mine.toml"
    assert found.origins["R-books2movies-b20-k0"].parent == search.PACKAGE_TASKS
    assert found.errors[str(two / "R-mine.toml")].endswith(f"is already defined by {one / 'R-mine.toml'}")
    assert "already defined by" in found.errors[str(two / "R-books2movies-b20-k0.toml")]
    assert "R-broken" not in found.specs
    with pytest.raises(DataError, match=r"R-broken\.toml: field 'k' must be >= 0, got -1"):
        get_spec("R-broken")
    assert set(found.specs) == package_ids() | {"R-mine"}


def test_tasks_list_reports_a_bad_file_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "specs"
    _write(folder / "R-bogus.toml", _spec_text("R-bogus", metrics=["bogus@10"]))
    assert main(["tasks", "list", "--specs", str(folder), "--format", "json"]) == 0
    captured = capsys.readouterr()
    listed = {row["id"] for row in json.loads(captured.out)}
    assert listed == package_ids()
    assert (
        f"skipped: {folder / 'R-bogus.toml'}: field 'metrics' has unknown metric(s) ['bogus@10']"
        in captured.err
    )
    assert "known: [" in captured.err and "'ndcg@10'" in captured.err
    assert main(["tasks", "build", "R-bogus", "--specs", str(folder), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "R-bogus.toml: field 'metrics' has unknown metric(s)" in err
    assert main(["tasks", "list", "--specs", str(tmp_path / "nowhere")]) == 0
    assert "spec folder not found" in capsys.readouterr().err


def test_a_bad_declaration_is_reported_and_its_tasks_fail_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "specs"
    declaration = (search.PACKAGE_DATASETS / "2018-dense-books-movies.toml").read_text()
    _write(
        folder / "datasets" / "dense-copy.toml",
        declaration.replace('"2018-dense-books-movies"', '"dense-copy"'),
    )
    _write(
        folder / "datasets" / "broken.toml",
        declaration.replace('name = "2018-dense-books-movies"', 'name = "broken"\nshelf = 3'),
    )
    _write(folder / "datasets" / "2018-dense-books-movies.toml", declaration)  # a package name again
    _write(folder / "R-copy.toml", _spec_text("R-copy", dataset="dense-copy", target="movies"))
    _write(folder / "R-broken.toml", _spec_text("R-broken", dataset="broken"))
    assert main(["tasks", "list", "--specs", str(folder), "--format", "json"]) == 0
    captured = capsys.readouterr()
    rows = {row["id"]: row for row in json.loads(captured.out)}
    assert rows["R-copy"]["target"] == "Movies_and_TV" and "R-broken" not in rows
    assert f"skipped: {folder / 'datasets' / 'broken.toml'}: unknown field(s) ['shelf']" in captured.err
    assert (
        f"skipped: {folder / 'R-broken.toml'}: field 'dataset': {folder / 'datasets' / 'broken.toml'}"
        in captured.err
    )


def test_adding_a_domain_or_files_to_the_data_root_changes_no_existing_task(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C-game failure: a data set gains a domain whose files are not there (yet) and a data root gains
    files; existing tasks still verify only their own files and build the same split."""
    root = tmp_path / "root"
    for rel in read_sums(data_dir):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(data_dir / rel)
    extra = _write(root / "2014-cdrib" / "game_cloth" / "train.txt", "0\t0\n")
    sums = (data_dir / SUMS_FILE).read_text() + f"{sha256_file(extra)}  ./2014-cdrib/game_cloth/train.txt\n"
    _write(root / SUMS_FILE, sums)
    specs = tmp_path / "specs"
    declaration = (
        (search.PACKAGE_DATASETS / "2014-cdrib.toml")
        .read_text()
        .replace('name = "2014-cdrib"', 'name = "cdrib-plus"')
    )
    declaration += (
        '\n[domains.Video_Games]\nprefix = "game"\ntrain = "game_cloth/train.txt"\n'
        'valid = "game_cloth/valid.txt"\ntest = "game_cloth/test.txt"\ncommon = "game_cloth/common.txt"\n'
    )
    _write(specs / "datasets" / "cdrib-plus.toml", declaration)
    cloth = (search.PACKAGE_TASKS / "C-cloth.toml").read_text()
    _write(
        specs / "C-cloth-plus.toml",
        cloth.replace('"C-cloth"', '"C-cloth-plus"').replace("2014-cdrib", "cdrib-plus"),
    )
    _write(
        specs / "C-game.toml",
        cloth.replace('"C-cloth"', '"C-game"')
        .replace("2014-cdrib", "cdrib-plus")
        .replace('target = "Clothing_Shoes_and_Jewelry"', 'target = "Video_Games"'),
    )
    monkeypatch.setenv(search.SPECS_ENV, str(specs))
    reference = artifact.build(get_spec("C-cloth"), data_dir, tmp_path / "ref")
    again = artifact.build(get_spec("C-cloth"), root, tmp_path / "out")
    plus = artifact.build(get_spec("C-cloth-plus"), root, tmp_path / "out")
    assert again["split_hash"] == reference["split_hash"]
    assert (
        plus["content"] == reference["content"] and plus["source_checksums"] == reference["source_checksums"]
    )
    with pytest.raises(DataError, match=r"game_cloth/valid\.txt"):  # one clear message, not a KeyError
        artifact.build(get_spec("C-game"), root, tmp_path / "out")


# ---------------------------------------------------------------- hub-scale filters


def _frame(rows: list[tuple[str, str, str]]) -> pa.Table:
    domain, user, item = zip(*rows, strict=True)
    n = len(rows)
    return pa.table(
        [list(domain), list(user), list(item), pa.array([4.0] * n), pa.array([1] * n, pa.int64())],
        schema=ARROW_SCHEMA,
    )


def _naive_kcore(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    while True:
        users = frame.groupby(["domain", "user"])["item"].transform("size")
        items = frame.groupby(["domain", "item"])["user"].transform("size")
        kept = frame[(users >= min_user) & (items >= min_item)]
        if len(kept) == len(frame):
            return kept
        frame = kept


def _spec(seed: int = 7, **filters_: int):
    data = {
        "id": "R-f",
        "family": "R",
        "dataset": "d",
        "source": ["A"],
        "target": "B",
        "k": 0,
        "split_seed": seed,
        "metrics": ["mae"],
        "beta": 0.2,
        "valid_fraction": 0.1,
        "budget": {"train_examples_multiple": 1, "adapt_steps": 1, "wall_seconds": 1},
        "filters": filters_,
    }
    return parse_spec(data, "f.toml")


def test_kcore_reaches_the_fixed_point_of_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    rows = list(
        zip(
            rng.choice(["A", "B"], n),
            [f"u{i}" for i in rng.zipf(1.6, n) % 300],
            [f"i{i}" for i in rng.zipf(1.4, n) % 200],
            strict=True,
        )
    )
    table, removed, _ = filters.reduce(_frame(rows), ("A", "B"))
    assert sum(removed.values()) == len(rows) - table.num_rows > 0
    got, report = filters.apply(table, _spec(min_user_interactions=3, min_item_interactions=4))
    expected = _naive_kcore(table.to_pandas(), 3, 4)
    key = ["domain", "user", "item"]
    assert (
        got.to_pandas()[key].sort_values(key).values.tolist()
        == expected[key].sort_values(key).values.tolist()
    )
    assert report["kcore_rounds"] > 1 and report["after"]["rows"] == len(expected)


def test_the_column_wise_duplicate_rule_is_the_one_rule() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame(
        {
            "domain": rng.choice(["A", "B"], n),
            "user": [f"u{i}" for i in rng.integers(0, 40, n)],
            "item": [f"i{i}" for i in rng.integers(0, 30, n)],
            "rating": rng.integers(1, 6, n).astype(float),
            "ts": rng.integers(0, 10**9, n),
        }
    )
    expected = deduplicate(frame)
    got, removed, report = filters.reduce(pa.Table.from_pandas(frame, preserve_index=False), ("A", "B"))
    got = deduplicate(canonical(got.to_pandas())).table  # sorted like the reference
    assert report is None and sum(removed.values()) == expected.rows_removed
    pd.testing.assert_frame_equal(got, expected.table, check_exact=False, rtol=1e-12)


def test_filters_read_dictionary_encoded_ids_like_plain_strings() -> None:
    """The hub reader hands ``reduce`` dictionary-encoded user/item columns: same rows, filters and report."""
    rng = np.random.default_rng(5)
    rows = [
        (d, f"u{u}", f"i{i}")
        for d, u, i in zip(
            rng.choice(["A", "B"], 3000), rng.zipf(1.5, 3000) % 150, rng.zipf(1.3, 3000) % 90, strict=True
        )
    ]
    plain = _frame(rows)
    encoded = plain.set_column(1, "user", pc.dictionary_encode(plain["user"]))
    encoded = encoded.set_column(2, "item", pc.dictionary_encode(encoded["item"]))
    spec = _spec(min_user_interactions=2, min_item_interactions=3)
    assert filters.reduce(encoded, ("A", "B"), spec) == filters.reduce(plain, ("A", "B"), spec)


def test_sampling_is_deterministic_bounded_and_independent_of_row_order() -> None:
    rows = [(d, f"u{u:03d}", f"i{i}") for u in range(200) for d in ("A", "B") for i in range(3)]
    spec = _spec(max_users=50, min_overlap=10)
    first, report = filters.apply(_frame(rows), spec)
    shuffled, _ = filters.apply(_frame(rows[::-1]), spec)
    users = set(first["user"].to_pylist())
    assert len(users) == 50 and users == set(shuffled["user"].to_pylist())
    assert report["sampled_users"] == 50 and report["after"]["overlap_users"] == 50
    other_seed, _ = filters.apply(_frame(rows), _spec(seed=8, max_users=50))
    assert set(other_seed["user"].to_pylist()) != users
    with pytest.raises(DataError, match=r"task R-f: 200 users .* fewer than \[filters\] min_overlap = 500"):
        filters.apply(_frame(rows), _spec(min_overlap=500))


# ---------------------------------------------------------------- Amazon Reviews 2023, offline, end to end


def write_hub_category(
    path: Path, users: int, items: int, per_user: int, seed: int, prefix: str = "U"
) -> None:
    """A rating-only file in the hub's schema (header, parent_asin, 1-5 stars, milliseconds), vectorized."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), per_user)
    table = pa.table(
        {
            "user_id": np.char.add(prefix, user.astype(str)),
            "parent_asin": np.char.add(f"B{seed}x", rng.integers(0, items, len(user)).astype(str)),
            "rating": rng.integers(1, 6, len(user)).astype(float),
            "timestamp": 1_500_000_000_000 + rng.integers(0, 10**11, len(user)),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(HUB_HEADER)
        pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a local mirror of four hub categories (fixtures) and its SHA256SUMS."""
    root = tmp_path_factory.mktemp("hub")
    folder = catalog.DATASETS[HUB].folder
    lines = []
    for seed, category in enumerate(
        ("Books", "Movies_and_TV", "Clothing_Shoes_and_Jewelry", "Sports_and_Outdoors")
    ):
        rel = f"{folder}/{catalog.DATASETS[HUB].domain_decl(category).files['file']}"
        write_hub_category(root / rel, users=700, items=250, per_user=12, seed=seed + 1)
        lines.append(f"{sha256_file(root / rel)}  ./{rel}")
    _write(root / SUMS_FILE, "\n".join(lines) + "\n")
    return root


@pytest.fixture
def hub_examples(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv(search.SPECS_ENV, str(EXAMPLES / "amazon2023"))
    return sorted(p.stem for p in (EXAMPLES / "amazon2023").glob("*.toml"))


def test_hub_examples_build_offline_through_datasets_and_run_a_floor(
    hub_root: Path, hub_examples: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = hub2023.datasets.load_dataset
    monkeypatch.setattr(hub2023.datasets, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    out = tmp_path / "tasks"
    for task in hub_examples:
        spec = get_spec(task)
        manifest = artifact.build(spec, hub_root, out)
        assert manifest["dataset"]["declared_in"] == f"tasks/datasets/{HUB}.toml"
        assert manifest["hub"]["resolved_revision"] is None and "local mirror" in manifest["hub"]["note"]
        assert set(manifest["hub"]["files"].values()) == {"mirror"}
        assert manifest["filters"]["after"]["overlap_users"] >= spec.filters["min_overlap"]
        assert set(manifest["source_checksums"]) == set(catalog.DATASETS[HUB].files_of(spec.domains()))
        assert manifest["audit"]["passed"] and manifest["counts"]["query_rows"] > 0
        assert artifact.build(spec, hub_root, out)["split_hash"] == manifest["split_hash"]  # reused
    assert calls and all(args[0] == "csv" for args in calls)
    from benchmark import runner

    family = {get_spec(t).family: t for t in hub_examples}
    result = runner.run_cell(
        family["R"], "item-mean", 0, hub_root, tmp_path / "runs", tasks_dir=out, threads=1
    )
    assert result.record.status == "ok", result.record


def test_hub_revision_is_main_unless_pinned_and_the_resolved_commit_is_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dataset = catalog.DATASETS[HUB]
    assert "b032d9bd" not in (REPO / "tasks" / "sources" / "hub2023.py").read_text()
    asked = []
    real = hub2023.resolve_revision
    monkeypatch.setattr(hub2023, "resolve_revision", lambda rev, repo: asked.append(rev) or "f" * 40)
    paths, sums, record = catalog.hub_sources(dataset, tmp_path, ("Books",))
    assert asked == ["main"] and sums == {} and record["resolved_revision"] == "f" * 40
    assert (
        paths["Books"]["file"]
        == f"hf://datasets/{hub2023.REPOSITORY}@{'f' * 40}/benchmark/5core/rating_only/Books.csv"
    )
    catalog.hub_sources(dataset, tmp_path, ("Books",), revision="a" * 40)
    assert asked[-1] == "a" * 40
    monkeypatch.setattr(hub2023, "resolve_revision", real)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub2023.resolve_revision("main") is None
    assert hub2023.resolve_revision("c" * 40) == "c" * 40  # a pinned hash needs no network
    _, _, record = catalog.hub_sources(dataset, tmp_path, ("Books",))
    assert record["resolved_revision"] is None and "offline" in record["note"]
    with pytest.raises(DataError, match=r"Books\.csv: HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set"):
        catalog.read_hub(dataset, tmp_path, ("Books",))


# ---------------------------------------------------------------- coldbench data fetch (loopback only)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving ``<tmp>/served`` (nothing beyond the loopback interface)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve(served: Path, data_dir: Path, name: str, corrupt: str | None = None) -> list[str]:
    """Copy a data set's files where its provenance says they live; optionally flip a byte of one."""
    dataset = catalog.DATASETS[name]
    prov = dataset.provenance
    rels = sorted(r for r in read_sums(search.PACKAGE_DATASETS) if r.startswith(dataset.folder + "/"))
    for rel in rels:
        inner = rel[len(dataset.folder) + 1 :]
        remote = prov.get("files", {}).get(inner, f"{prov['path']}/{inner}")
        target = served / prov["repository"] / prov["commit"] / remote
        target.parent.mkdir(parents=True, exist_ok=True)
        data = bytearray((data_dir / rel).read_bytes())
        if rel == corrupt:
            data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    return rels


def test_fetch_downloads_verifies_and_leaves_nothing_of_a_bad_file(
    server: tuple[str, Path], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, served = server
    name = "2018-dense-books-movies"
    bad = f"{name}/Amazon-Movies-Dense.inter"
    rels = _serve(served, data_dir, name, corrupt=bad)
    root = tmp_path / "root"
    assert main(["data", "fetch", name, "--data-dir", str(root), "--base-url", url]) == 1
    err = capsys.readouterr().err
    assert f"{root / bad}: checksum mismatch" in err and f"{url}/RaghavPu/" in err
    assert not (root / bad).exists() and not list((root / name).glob(".*"))  # no partial, no temporary
    good = [r for r in rels if r != bad]
    assert all(sha256_file(root / r) == sha256_file(data_dir / r) for r in good)
    assert set(read_sums(root)) == set(good)
    _serve(served, data_dir, name)  # the server is repaired
    assert main(["data", "fetch", name, "--data-dir", str(root), "--base-url", url]) == 0
    assert "1 downloaded, 1 already present" in capsys.readouterr().out
    assert read_sums(root) == {r: read_sums(data_dir)[r] for r in rels}
    assert main(["data", "verify", "--data-dir", str(root)]) == 0


def test_fetch_names_a_missing_file_and_its_url_and_maps_files_outside_the_path(
    server: tuple[str, Path], data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, served = server
    name = "2014-cdrib"
    rels = _serve(served, data_dir, name)
    prov = catalog.DATASETS[name].provenance
    assert (served / prov["repository"] / prov["commit"] / "LICENSE.txt").is_file()  # [provenance.files]
    gone = served / prov["repository"] / prov["commit"] / prov["path"] / "sport_cloth" / "test.txt"
    gone.unlink()
    root = tmp_path / "root"
    assert main(["data", "fetch", name, "--data-dir", str(root), "--base-url", url]) == 1
    err = capsys.readouterr().err
    assert f"{root / name / 'sport_cloth' / 'test.txt'}: download failed (HTTP Error 404" in err
    assert f"from {url}/{prov['repository']}/{prov['commit']}/{prov['path']}/sport_cloth/test.txt" in err
    assert len(read_sums(root)) == len(rels) - 1
    assert main(["data", "fetch", HUB, "--data-dir", str(root)]) == 2
    assert "nothing to fetch" in capsys.readouterr().err
    shutil.rmtree(root)

"""``coldbench data verify`` and ``coldbench data info`` on the real data root and on damaged copies of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from tasks.catalog import registry
from tasks.checksums import read_sums

# Measured counts of the shared data (its README.md): users, items, interactions, duplicate rows removed.
MEASURED = {
    ("2018-dense-books-movies", "Books"): (1_426, 723, 31_504, 6_645),
    ("2018-dense-books-movies", "Movies_and_TV"): (1_381, 1_338, 62_084, 5_939),
    ("2014-abxi", "Beauty"): (4_474, 10_379, 50_329, 0),
    ("2014-abxi", "Electronics"): (4_474, 14_188, 63_800, 0),
    ("2014-abxi", "Grocery_and_Gourmet_Food"): (7_144, 11_837, 83_663, 0),
    ("2014-abxi", "Home_and_Kitchen"): (7_144, 16_258, 89_885, 0),
    ("2014-cdrib", "Clothing_Shoes_and_Jewelry"): (41_829, 17_943, 194_121, 0),
    ("2014-cdrib", "Sports_and_Outdoors"): (27_328, 12_655, 170_426, 0),
}


def declared_local_domains() -> list[tuple[str, str]]:
    """(data set, domain) of every declared data set read from the data root, in listing order."""
    return [(d.name, domain) for d in registry().datasets.values() if not d.remote for domain in d.domains]


FIELDS = ("dataset", "domain", "users", "items", "interactions", "duplicate_rows_removed")
DAMAGED = "2014-abxi/abe/map_user_50.txt"
REMOVED = "2014-cdrib/sport_cloth/valid.txt"


@pytest.fixture
def linked_copy(data_dir: Path, tmp_path: Path) -> Path:
    """A data root whose files are symlinks to the real ones, so a test can replace any of them."""
    root = tmp_path / "amazon"
    for rel in [*read_sums(data_dir), "SHA256SUMS"]:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(data_dir / rel)
    return root


def damage_one_byte(root: Path, rel: str) -> None:
    path = root / rel
    data = bytearray(path.read_bytes())
    path.unlink()
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_passes_on_the_real_data(data_dir, capsys):
    assert main(["data", "verify", "--data-dir", str(data_dir)]) == 0
    assert f"{len(read_sums(data_dir))} files match" in capsys.readouterr().out


def test_verify_names_every_changed_or_missing_file(linked_copy, capsys):
    damage_one_byte(linked_copy, DAMAGED)
    (linked_copy / REMOVED).unlink()
    assert main(["data", "verify", "--data-dir", str(linked_copy)]) == 1
    err = capsys.readouterr().err
    assert f"{linked_copy / DAMAGED}: checksum mismatch" in err
    assert f"{linked_copy / REMOVED}: missing" in err
    assert f"2 of {len(read_sums(linked_copy))} files" in err
    assert len(err.strip().splitlines()) == 3  # one line per bad file, then the summary


def test_verify_uses_coldbench_data_when_no_data_dir_is_given(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("COLDBENCH_DATA", str(data_dir))
    assert main(["data", "verify"]) == 0
    monkeypatch.delenv("COLDBENCH_DATA")
    assert main(["data", "verify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --data-dir or set COLDBENCH_DATA" in err


def test_info_json_counts_every_dataset_and_domain(data_dir, capsys):
    assert main(["data", "info", "--data-dir", str(data_dir), "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [(row["dataset"], row["domain"]) for row in got] == declared_local_domains()
    measured = {(row["dataset"], row["domain"]): tuple(row[f] for f in FIELDS[2:]) for row in got}
    assert {k: measured[k] for k in MEASURED} == MEASURED
    assert all(set(row) == set(FIELDS) for row in got)


def test_info_prints_a_table_by_default(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("COLDBENCH_DATA", str(data_dir))
    assert main(["data", "info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(FIELDS)
    assert ["2018-dense-books-movies", "Books", "1,426", "723", "31,504", "6,645"] in [
        x.split() for x in lines
    ]
    assert len(lines) == 1 + len(declared_local_domains())


def test_info_refuses_a_corrupt_file_with_one_line_naming_it_and_how_to_get_it(linked_copy, capsys):
    damage_one_byte(linked_copy, DAMAGED)
    assert main(["data", "info", "--data-dir", str(linked_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{linked_copy / DAMAGED}: checksum mismatch" in err and "README.md" in err


def test_info_names_a_missing_file_and_how_to_get_it(linked_copy, capsys):
    (linked_copy / REMOVED).unlink()
    assert main(["data", "info", "--data-dir", str(linked_copy)]) == 2
    err = capsys.readouterr().err
    assert f"{linked_copy / REMOVED}: missing" in err and "hub reader" in err


def test_verify_without_sums_file_says_what_is_expected(tmp_path, capsys):
    (tmp_path / "empty_root").mkdir()
    assert main(["data", "verify", "--data-dir", str(tmp_path / "empty_root")]) == 2
    assert "SHA256SUMS: file not found" in capsys.readouterr().err

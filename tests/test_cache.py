"""The table cache: a hit skips the readers, a changed source misses, a failed read stores nothing."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from benchmark.commands.data import info_rows
from tasks import catalog
from tasks.schema import DataError

DENSE = "2018-dense-books-movies"
BOOKS = f"{DENSE}/Amazon-Books-Dense.inter"
MOVIES = f"{DENSE}/Amazon-Movies-Dense.inter"
HEADER = "user_id\titem_id\trating\n"


def write_root(root: Path, books: str, movies: str = "A1\tM1\t4.0\n") -> Path:
    """A data root holding the family R files (small, in their exact format) and a matching SHA256SUMS."""
    files = {BOOKS: HEADER + books, MOVIES: HEADER + movies}
    sums = []
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        sums.append(f"{hashlib.sha256(text.encode()).hexdigest()}  ./{rel}")
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return root


@pytest.fixture
def reads(monkeypatch) -> list[Path]:
    """Count how often the family R reader really reads its files."""
    calls: list[Path] = []
    spec = catalog.DATASETS[DENSE]

    def counting(root: Path) -> pd.DataFrame:
        calls.append(root)
        return spec.read(root)

    monkeypatch.setitem(catalog.DATASETS, DENSE, dataclasses.replace(spec, read=counting))
    return calls


def fail_reading(monkeypatch, name: str = DENSE) -> None:
    def broken(root: Path) -> pd.DataFrame:
        raise DataError(f"{root}: the reader ran although the cache should have answered")

    monkeypatch.setitem(catalog.DATASETS, name, dataclasses.replace(catalog.DATASETS[name], read=broken))


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_second_load_is_a_cache_hit_without_reading_sources(tmp_path, monkeypatch):
    root = write_root(tmp_path / "data", "A1\tB1\t5.0\nA1\tB1\t3.0\nA2\tB1\t1.0\n")
    cache = tmp_path / "cache"
    first = catalog.load(DENSE, root, cache)
    assert first.duplicate_rows_removed == {"Books": 1, "Movies_and_TV": 0}
    fail_reading(monkeypatch)
    second = catalog.load(DENSE, root, cache)
    pd.testing.assert_frame_equal(second.table, first.table)
    assert second.duplicate_rows_removed == first.duplicate_rows_removed
    assert second.checksums == first.checksums


def test_changed_source_invalidates_the_cache(tmp_path, reads):
    root = write_root(tmp_path / "data", "A1\tB1\t5.0\n")
    cache = tmp_path / "cache"
    catalog.load(DENSE, root, cache)
    catalog.load(DENSE, root, cache)
    assert len(reads) == 1
    write_root(root, "A1\tB1\t5.0\nA2\tB2\t2.0\n")  # new content and its new checksum
    changed = catalog.load(DENSE, root, cache)
    assert len(reads) == 2
    books = changed.table[changed.table["domain"] == "Books"]
    assert list(books["user"]) == ["A1", "A2"]


def test_new_reader_version_invalidates_the_cache(tmp_path, reads, monkeypatch):
    root = write_root(tmp_path / "data", "A1\tB1\t5.0\n")
    catalog.load(DENSE, root, tmp_path / "cache")
    monkeypatch.setattr(catalog, "READER_VERSION", catalog.READER_VERSION + 1)
    catalog.load(DENSE, root, tmp_path / "cache")
    assert len(reads) == 2


def test_nothing_is_cached_from_a_failed_read(tmp_path, monkeypatch):
    root = write_root(tmp_path / "data", "A1\tB1\t5.0\nA2\tB2\tlots\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"Amazon-Books-Dense\.inter line 3: rating 'lots' is not a number"):
        catalog.load(DENSE, root, cache)
    assert cache_files(cache) == []
    fail_reading(monkeypatch)
    with pytest.raises(DataError, match="the reader ran"):  # still no cache entry to answer from
        catalog.load(DENSE, root, cache)
    assert cache_files(cache) == []


def test_a_source_that_no_longer_matches_its_checksum_is_refused_before_the_cache(tmp_path, monkeypatch):
    root = write_root(tmp_path / "data", "A1\tB1\t5.0\n")
    cache = tmp_path / "cache"
    catalog.load(DENSE, root, cache)
    stored = cache_files(cache)
    (root / BOOKS).write_text(HEADER + "A1\tB1\t1.0\n")  # edited without updating SHA256SUMS
    fail_reading(monkeypatch)
    with pytest.raises(DataError, match=r"Amazon-Books-Dense\.inter: checksum mismatch"):
        catalog.load(DENSE, root, cache)
    (root / BOOKS).unlink()
    with pytest.raises(DataError, match=r"Amazon-Books-Dense\.inter: missing\. The files come with"):
        catalog.load(DENSE, root, cache)
    assert cache_files(cache) == stored


def test_second_data_info_on_the_real_data_reads_no_source(data_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = info_rows(data_dir, cache)
    for name in catalog.DATASETS:
        fail_reading(monkeypatch, name)
    assert info_rows(data_dir, cache) == first

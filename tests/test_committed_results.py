"""The committed results: every record validates and the committed LEADERBOARD.md is a fresh build of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.records import iter_records, load_record
from leaderboard.build import MARKDOWN, build

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "leaderboard" / "results"
COMMITTED = REPO / "leaderboard" / MARKDOWN


@pytest.fixture(scope="module")
def records() -> list[Path]:
    found = iter_records(RESULTS) if RESULTS.is_dir() else []
    if not found:
        pytest.skip("no committed results in leaderboard/results yet")
    return found


def test_committed_records_validate_and_sit_in_their_cells(records: list[Path]) -> None:
    for path in records:
        record = load_record(path)
        assert path.parts[-3:] == (record.task.id, record.method.name, f"seed-{record.seed}.json")


def test_committed_leaderboard_equals_a_fresh_build(records: list[Path], tmp_path: Path) -> None:
    build(RESULTS, tmp_path)
    assert COMMITTED.is_file(), "leaderboard/LEADERBOARD.md is missing: run tox -e bench"
    assert (tmp_path / MARKDOWN).read_bytes() == COMMITTED.read_bytes()

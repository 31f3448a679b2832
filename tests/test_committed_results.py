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


def test_committed_records_match_the_code_on_main(
    records: list[Path], data_dir: Path, tmp_path: Path
) -> None:
    """Records are current: the split hash the builder makes today and the method's default config hash.

    A protocol or default change that moves either without re-running the affected cells fails here.
    """
    from benchmark.registry import load_method
    from benchmark.runner import config_hash, resolve_config
    from tasks import artifact
    from tasks.spec import get_spec

    hashes: dict[str, str] = {}
    stale = []
    for path in records:
        record = load_record(path)
        task = record.task.id
        if task not in hashes:
            hashes[task] = artifact.build(get_spec(task), data_dir, tmp_path)["split_hash"]
        expected = config_hash(resolve_config(load_method(record.method.name), record.task.family, {}))
        if record.task.split_hash != hashes[task] or record.method.config_hash != expected:
            stale.append(path.relative_to(RESULTS).as_posix())
    assert not stale, f"{len(stale)} stale record(s), re-run them with tox -e bench: {stale[:5]}"

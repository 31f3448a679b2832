"""The committed results: every record validates and the committed LEADERBOARD.md is a fresh build of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.records import iter_records, load_record, record_path
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
        assert path == record_path(RESULTS, *record.path_parts)


def test_committed_leaderboard_equals_a_fresh_build(records: list[Path], tmp_path: Path) -> None:
    build(RESULTS, tmp_path)
    assert COMMITTED.is_file(), "leaderboard/LEADERBOARD.md is missing: run tox -e bench"
    assert (tmp_path / MARKDOWN).read_bytes() == COMMITTED.read_bytes()


def test_committed_records_match_the_code_on_main(
    records: list[Path], data_dir: Path, tmp_path: Path
) -> None:
    """Records are current: the split hash the builder makes today and the config the code would run.

    The standard record's config is its task group's tuned one where ``leaderboard/tuned`` has it, else the
    default; a profile record's is that profile's. A protocol, default or tuning change that moves either
    without re-running the affected cells fails here.
    """
    from benchmark.registry import load_method
    from benchmark.runner import SET_VARIANT, cell_config, config_hash, resolve_config
    from tasks import artifact
    from tasks.spec import get_spec

    hashes: dict[str, str] = {}
    stale = []
    for path in records:
        record = load_record(path)
        task, ref = record.task.id, record.method
        if task not in hashes:
            hashes[task] = artifact.build(get_spec(task), data_dir, tmp_path)["split_hash"]
        cls, spec = load_method(ref.name), get_spec(task)
        if not ref.variant.startswith(SET_VARIANT):
            overrides = {"profile": ref.variant} if ref.variant else {}
            chosen = cell_config(ref.name, cls, spec, overrides)
            trials = ref.trials if chosen.trials is None else chosen.trials  # untuned: in-fit grid size
            current = (config_hash(chosen.config), trials, chosen.variant)
        else:  # an ad hoc --set record: its config must still resolve to itself
            current = (config_hash(resolve_config(cls, spec.family, ref.config)), ref.trials, ref.variant)
        if record.task.split_hash != hashes[task] or (ref.config_hash, ref.trials, ref.variant) != current:
            stale.append(path.relative_to(RESULTS).as_posix())
    assert not stale, f"{len(stale)} stale record(s), re-run them with tox -e bench: {stale[:5]}"

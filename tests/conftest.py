"""Shared fixtures: the real data root (skipped with a reason when absent) and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "amazon"

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


def real_data_dir() -> Path | None:
    chosen = Path(os.environ.get("COLDBENCH_DATA") or DEFAULT_DATA)
    return chosen if (chosen / "SHA256SUMS").is_file() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip(
            "real Amazon data not found: set COLDBENCH_DATA or place the data root at ../shared/data/amazon"
        )
    return found


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets its own cache so tests never read a developer's stale cache."""
    monkeypatch.setenv("COLDBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("COLDBENCH_SPECS", "")  # --specs extends the process environment: start clean

"""Verify data files against the ``SHA256SUMS`` that ships with the data root."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.schema import DataError

SUMS_FILE = "SHA256SUMS"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(data_dir: Path) -> dict[str, str]:
    """``SHA256SUMS`` as {relative path: hex digest}; a malformed line is a DataError naming it."""
    path = data_dir / SUMS_FILE
    if not path.is_file():
        raise DataError(
            f"{path}: file not found; point --data-dir or COLDBENCH_DATA at a data root holding SHA256SUMS"
        )
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataError(f"{path} line {number}: expected '<sha256>  <path>', got {line[:80]!r}")
        rel = parts[1].strip().lstrip("*")
        sums[rel.removeprefix("./")] = parts[0].lower()
    return sums


def verify(data_dir: Path, only: list[str] | None = None) -> dict[str, str]:
    """Check the listed files (or those under the prefixes in ``only``); {path: problem} per bad file."""
    problems: dict[str, str] = {}
    for rel, expected in sorted(read_sums(data_dir).items()):
        if only is not None and not any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in only):
            continue
        path = data_dir / rel
        if not path.is_file():
            problems[rel] = "missing"
        elif sha256_file(path) != expected:
            problems[rel] = "checksum mismatch"
    return problems


def require_verified(data_dir: Path, files: list[str], hint: str) -> dict[str, str]:
    """Verify ``files`` (paths relative to the data root); return their digests or raise one DataError."""
    sums = read_sums(data_dir)
    unlisted = [f for f in files if f not in sums]
    if unlisted:
        raise DataError(f"{data_dir / SUMS_FILE}: no checksum listed for {unlisted}")
    problems = {f: p for f, p in verify(data_dir, files).items() if f in files}
    if problems:
        lines = "; ".join(f"{data_dir / f}: {p}" for f, p in problems.items())
        raise DataError(f"{lines}. {hint}")
    return {f: sums[f] for f in files}

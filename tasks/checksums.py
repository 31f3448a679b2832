"""Verify data files against the ``SHA256SUMS`` that ships with the data root."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from tasks.schema import DataError

SUMS_FILE = "SHA256SUMS"
HEX64 = re.compile(r"[0-9a-fA-F]{64}")


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
        if len(parts) != 2 or not HEX64.fullmatch(parts[0]):
            raise DataError(f"{path} line {number}: expected '<sha256>  <path>', got {line[:80]!r}")
        rel = parts[1].strip().lstrip("*").removeprefix("./")
        problem = _outside_root(rel)
        if problem:
            raise DataError(f"{path} line {number}: path {rel!r} {problem}; only files under the data root")
        sums[rel] = parts[0].lower()
    return sums


def _outside_root(rel: str) -> str:
    """Why ``rel`` would name a file outside the data root ('' when it does not): never hash beyond it."""
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(rel).drive:
        return "is absolute"
    if ".." in pure.parts:
        return "climbs out with '..'"
    return ""


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

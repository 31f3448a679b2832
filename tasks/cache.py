"""Parquet cache of canonical tables, keyed by the source files' checksums and the reader version.

A changed source file changes its checksum and so the key; a failed read writes nothing, and a cache file
appears only by an atomic rename, so a killed process never leaves a half-written entry. Each entry's
metadata carries the sha256 of its Parquet file, checked on every read: an edited, truncated or unreadable
entry is rebuilt from the sources (with a warning), never trusted. Every writer here goes through a
temporary file and a rename, so a full disk leaves the previous file whole and no temporary behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.checksums import sha256_file
from tasks.schema import ARROW_SCHEMA, canonical

DIGEST_KEY = "parquet_sha256"


class NotWritable(OSError):
    """A folder the command must write to cannot be written; the message names it and what it is for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CacheWarning(UserWarning):
    """A cache entry failed its check and is being rebuilt."""


def default_cache_dir() -> Path:
    if os.environ.get("COLDBENCH_CACHE"):
        return Path(os.environ["COLDBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coldbench"


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def tmp_name(path: Path) -> Path:
    """The temporary name a writer uses next to ``path``; it carries the pid, so a clean-up can tell whose."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def _replacing(path: Path):
    """Yield a temporary path next to ``path``; rename it over ``path`` on success, remove it on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None:  # e.g. ENOSPC from a write: name the file being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    with _replacing(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """``Path.write_text(text, encoding="utf-8", newline="\\n")``, atomically (see ``write_bytes_atomic``)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_parquet_atomic(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with _replacing(path) as tmp:
        pq.write_table(table, tmp)


def write_json_atomic(obj: object, path: Path) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _entry_problem(path: Path, meta: Path, stats_key: str) -> tuple[str, dict | None]:
    """Why a cache entry cannot be used ('' when it can), and its stats."""
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable metadata {meta.name} ({type(exc).__name__})", None
    if not isinstance(info, dict) or stats_key not in info:
        return f"metadata {meta.name} lacks {stats_key!r}", None
    if DIGEST_KEY not in info:
        return "no content digest (written by an older version)", None
    if sha256_file(path) != info[DIGEST_KEY]:
        return "sha256 differs from its metadata (edited or truncated)", None
    return "", info[stats_key]


def cached_table(cache_dir: Path, key: str, stats_key: str) -> tuple[pd.DataFrame, dict] | None:
    """The cached table and stats of ``key``, or None: a bad entry is removed, with a warning, and rebuilt."""
    path = cache_dir / f"{key}.parquet"
    meta = cache_dir / f"{key}.json"
    if not (path.is_file() and meta.is_file()):
        return None
    problem, stats = _entry_problem(path, meta, stats_key)
    if not problem:
        try:
            return canonical(pq.read_table(path).to_pandas()), stats  # type: ignore[return-value]
        except (OSError, pa.ArrowException, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__}: {exc})"
    warnings.warn(
        f"cache entry {path}: {problem}; rebuilding it from the sources", CacheWarning, stacklevel=2
    )
    for stale in (path, meta):
        with contextlib.suppress(OSError):
            stale.unlink()
    return None


def store_table(cache_dir: Path, key: str, table: pd.DataFrame, stats_key: str, stats: dict) -> None:
    path = cache_dir / f"{key}.parquet"
    write_parquet_atomic(table, path, ARROW_SCHEMA)
    write_json_atomic({stats_key: stats, DIGEST_KEY: sha256_file(path)}, cache_dir / f"{key}.json")


def require_writable(folder: Path, what: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before any work is done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".coldbench-probe-", suffix=".tmp"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NotWritable(f"{what} {folder} is not writable ({reason})") from exc

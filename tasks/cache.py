"""Parquet cache of canonical tables, keyed by the source files' checksums and the reader version.

A changed source file changes its checksum and so the key; a failed read writes nothing, and a cache file
appears only by an atomic rename, so a killed process never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.schema import ARROW_SCHEMA, canonical


def default_cache_dir() -> Path:
    if os.environ.get("COLDBENCH_CACHE"):
        return Path(os.environ["COLDBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coldbench"


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def write_parquet_atomic(frame: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json_atomic(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def cached_table(cache_dir: Path, key: str, stats_key: str) -> tuple[pd.DataFrame, dict] | None:
    path = cache_dir / f"{key}.parquet"
    meta = cache_dir / f"{key}.json"
    if not (path.is_file() and meta.is_file()):
        return None
    return canonical(pq.read_table(path).to_pandas()), json.loads(meta.read_text())[stats_key]


def store_table(cache_dir: Path, key: str, table: pd.DataFrame, stats_key: str, stats: dict) -> None:
    write_parquet_atomic(table, cache_dir / f"{key}.parquet", ARROW_SCHEMA)
    write_json_atomic({stats_key: stats}, cache_dir / f"{key}.json")

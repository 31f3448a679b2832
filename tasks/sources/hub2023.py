"""Amazon Reviews 2023 (Hou et al., 2024) from the Hugging Face hub, read through the ``datasets`` library.

Hub repository ``McAuley-Lab/Amazon-Reviews-2023``; per category two file kinds:

- ``rating_only`` (default): ``benchmark/<core>/rating_only/<Category>.csv``, header
  ``user_id,parent_asin,rating,timestamp``; ``core`` is ``5core`` (default) or ``0core``.
- ``reviews``: ``raw/review_categories/<Category>.jsonl``, full reviews; the same four fields are kept.

``timestamp`` is in milliseconds and becomes ``ts`` in whole seconds (floor); the item is ``parent_asin``, so
variants of one product are one item. Files are read by the packaged ``csv`` / ``json`` builders of
``datasets`` from explicit ``data_files``: the repository's loading script is never run and remote code is
never enabled, so only data is downloaded. Rows stay in Arrow (``read_category_arrow``) until the caller has
filtered them, so a category of tens of millions of ratings never becomes Python objects.

The revision is the hub's ``main`` branch unless a commit hash is given; ``resolve_revision`` asks the hub
which commit that is, so that a task can record it and read every category at that one commit. The
categories a task may use are declared in ``tasks/datasets/amazon-reviews-2023.toml``.

With internet access, choose categories by their hub names::

    from tasks.sources import hub2023
    table, removed = hub2023.load_categories(["Books", "Movies_and_TV"])        # 5-core ratings
    table, removed = hub2023.load_categories(["Video_Games"], core="0core")     # every rating
    table, removed = hub2023.load_categories(["All_Beauty"], kind="reviews")

Offline (tests, CI, or a local mirror), pass files of the same format, which go through the same
``datasets.load_dataset`` call: ``load_categories(["Books"], data_files={"Books": "Books.csv"})``.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import ARROW_SCHEMA, DataError, canonical, check_ratings, deduplicate
from tasks.sources.reviews_json import JsonFields, bad_line_error, first_invalid_row
from tasks.sources.text import require_file, require_values, to_float, to_int

REPOSITORY = "McAuley-Lab/Amazon-Reviews-2023"
DEFAULT_REVISION = "main"
COMMIT = re.compile(r"[0-9a-f]{40}")
KINDS = ("rating_only", "reviews")
CORES = ("5core", "0core")
FIELDS = JsonFields(user="user_id", item="parent_asin", rating="rating", ts="timestamp")
CSV_COLUMNS = [FIELDS.user, FIELDS.item, FIELDS.rating, FIELDS.ts]
STRING_FEATURES = datasets.Features({c: datasets.Value("string") for c in CSV_COLUMNS})
HINT = f"files come from the hub repository {REPOSITORY} (see tasks/sources/hub2023.py)"


def hub_path(category: str, kind: str = "rating_only", core: str = "5core") -> str:
    """The file of ``category`` inside the hub repository."""
    if kind not in KINDS or core not in CORES:
        raise DataError(f"unknown kind {kind!r} or core {core!r}; expected kind in {KINDS}, core in {CORES}")
    if not re.fullmatch(r"[A-Za-z0-9_]+", category):
        raise DataError(f"{category!r} is not an Amazon Reviews 2023 category name (letters, digits, _)")
    if kind == "reviews":
        return f"raw/review_categories/{category}.jsonl"
    return f"benchmark/{core}/rating_only/{category}.csv"


def file_url(path: str, revision: str = DEFAULT_REVISION, repository: str = REPOSITORY) -> str:
    """The ``hf://`` URL of a file of the hub repository at ``revision`` (branch, tag or commit)."""
    return f"hf://datasets/{repository}@{revision}/{path}"


def hub_url(
    category: str, kind: str = "rating_only", core: str = "5core", revision: str = DEFAULT_REVISION
) -> str:
    return file_url(hub_path(category, kind, core), revision)


def resolve_revision(revision: str = DEFAULT_REVISION, repository: str = REPOSITORY) -> str | None:
    """The commit hash the hub resolves ``revision`` to; a full hash is its own answer.

    None when the hub cannot be asked (offline, no network, unknown revision): the caller records null and
    the read that follows reports the real problem.
    """
    if COMMIT.fullmatch(revision):
        return revision
    if _offline():
        return None
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(repository, revision=revision).sha
    except Exception:  # any failure to ask leaves the revision unresolved, see above
        return None
    return sha if isinstance(sha, str) and COMMIT.fullmatch(sha) else None


def load_categories(
    categories: list[str],
    kind: str = "rating_only",
    core: str = "5core",
    data_files: Mapping[str, str | Path] | None = None,
    cache_dir: str | Path | None = None,
    revision: str = DEFAULT_REVISION,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Canonical interactions of ``categories`` (domain = category), deduplicated by the one rule.

    Returns the table and the number of duplicate rows removed per category. ``data_files`` maps a category
    to a local file (``.csv`` / ``.jsonl``, optionally ``.gz``) that replaces the hub file; ``cache_dir`` is
    the ``datasets`` cache (default: its own).
    """
    tables, removed = [], {}
    for category in categories:
        dedup = deduplicate(read_category(category, kind, core, data_files, cache_dir, revision))
        tables.append(dedup.table)
        removed[category] = dedup.rows_removed
    return canonical(pd.concat(tables, ignore_index=True)), removed


def read_category(
    category: str,
    kind: str = "rating_only",
    core: str = "5core",
    data_files: Mapping[str, str | Path] | None = None,
    cache_dir: str | Path | None = None,
    revision: str = DEFAULT_REVISION,
) -> pd.DataFrame:
    """One category's rows as a canonical table (duplicates kept)."""
    if data_files is not None:
        if category not in data_files:
            raise DataError(f"data_files has no file for category {category!r} (it has {sorted(data_files)})")
        source = str(data_files[category])
    else:
        source = hub_url(category, kind, core, revision)
    return canonical(read_category_arrow(category, source, cache_dir).to_pandas())


def read_category_arrow(category: str, source: str, cache_dir: str | Path | None = None) -> pa.Table:
    """The rows of one file (local path or ``hf://`` URL) as a canonical Arrow table, duplicates kept."""
    remote = "://" in source
    if not remote:
        require_file(Path(source), HINT)
    elif _offline():
        raise DataError(
            f"{source}: HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set, so the hub cannot be reached; unset it, "
            f"or pass data_files with local copies of the files"
        )
    builder = "csv" if re.search(r"\.csv(\.gz)?$", source) else "json"
    options = {}
    if builder == "csv":  # all text, parsed below; blank lines kept so that row i is line i + 2
        options = {"features": STRING_FEATURES, "skip_blank_lines": False, "keep_default_na": False}
    try:
        dataset = datasets.load_dataset(
            builder,
            data_files={"train": [source]},
            split="train",
            cache_dir=None if cache_dir is None else str(cache_dir),
            **options,
        )
    except FileNotFoundError as exc:
        raise DataError(f"{source}: file not found ({exc}); {HINT}") from exc
    except datasets.exceptions.DatasetGenerationError as exc:
        raise _describe(exc.__cause__ or exc, source, remote) from exc
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise _describe(exc, source, remote) from exc
    table = dataset.data.table
    if builder == "csv":
        return _from_csv(table, source, category)
    return _from_json(table, source, category, remote)


def _offline() -> bool:
    flags = (os.environ.get(k, "").upper() for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    return bool(datasets.config.HF_HUB_OFFLINE) or any(f in {"1", "ON", "YES", "TRUE"} for f in flags)


def _describe(cause: BaseException, source: str, remote: bool) -> DataError:
    """One clear DataError for whatever the ``datasets`` builders raised."""
    text = str(cause)
    columns = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
    if columns:
        expected, line, got = columns.groups()
        return DataError(f"{source} line {line}: expected {expected} columns, got {got}")
    if isinstance(cause, EOFError | zlib.error | gzip.BadGzipFile) or (
        source.endswith(".gz") and isinstance(cause, OSError)
    ):
        return DataError(f"{source}: unreadable gzip ({text}); re-download the file")
    if isinstance(cause, pd.errors.EmptyDataError):
        return DataError(f"{source}: file is empty")
    if "corresponds to no data" in text:
        return DataError(f"{source}: file has no data rows")
    if isinstance(cause, KeyError | datasets.table.CastError):
        return DataError(f"{source} line 1: header is not {','.join(CSV_COLUMNS)} ({text.splitlines()[0]})")
    if (
        isinstance(cause, pa.ArrowInvalid | ValueError)
        and not remote
        and not source.endswith((".csv", ".csv.gz"))
    ):
        return bad_line_error(Path(source), FIELDS, text)
    return DataError(f"{source}: cannot read ({type(cause).__name__}: {text})")


def _from_csv(table: pa.Table, source: str, category: str) -> pa.Table:
    present = np.zeros(table.num_rows, dtype=bool)
    for name in CSV_COLUMNS:
        present |= pc.fill_null(pc.not_equal(table[name], ""), False).to_numpy(zero_copy_only=False)
    last = int(np.flatnonzero(present)[-1]) if present.any() else -1
    table = table.slice(0, last + 1)  # trailing blank lines are not rows
    if table.num_rows == 0:
        raise DataError(f"{source}: file has no data rows")
    require_values(table, CSV_COLUMNS, source, 1)
    rating = to_float(table[FIELDS.rating], source, FIELDS.rating, 1)
    check_ratings(rating, source, np.arange(len(rating)) + 2)
    ts_ms = to_int(table[FIELDS.ts], source, FIELDS.ts, 1)
    return _canonical(table, rating, ts_ms, category)


def _from_json(table: pa.Table, source: str, category: str, remote: bool) -> pa.Table:
    missing = [c for c in CSV_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{source}: no line has the field(s) {missing}; expected {CSV_COLUMNS}")
    typed = None
    try:
        typed = pa.table({f.name: pc.cast(table[f.name], f.type) for f in FIELDS.schema()})
        bad_row = first_invalid_row(typed, FIELDS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        bad_row, problem = 0, str(exc)
    else:
        problem = "missing ID, rating outside 1..5 or negative timestamp"
    if bad_row is not None or typed is None:
        if not remote:
            raise bad_line_error(Path(source), FIELDS, problem)
        raise DataError(f"{source} record {bad_row + 1}: {problem}")
    rating = typed[FIELDS.rating].to_numpy(zero_copy_only=False)
    return _canonical(typed, rating, typed[FIELDS.ts].to_numpy(zero_copy_only=False), category)


def _canonical(table: pa.Table, rating: np.ndarray, ts_ms: np.ndarray, category: str) -> pa.Table:
    """Canonical columns in Arrow: IDs stay Arrow strings (no Python object per row)."""
    return pa.table(
        [
            pa.repeat(category, table.num_rows),
            _strings(table[FIELDS.user]),
            _strings(table[FIELDS.item]),
            pa.array(rating, type=pa.float64()),
            pa.array(np.floor_divide(ts_ms, 1000), type=pa.int64()),
        ],
        schema=ARROW_SCHEMA,
    )


def _strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if column.type == pa.string() else pc.cast(column, pa.string())

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

Memory. ``datasets`` returns a memory-mapped table, and every page of it that is read stays in the process's
resident memory while the mapping lives (a 10-million-row category is about 700 MB of text columns). So the
reader takes only the names of the Arrow cache files, lets the mapping go, and streams the files in blocks
of ``BLOCK_ROWS`` rows: each block is checked and converted, and only compact columns are kept (user and item
as int32 codes into one dictionary of distinct IDs, rating float64, time int64; ``COMPACT_SCHEMA``). A block
that fails a check sends the reader back to the whole-table path, which names the file and line exactly.

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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import ARROW_SCHEMA, DataError, canonical, check_ratings, deduplicate
from tasks.sources.reviews_json import JsonFields, bad_line_error, first_invalid_row
from tasks.sources.text import NON_NEGATIVE, NUMBER, require_file, require_values, to_float, to_int

REPOSITORY = "McAuley-Lab/Amazon-Reviews-2023"
DEFAULT_REVISION = "main"
COMMIT = re.compile(r"[0-9a-f]{40}")
KINDS = ("rating_only", "reviews")
CORES = ("5core", "0core")
FIELDS = JsonFields(user="user_id", item="parent_asin", rating="rating", ts="timestamp")
CSV_COLUMNS = [FIELDS.user, FIELDS.item, FIELDS.rating, FIELDS.ts]
STRING_FEATURES = datasets.Features({c: datasets.Value("string") for c in CSV_COLUMNS})
HINT = f"files come from the hub repository {REPOSITORY} (see tasks/sources/hub2023.py)"
BLOCK_ROWS = 1 << 20  # rows checked and converted at a time
IDS = pa.dictionary(pa.int32(), pa.string())
COMPACT_SCHEMA = pa.schema(  # the canonical columns (tasks.schema.ARROW_SCHEMA) with dictionary-encoded IDs
    [
        ("domain", pa.dictionary(pa.int8(), pa.string())),
        ("user", IDS),
        ("item", IDS),
        ("rating", pa.float64()),
        ("ts", pa.int64()),
    ]
)


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
    return canonical(read_category_arrow(category, source, cache_dir).cast(ARROW_SCHEMA).to_pandas())


def read_category_arrow(category: str, source: str, cache_dir: str | Path | None = None) -> pa.Table:
    """The rows of one file (local path or ``hf://`` URL), duplicates kept, in ``COMPACT_SCHEMA``.

    The canonical columns with dictionary-encoded IDs (``.cast(ARROW_SCHEMA)`` gives plain strings), read
    block by block from the ``datasets`` cache (see the module's "Memory").
    """
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
    files = [f["filename"] for f in dataset.cache_files]
    table = None if files else dataset.data.table  # an in-memory dataset has no files to stream
    size = dataset.num_rows
    del dataset  # unmaps the cache files: their pages read so far leave the resident set
    blocks = _blocks(files, table)
    try:
        return _compact(category, blocks, _CsvBlock() if builder == "csv" else _json_block, size)
    except _Irregular:
        pass
    finally:
        blocks.close()
        pa.default_memory_pool().release_unused()  # the blocks' buffers, kept by the allocator otherwise
    whole = table if table is not None else pa.concat_tables([_read_ipc(f) for f in files])
    if builder == "csv":
        checked = _from_csv(whole, source, category)
    else:
        checked = _from_json(whole, source, category, remote)
    return checked.cast(COMPACT_SCHEMA)  # reached only when the block checks were stricter than these


class _Irregular(Exception):
    """A block failed a check: the whole-table path reads the file again to name the problem exactly."""


Converted = tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]  # user, item, rating, ts in seconds


def _blocks(files: list[str], table: pa.Table | None) -> Iterator[pa.Table]:
    """The rows in blocks of about ``BLOCK_ROWS``, read from the cache files (not memory-mapped)."""
    batches = _file_batches(files) if table is None else iter(table.to_batches())
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= BLOCK_ROWS:
            yield pa.Table.from_batches(pending).combine_chunks()
            pending, rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks()


def _read_ipc(path: str) -> pa.Table:
    with pa.OSFile(path) as handle:
        return pa.ipc.open_stream(handle).read_all()


def _file_batches(files: list[str]) -> Iterator[pa.RecordBatch]:
    for path in files:  # the Arrow IPC streams that `datasets` writes, in the dataset's row order
        with pa.OSFile(path) as handle:
            yield from pa.ipc.open_stream(handle)


class _Codes:
    """Strings as int32 codes into one dictionary that grows block by block (values in first-seen order)."""

    def __init__(self, size: int) -> None:
        self.values = pa.array([], pa.string())
        self.codes = np.empty(size, dtype=np.int32)

    def add(self, strings: pa.Array, at: int) -> None:
        fresh = pc.unique(strings)
        if len(self.values):
            fresh = fresh.filter(pc.invert(pc.is_in(fresh, value_set=self.values)))
        if len(fresh):
            self.values = pa.concat_arrays([self.values, fresh])
        found = pc.index_in(strings, value_set=self.values).to_numpy(zero_copy_only=False)
        self.codes[at : at + len(strings)] = found

    def array(self, rows: int) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(self.codes[:rows]), self.values)


def _compact(
    category: str, blocks: Iterator[pa.Table], convert: Callable[[pa.Table], Converted | None], size: int
) -> pa.Table:
    """Convert the blocks into one ``COMPACT_SCHEMA`` table; ``size`` bounds the rows (the dataset's)."""
    users, items = _Codes(size), _Codes(size)
    rating = np.empty(size, dtype=np.float64)
    ts = np.empty(size, dtype=np.int64)
    rows = 0
    for block in blocks:
        converted = convert(block)
        if converted is None:
            continue
        user, item, block_rating, block_ts = converted
        if rows + len(block_rating) > size:
            raise _Irregular
        users.add(user, rows)
        items.add(item, rows)
        rating[rows : rows + len(block_rating)] = block_rating
        ts[rows : rows + len(block_ts)] = block_ts
        rows += len(block_rating)
    if rows == 0:
        raise _Irregular
    domain = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int8)), pa.array([category]))
    columns = [domain, users.array(rows), items.array(rows), pa.array(rating[:rows]), pa.array(ts[:rows])]
    return pa.table(columns, schema=COMPACT_SCHEMA)


class _CsvBlock:
    """The checks of ``_from_csv`` on one block (any failure is ``_Irregular``) and its converted columns.

    Blank rows are allowed only at the end of the file: a block that ends in blank rows is remembered, and
    data after them is irregular (the whole-table path reports the first blank line as missing values).
    """

    def __init__(self) -> None:
        self.blank_tail = False

    def __call__(self, block: pa.Table) -> Converted | None:
        present = np.zeros(block.num_rows, dtype=bool)
        for name in CSV_COLUMNS:
            present |= pc.fill_null(pc.not_equal(block[name], ""), False).to_numpy(zero_copy_only=False)
        filled = np.flatnonzero(present)
        if len(filled) == 0:
            self.blank_tail = self.blank_tail or block.num_rows > 0
            return None
        if self.blank_tail:
            raise _Irregular
        end = int(filled[-1]) + 1
        self.blank_tail = end < block.num_rows
        block = block.slice(0, end)
        for name in CSV_COLUMNS:
            if pc.any(pc.fill_null(pc.equal(pc.utf8_trim_whitespace(block[name]), ""), True)).as_py():
                raise _Irregular
        text = block[FIELDS.rating]
        if not pc.all(pc.match_substring_regex(text, NUMBER)).as_py():
            raise _Irregular
        rating = pc.cast(pc.utf8_trim_whitespace(text), pa.float64()).to_numpy(zero_copy_only=False)
        if not ((rating >= 1.0) & (rating <= 5.0)).all():
            raise _Irregular
        text = block[FIELDS.ts]
        if not pc.all(pc.match_substring_regex(text, NON_NEGATIVE)).as_py():
            raise _Irregular
        ts_ms = pc.cast(pc.utf8_trim_whitespace(text), pa.int64()).to_numpy(zero_copy_only=False)
        user, item = (_strings(block[c]).combine_chunks() for c in (FIELDS.user, FIELDS.item))
        return user, item, rating, np.floor_divide(ts_ms, 1000)


def _json_block(block: pa.Table) -> Converted:
    """The checks of ``_from_json`` on one block (any failure is ``_Irregular``) and its converted columns."""
    if any(c not in block.column_names for c in CSV_COLUMNS):
        raise _Irregular
    try:
        typed = pa.table({f.name: pc.cast(block[f.name], f.type) for f in FIELDS.schema()})
        if first_invalid_row(typed, FIELDS) is not None:
            raise _Irregular
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _Irregular from exc
    rating = typed[FIELDS.rating].to_numpy(zero_copy_only=False)
    ts_ms = typed[FIELDS.ts].to_numpy(zero_copy_only=False)
    user, item = (typed[c].combine_chunks() for c in (FIELDS.user, FIELDS.item))
    return user, item, rating, np.floor_divide(ts_ms, 1000)


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

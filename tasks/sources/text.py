"""Vectorized reading of delimited text files with errors that name the file and line.

Every reader goes through here, so a bad row is reported the same way whatever the format: the file, the
1-based line number as a text editor shows it, and what was wrong. Parsing is done by Arrow, not Python
loops, so the same code serves files of tens of millions of rows.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tasks.schema import DataError

NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"  # what ``to_float`` accepts
NON_NEGATIVE = r"^\s*\d{1,18}\s*$"  # what ``to_int`` accepts


def require_file(path: Path, hint: str = "") -> Path:
    """Fail with one clear message when ``path`` is missing or empty."""
    if not path.is_file():
        raise DataError(f"{path}: file not found{'; ' + hint if hint else ''}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return path


def read_bytes(path: Path) -> bytes:
    """Read a file, transparently gunzipping ``.gz``; a truncated or corrupt gzip is a DataError."""
    require_file(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: unreadable gzip ({exc}); re-download the file") from exc
    if not data or data.isspace():
        raise DataError(f"{path}: file is empty")
    return data


def read_delimited(path: Path, names: list[str], delimiter: str, header: bool) -> pa.Table:
    """Read a delimited file into string columns ``names``; a row with the wrong column count is an error.

    Blank lines inside the file are kept as rows (and reported as errors) so that row ``i`` is always line
    ``i + 1 (+ 1 with a header)``: every later "line N" message depends on that. Trailing blank lines are
    dropped.
    """
    data = read_bytes(path)
    end = len(data)
    while end > 0 and data[end - 1 : end] in (b"\n", b"\r"):  # trailing blank lines, never a field
        end -= 1
    if header and data.find(b"\n", 0, end) < 0:
        raise DataError(f"{path}: file has no data rows")
    buffer = pa.py_buffer(memoryview(data)[:end])
    try:
        table = _parse_delimited(buffer, path, names, delimiter, header, use_threads=True)
    except DataError as exc:
        if "line ?" not in str(exc):
            raise
        # Multithreaded parsing does not know row numbers; parse again on one thread to name the line.
        table = _parse_delimited(buffer, path, names, delimiter, header, use_threads=False)
    if table.num_rows == 0:
        raise DataError(f"{path}: file has no data rows")
    blank = pc.equal(table.column(0), "")
    for name in names[1:]:
        blank = pc.and_(blank, pc.equal(table.column(name), ""))
    blank = blank.to_numpy(zero_copy_only=False)
    if blank.any():
        raise DataError(f"{path} line {first_line(blank, int(header))}: empty line")
    return table


def _parse_delimited(
    buffer: pa.Buffer, path: Path, names: list[str], delimiter: str, header: bool, use_threads: bool
) -> pa.Table:
    bad: list[str] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        line = "?" if row.number is None else str(row.number)
        bad.append(
            f"{path} line {line}: expected {row.expected_columns} columns, got {row.actual_columns}"
            f" ({row.text[:80]!r})"
        )
        return "error"

    try:
        return pacsv.read_csv(
            buffer,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if header else 0, block_size=1 << 24, use_threads=use_threads
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        if bad:
            raise DataError(bad[0]) from exc
        raise DataError(f"{path}: cannot parse ({exc})") from exc


def first_line(mask: np.ndarray, offset: int) -> int:
    """The editor line number of the first True in ``mask``, rows counted from line ``offset + 1``."""
    return int(np.argmax(mask)) + offset + 1


def to_float(column: pa.ChunkedArray | pa.Array, path: Path, field: str, offset: int) -> np.ndarray:
    """Parse a string column as float64; the first non-number is reported with its line."""
    ok = pc.match_substring_regex(column, NUMBER).to_numpy(zero_copy_only=False)
    if not ok.all():
        strings = column.to_numpy(zero_copy_only=False)
        line = first_line(~ok, offset)
        raise DataError(f"{path} line {line}: {field} {str(strings[~ok][0])!r} is not a number")
    return pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy(zero_copy_only=False)


def to_int(column: pa.ChunkedArray | pa.Array, path: Path, field: str, offset: int) -> np.ndarray:
    """Parse a string column of non-negative integers (timestamps, re-indexed IDs) as int64."""
    ok = pc.match_substring_regex(column, NON_NEGATIVE).to_numpy(zero_copy_only=False)
    if not ok.all():
        strings = column.to_numpy(zero_copy_only=False)
        line = first_line(~ok, offset)
        raise DataError(f"{path} line {line}: {int_problem(str(strings[~ok][0]), field)}")
    return pc.cast(pc.utf8_trim_whitespace(column), pa.int64()).to_numpy(zero_copy_only=False)


def int_problem(text: str, field: str, otherwise: str = "is not a non-negative integer") -> str:
    """What is wrong with ``text`` as a non-negative integer ``field``: say so when it is negative or long."""
    value = text.strip()
    if value.startswith("-") and value[1:].isdigit():
        return f"{field} {text!r} is not a non-negative integer (it is negative)"
    if value.isdigit():
        return f"{field} {text!r} is not a non-negative integer (more than 18 digits)"
    return f"{field} {text!r} {otherwise}"


def require_values(table: pa.Table, names: list[str], path: Path, offset: int) -> None:
    """Fail on the first missing value (null, or blank text) in columns ``names``, naming its line."""
    for name in names:
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(column), ""), True)
        else:
            missing = pc.is_null(column)
        missing = missing.to_numpy(zero_copy_only=False)
        if missing.any():
            raise DataError(f"{path} line {first_line(missing, offset)}: {name} is missing")

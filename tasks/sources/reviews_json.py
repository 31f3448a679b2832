"""Amazon 2014 / 2018 review dumps: one JSON object per line, ``.json`` or ``.json.gz``.

Only ``reviewerID``, ``asin``, ``overall`` (1-5 stars) and ``unixReviewTime`` (unix seconds) are read; Arrow
skips the review text and every other field while parsing and streams the (gzipped) file, so a dump of many
GB costs memory for four columns only. Arrow does not know line numbers, so when parsing or a check fails,
one more pass reads the file line by line to name the first bad line exactly (blank lines counted, as an
editor counts them). That slow pass runs only on bad input. The 2023 hub reader reuses these checks.

Example::

    table, removed = load_local(Path("reviews_Beauty_5.json.gz"), "Beauty")
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from tasks.schema import DataError, canonical, deduplicate
from tasks.sources.text import require_file


@dataclass(frozen=True)
class JsonFields:
    """Which JSON keys hold the user, item, rating and timestamp of one interaction."""

    user: str
    item: str
    rating: str
    ts: str

    def schema(self) -> pa.Schema:
        return pa.schema(
            [
                (self.user, pa.string()),
                (self.item, pa.string()),
                (self.rating, pa.float64()),
                (self.ts, pa.int64()),
            ]
        )


FIELDS = JsonFields(user="reviewerID", item="asin", rating="overall", ts="unixReviewTime")


def read_reviews_json(path: Path, domain: str) -> pd.DataFrame:
    """The file's reviews as a canonical table (duplicates kept; see ``load_local``)."""
    table = read_json_lines(path, FIELDS)
    return canonical(
        pd.DataFrame(
            {
                "domain": domain,
                "user": table[FIELDS.user].to_numpy(zero_copy_only=False),
                "item": table[FIELDS.item].to_numpy(zero_copy_only=False),
                "rating": table[FIELDS.rating].to_numpy(zero_copy_only=False),
                "ts": table[FIELDS.ts].to_numpy(zero_copy_only=False),
            }
        )
    )


def load_local(path: Path, domain: str) -> tuple[pd.DataFrame, int]:
    """A local dump, deduplicated by the one rule (``tasks.schema.deduplicate``): (table, rows removed)."""
    dedup = deduplicate(read_reviews_json(path, domain))
    return dedup.table, dedup.rows_removed


def read_json_lines(path: Path, fields: JsonFields) -> pa.Table:
    """The four ``fields`` of every line, typed and checked; any problem is a DataError naming the line."""
    require_file(path)
    schema = fields.schema()
    gz = path.suffix == ".gz"
    try:
        with pa.input_stream(str(path), compression="gzip" if gz else None) as stream:
            table = pajson.open_json(
                stream,
                read_options=pajson.ReadOptions(block_size=1 << 24),
                parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            ).read_all()
    except pa.ArrowInvalid as exc:
        raise bad_line_error(path, fields, str(exc)) from None
    except OSError as exc:
        if gz:
            raise DataError(f"{path}: unreadable gzip ({exc}); re-download the file") from exc
        raise DataError(f"{path}: cannot read ({exc})") from exc
    try:
        valid = table.num_rows > 0 and first_invalid_row(table, fields) is None
    except pa.ArrowInvalid as exc:  # Arrow's JSON parser lets invalid UTF-8 through to here
        raise bad_line_error(path, fields, str(exc)) from None
    if not valid:
        raise bad_line_error(path, fields, "")
    return table


def first_invalid_row(table: pa.Table, fields: JsonFields) -> int | None:
    """The index of the first row with a missing ID, a rating outside 1..5 or a negative time, else None."""
    bad = np.zeros(table.num_rows, dtype=bool)
    for name in (fields.user, fields.item):
        bad |= pc.fill_null(pc.equal(pc.utf8_trim_whitespace(table[name]), ""), True).to_numpy(
            zero_copy_only=False
        )
    rating = table[fields.rating].to_numpy(zero_copy_only=False).astype(np.float64)
    bad |= ~((rating >= 1.0) & (rating <= 5.0))  # NaN (missing) fails both comparisons
    ts = table[fields.ts]
    bad |= pc.fill_null(pc.less(ts, 0), True).to_numpy(zero_copy_only=False)
    return int(np.argmax(bad)) if bad.any() else None


def bad_line_error(path: Path, fields: JsonFields, parser_message: str) -> DataError:
    """Read ``path`` line by line and describe its first bad line (the slow path, for bad input only)."""
    opener = gzip.open if path.suffix == ".gz" else open
    seen = False
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                seen = True
                problem = record_problem(raw, fields)
                if problem:
                    return DataError(f"{path} line {number}: {problem}")
    except (OSError, EOFError, zlib.error) as exc:
        return DataError(f"{path}: unreadable gzip ({exc}); re-download the file")
    if not seen:
        return DataError(f"{path}: file is empty")
    return DataError(f"{path}: cannot parse ({parser_message or 'unknown problem'})")


def record_problem(raw: bytes, fields: JsonFields) -> str | None:
    """What is wrong with one line, or None when it is a valid interaction."""
    try:
        record = json.loads(raw.rstrip(b"\r\n").decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        literal = raw.lstrip().startswith(b"{'")
        hint = (
            "; this looks like a Python dict literal: use the strict-JSON version of the dump"
            if literal
            else ""
        )
        return f"not valid JSON ({exc.msg} at column {exc.colno}){hint}"
    if not isinstance(record, dict):
        return "not a JSON object"
    for key in (fields.user, fields.item):
        value = record.get(key)
        if value is None:
            return f"{key} is missing"
        if not isinstance(value, str) or not value.strip():
            return f"{key} {value!r} is not a non-empty string"
    rating = record.get(fields.rating)
    if rating is None:
        return f"{fields.rating} is missing"
    if isinstance(rating, bool) or not isinstance(rating, int | float):
        return f"{fields.rating} {rating!r} is not a number"
    if not 1.0 <= rating <= 5.0:
        return f"{fields.rating} {rating!r} is outside 1..5"
    ts = record.get(fields.ts)
    if ts is None:
        return f"{fields.ts} is missing"
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        return f"{fields.ts} {ts!r} is not a non-negative integer"
    return None

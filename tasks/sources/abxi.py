"""C2DSR / ABXI mixed-domain sequences with their JSON ID maps, decoded back to raw Amazon IDs.

``<pair>_50_preprocessed.txt`` holds ``uid item|unix_seconds ...`` per line; ``map_user_50.txt`` maps
reviewerID -> uid and ``map_item_50.txt`` maps ASIN -> [iid, domain index]. The maps are inverted so that the
canonical table carries raw reviewerIDs (which join users across pairs) and each item's category.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import DataError, canonical
from tasks.sources.text import int_problem, read_bytes, to_int


def _load_map(path: Path) -> dict:
    try:
        mapping = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a JSON object ({exc})") from exc
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{path}: expected a non-empty JSON object")
    blank = [k for k in mapping if not k.strip()]
    if blank:
        raise DataError(f"{path}: key {blank[0]!r} is an empty ID")
    return mapping


def _inverse(values: list[int], keys: list[str], path: Path) -> np.ndarray:
    """A dense array index -> key; duplicate or negative indices are errors naming the key."""
    idx = np.asarray(values, dtype=np.int64)
    if (idx < 0).any():
        raise DataError(f"{path} key {keys[int(np.argmax(idx < 0))]!r}: negative ID")
    table = np.full(int(idx.max()) + 1, None, dtype=object)
    table[idx] = keys
    if len(set(values)) != len(values):
        raise DataError(f"{path}: two keys map to the same ID")
    return table


def read_sequences(sequences: Path, user_map: Path, item_map: Path, domains: list[str]) -> pd.DataFrame:
    users = _load_map(user_map)
    items = _load_map(item_map)
    user_of = _inverse(list(users.values()), list(users.keys()), user_map)
    try:
        item_ids = [int(v[0]) for v in items.values()]
        item_dom = np.asarray([int(v[1]) for v in items.values()], dtype=np.int64)
    except (TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{item_map}: values must be [item_id, domain_index] ({exc})") from exc
    if ((item_dom < 0) | (item_dom >= len(domains))).any():
        key = list(items.keys())[int(np.argmax((item_dom < 0) | (item_dom >= len(domains))))]
        raise DataError(f"{item_map} key {key!r}: domain index outside 0..{len(domains) - 1}")
    asin_of = _inverse(item_ids, list(items.keys()), item_map)
    dom_of = np.full(len(asin_of), -1, dtype=np.int64)
    dom_of[np.asarray(item_ids)] = item_dom

    lines = pa.array(read_bytes(sequences).decode("utf-8").splitlines())
    tokens = pc.split_pattern(pc.utf8_trim_whitespace(lines), " ")
    line_no = pc.list_parent_indices(tokens).to_numpy() + 1
    flat = pc.list_flatten(tokens)
    first = np.r_[True, line_no[1:] != line_no[:-1]]
    uid = to_int(flat.filter(pa.array(first)), sequences, "user id", 0)
    uid_line = line_no[first]
    pairs = flat.filter(pa.array(~first))
    pair_line = line_no[~first]
    if len(pairs) == 0:
        raise DataError(f"{sequences}: no interactions")
    parts = pc.split_pattern(pairs, "|")
    ok = pc.list_value_length(parts).to_numpy(zero_copy_only=False) == 2
    if not ok.all():
        i = int(np.argmax(~ok))
        raise DataError(f"{sequences} line {pair_line[i]}: {pairs[i].as_py()!r} is not item|timestamp")
    iid = pc.list_element(parts, 0)
    ts = pc.list_element(parts, 1)
    iid_v = _ids(to_int_lines(iid, sequences, "item id", pair_line), asin_of, sequences, pair_line, "item")
    ts_v = to_int_lines(ts, sequences, "timestamp", pair_line)
    uid_v = _ids(uid, user_of, sequences, uid_line, "user")
    row_user = uid_v[np.searchsorted(uid_line, pair_line)]
    return canonical(
        pd.DataFrame(
            {
                "domain": np.asarray(domains, dtype=object)[dom_of[iid_v]],
                "user": user_of[row_user],
                "item": asin_of[iid_v],
                "rating": np.nan,
                "ts": ts_v,
            }
        )
    )


def to_int_lines(column: pa.Array, path: Path, field: str, lines: np.ndarray) -> np.ndarray:
    """``to_int`` for values whose line numbers are given explicitly."""
    try:
        return to_int(column, path, field, -1)
    except DataError:
        ok = pc.match_substring_regex(column, r"^\d{1,18}$").to_numpy(zero_copy_only=False)
        i = int(np.argmax(~ok))
        raise DataError(
            f"{path} line {lines[i]}: {int_problem(column[i].as_py(), field, 'is not an integer')}"
        ) from None


def _ids(values: np.ndarray, table: np.ndarray, path: Path, lines: np.ndarray, what: str) -> np.ndarray:
    known = values < len(table)
    known[known] = table[values[known]] != None  # noqa: E711 (elementwise on an object array)
    if not known.all():
        i = int(np.argmax(~known))
        raise DataError(f"{path} line {lines[i]}: {what} id {values[i]} is not in the {what} map")
    return values

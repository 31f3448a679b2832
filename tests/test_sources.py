"""Every reader on small files in its exact format, every kind of bad input, and the one duplicate rule."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.schema import COLUMNS, DataError, deduplicate
from tasks.sources import abxi, cdrib, hub2023, ratings_csv, recbole, reviews_json


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def truncated_gzip(path: Path, text: str) -> Path:
    data = gzip.compress(text.encode() * 200)
    return write(path, data[: len(data) // 2])


def rows(table: pd.DataFrame) -> list[tuple]:
    """Rows as plain tuples, NaN rating as None and <NA> ts as None, for exact comparison."""
    out = []
    for domain, user, item, rating, ts in table[list(COLUMNS)].itertuples(index=False):
        out.append(
            (domain, user, item, None if np.isnan(rating) else rating, None if pd.isna(ts) else int(ts))
        )
    return out


def assert_canonical_dtypes(table: pd.DataFrame) -> None:
    assert list(table.columns) == list(COLUMNS)
    assert [str(t) for t in table.dtypes] == ["string", "string", "string", "float64", "Int64"]


# ---------------------------------------------------------------- the duplicate rule


def test_deduplicate_averages_ratings_keeps_earliest_timestamp_and_counts_removed_rows():
    frame = pd.DataFrame(
        {
            "domain": ["Books"] * 5 + ["Movies_and_TV"],
            "user": ["u1", "u1", "u1", "u2", "u2", "u1"],
            "item": ["i1", "i1", "i1", "i1", "i2", "i1"],
            "rating": [5.0, 4.0, 3.0, 2.0, 2.0, 1.0],
            "ts": [300, 100, 200, 50, 60, 10],
        }
    )
    dedup = deduplicate(frame)
    assert rows(dedup.table) == [
        ("Books", "u1", "i1", 4.0, 100),
        ("Books", "u2", "i1", 2.0, 50),
        ("Books", "u2", "i2", 2.0, 60),
        ("Movies_and_TV", "u1", "i1", 1.0, 10),  # same pair in another domain is not a duplicate
    ]
    assert (dedup.rows_removed, dedup.pairs_duplicated, dedup.pairs_conflicting) == (2, 1, 1)


def test_deduplicate_keeps_implicit_ratings_and_unknown_timestamps_missing():
    frame = pd.DataFrame(
        {"domain": "Beauty", "user": ["u", "u", "v"], "item": ["i", "i", "i"], "rating": np.nan, "ts": pd.NA}
    )
    dedup = deduplicate(frame)
    assert rows(dedup.table) == [("Beauty", "u", "i", None, None), ("Beauty", "v", "i", None, None)]
    assert (dedup.rows_removed, dedup.pairs_conflicting) == (1, 0)


def test_deduplicate_without_duplicates_only_sorts():
    frame = pd.DataFrame(
        {"domain": "B", "user": ["b", "a"], "item": ["i", "i"], "rating": [1.0, 2.0], "ts": [1, 2]}
    )
    dedup = deduplicate(frame)
    assert rows(dedup.table) == [("B", "a", "i", 2.0, 2), ("B", "b", "i", 1.0, 1)]
    assert dedup.rows_removed == 0


# ---------------------------------------------------------------- Amazon 2014/2018 ratings-only CSV


def test_ratings_csv_2014_is_user_item_rating_timestamp(tmp_path):
    path = write(
        tmp_path / "ratings_Beauty.csv", "A1,0205616461,5.0,1369699200\nA2,0558925278,3.0,1355443200\n"
    )
    table = ratings_csv.read_ratings_csv(path, "Beauty", "2014")
    assert_canonical_dtypes(table)
    assert rows(table) == [
        ("Beauty", "A1", "0205616461", 5.0, 1369699200),
        ("Beauty", "A2", "0558925278", 3.0, 1355443200),
    ]


def test_ratings_csv_2018_puts_the_item_first(tmp_path):
    path = write(tmp_path / "Books.csv", "0001713353,A1C6M8LCIX4M6M,5.0,1123804800\n")
    assert rows(ratings_csv.read_ratings_csv(path, "Books", "2018")) == [
        ("Books", "A1C6M8LCIX4M6M", "0001713353", 5.0, 1123804800)
    ]


def test_ratings_csv_load_local_reads_gzip_and_applies_the_duplicate_rule(tmp_path):
    text = "A1,I1,5.0,300\nA1,I1,2.0,100\nA2,I1,1.0,7\r\nA1,I1,5.0,200\n"
    path = write(tmp_path / "ratings_Beauty.csv.gz", gzip.compress(text.encode()))
    table, removed = ratings_csv.load_local(path, "Beauty", "2014")
    assert rows(table) == [("Beauty", "A1", "I1", 4.0, 100), ("Beauty", "A2", "I1", 1.0, 7)]
    assert removed == 2


def test_ratings_csv_names_the_exact_line_of_a_bad_row_deep_in_a_large_file(tmp_path):
    good = "".join(f"A{i},I{i},4.0,1400000000\n" for i in range(20_000))
    path = write(tmp_path / "r.csv", good + "A,I,4.0\n" + good)
    with pytest.raises(DataError, match=r"r\.csv line 20001: expected 4 columns, got 3"):
        ratings_csv.read_ratings_csv(path, "Beauty", "2014")


RATINGS_ROW = "A1,I1,5.0,1369699200\n"


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ("A2,I2,3.0\n", r"line 2: expected 4 columns, got 3"),
        ("A2,I2,3.0,1,9\n", r"line 2: expected 4 columns, got 5"),
        ("A2,I2,x,1369699200\n", r"line 2: rating 'x' is not a number"),
        ("A2,I2,,1369699200\n", r"line 2: rating '' is not a number"),
        ("A2,I2,6,1369699200\n", r"line 2: rating 6\.0 is outside 1\.\.5"),
        ("A2,I2,0.5,1369699200\n", r"line 2: rating 0\.5 is outside 1\.\.5"),
        ("A2,I2,3.0,2013-05-28\n", r"line 2: timestamp '2013-05-28' is not a non-negative integer"),
        ("A2,I2,3.0,-5\n", r"line 2: timestamp '-5' is not a non-negative integer"),
        (",I2,3.0,1369699200\n", r"line 2: user is missing"),
        ("\nA2,I2,3.0,1369699200\n", r"line 2: empty line"),
    ],
)
def test_ratings_csv_bad_row_names_file_and_line(tmp_path, second_line, message):
    path = write(tmp_path / "ratings_Beauty.csv", RATINGS_ROW + second_line)
    with pytest.raises(DataError, match=r"ratings_Beauty\.csv " + message):
        ratings_csv.read_ratings_csv(path, "Beauty", "2014")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", r"empty\.csv: file is empty"),
        ("blank.csv", "\n \n", r"blank\.csv: file is empty"),
        ("cut.csv.gz", None, r"cut\.csv\.gz: unreadable gzip"),
        ("plain.csv.gz", RATINGS_ROW, r"plain\.csv\.gz: unreadable gzip"),
    ],
)
def test_ratings_csv_unreadable_file_is_one_clear_error(tmp_path, name, content, message):
    path = (
        truncated_gzip(tmp_path / name, RATINGS_ROW) if content is None else write(tmp_path / name, content)
    )
    with pytest.raises(DataError, match=message):
        ratings_csv.read_ratings_csv(path, "Beauty", "2014")


def test_ratings_csv_missing_file_and_unknown_edition(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.csv: file not found"):
        ratings_csv.read_ratings_csv(tmp_path / "nothere.csv", "Beauty", "2014")
    path = write(tmp_path / "r.csv", RATINGS_ROW)
    with pytest.raises(DataError, match=r"unknown edition '2020'"):
        ratings_csv.read_ratings_csv(path, "Beauty", "2020")


# ---------------------------------------------------------------- Amazon 2014/2018 review JSON


def review(user="A1", item="B1", overall: object = 5.0, ts: object = 1400000000, **extra) -> str:
    record = {"reviewerID": user, "asin": item, "overall": overall, "unixReviewTime": ts, "reviewText": "ok"}
    record.update(extra)
    return json.dumps(record)


def test_reviews_json_reads_four_fields_and_skips_the_rest(tmp_path):
    text = review(style={"Format:": " Paperback"}, vote="3") + "\n" + review("A2", "B2", 3, 1300000000) + "\n"
    table = reviews_json.read_reviews_json(write(tmp_path / "Books_5.json", text), "Books")
    assert_canonical_dtypes(table)
    assert rows(table) == [("Books", "A1", "B1", 5.0, 1400000000), ("Books", "A2", "B2", 3.0, 1300000000)]


def test_reviews_json_load_local_reads_gzip_and_applies_the_duplicate_rule(tmp_path):
    text = (
        "\n".join([review(overall=5.0, ts=30), review(overall=2.0, ts=10), "", review("A2", ts=7)]) + "\n\n"
    )
    table, removed = reviews_json.load_local(
        write(tmp_path / "r.json.gz", gzip.compress(text.encode())), "Beauty"
    )
    assert rows(table) == [("Beauty", "A1", "B1", 3.5, 10), ("Beauty", "A2", "B1", 5.0, 7)]
    assert removed == 1


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"reviewerID": "A2", "asin": ', r"line 3: not valid JSON"),
        (
            "{'reviewerID': 'A2', 'asin': 'B', 'overall': 5.0}",
            r"line 3: not valid JSON .*Python dict literal",
        ),
        ("[1, 2]", r"line 3: not a JSON object"),
        (review(overall="x"), r"line 3: overall 'x' is not a number"),
        (review(overall="5.0"), r"line 3: overall '5\.0' is not a number"),
        (review(overall=7), r"line 3: overall 7 is outside 1\.\.5"),
        (review(overall=0.0), r"line 3: overall 0\.0 is outside 1\.\.5"),
        (review(ts="05 13, 2014"), r"line 3: unixReviewTime '05 13, 2014' is not a non-negative integer"),
        (review(ts=-1), r"line 3: unixReviewTime -1 is not a non-negative integer"),
        (review(ts=1.5e9), r"line 3: unixReviewTime 1500000000\.0 is not a non-negative integer"),
        (review(user=None), r"line 3: reviewerID is missing"),
        (review(item=""), r"line 3: asin '' is not a non-empty string"),
        (json.dumps({"reviewerID": "A", "overall": 5.0, "unixReviewTime": 1}), r"line 3: asin is missing"),
    ],
)
def test_reviews_json_bad_line_names_file_and_line(tmp_path, bad_line, message):
    path = write(tmp_path / "reviews.json", review() + "\n\n" + bad_line + "\n" + review("A3") + "\n")
    with pytest.raises(DataError, match=r"reviews\.json " + message):
        reviews_json.read_reviews_json(path, "Beauty")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.json", "", r"empty\.json: file is empty"),
        ("blank.json", "\n\n  \n", r"blank\.json: file is empty"),
        ("empty.json.gz", gzip.compress(b""), r"empty\.json\.gz: file is empty"),
        ("cut.json.gz", None, r"cut\.json\.gz: unreadable gzip"),
        ("plain.json.gz", review(), r"plain\.json\.gz: unreadable gzip"),
        ("latin1.json", b'{"reviewerID": "\xe9"}\n', r"latin1\.json line 1: not UTF-8 text"),
    ],
)
def test_reviews_json_unreadable_file_is_one_clear_error(tmp_path, name, content, message):
    path = (
        truncated_gzip(tmp_path / name, review() + "\n")
        if content is None
        else write(tmp_path / name, content)
    )
    with pytest.raises(DataError, match=message):
        reviews_json.read_reviews_json(path, "Beauty")


def test_reviews_json_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"reviews_Beauty_5\.json\.gz: file not found"):
        reviews_json.read_reviews_json(tmp_path / "reviews_Beauty_5.json.gz", "Beauty")


# ---------------------------------------------------------------- Amazon Reviews 2023 through `datasets`

HUB_HEADER = "user_id,parent_asin,rating,timestamp\n"


@pytest.fixture
def load_dataset_calls(monkeypatch):
    """Record every ``datasets.load_dataset`` call the hub reader makes (and still run it)."""
    calls = []
    real = hub2023.datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(hub2023.datasets, "load_dataset", spy)
    return calls


def test_hub_rating_only_csv_loads_through_datasets_with_seconds_and_parent_asin(
    tmp_path, load_dataset_calls
):
    books = write(
        tmp_path / "Books.csv",
        HUB_HEADER + "U1,B1,5.0,1588615855070\nU1,B1,2.0,1588615800999\nU2,B1,4,1588615855999\n",
    )
    movies = write(
        tmp_path / "Movies_and_TV.csv.gz", gzip.compress((HUB_HEADER + "U1,M1,1.0,1000\n").encode())
    )
    table, removed = hub2023.load_categories(
        ["Books", "Movies_and_TV"],
        data_files={"Books": books, "Movies_and_TV": movies},
        cache_dir=tmp_path / "hf",
    )
    assert_canonical_dtypes(table)
    assert rows(table) == [
        ("Books", "U1", "B1", 3.5, 1588615800),
        ("Books", "U2", "B1", 4.0, 1588615855),
        ("Movies_and_TV", "U1", "M1", 1.0, 1),
    ]
    assert removed == {"Books": 1, "Movies_and_TV": 0}
    assert [args[0] for args, _ in load_dataset_calls] == ["csv", "csv"]
    assert load_dataset_calls[0][1]["data_files"] == {"train": [str(books)]}
    assert all("trust_remote_code" not in kwargs for _, kwargs in load_dataset_calls)


def test_hub_reader_gives_the_same_rows_in_blocks_of_two(tmp_path, monkeypatch):
    """The streamed reader (blocks, one growing ID dictionary) equals one whole block, duplicates included
    across block edges."""
    rng = np.random.default_rng(0)
    ms = 1588615800000 + rng.integers(10**6, size=40)
    lines = [f"U{rng.integers(6)},B{rng.integers(5)},{rng.integers(1, 6)}.0,{t}" for t in ms]
    books = write(tmp_path / "Books.csv", HUB_HEADER + "\n".join(lines) + "\n")
    whole, removed = hub2023.load_categories(["Books"], data_files={"Books": books}, cache_dir=tmp_path / "a")
    monkeypatch.setattr(hub2023, "BLOCK_ROWS", 2)
    blocks, removed_blocks = hub2023.load_categories(
        ["Books"], data_files={"Books": books}, cache_dir=tmp_path / "b"
    )
    assert rows(blocks) == rows(whole) and removed_blocks == removed and removed["Books"] > 0


def test_hub_review_jsonl_keeps_four_fields(tmp_path, load_dataset_calls):
    record = {
        "rating": 4.0,
        "title": "t",
        "text": "fine",
        "images": [],
        "asin": "A1",
        "parent_asin": "P1",
        "user_id": "U1",
        "timestamp": 1588615855070,
        "helpful_vote": 0,
        "verified_purchase": True,
    }
    other = {**record, "asin": "A2", "user_id": "U2", "rating": 1}
    path = write(tmp_path / "All_Beauty.jsonl", json.dumps(record) + "\n" + json.dumps(other) + "\n")
    table, removed = hub2023.load_categories(
        ["All_Beauty"], kind="reviews", data_files={"All_Beauty": path}, cache_dir=tmp_path / "hf"
    )
    assert rows(table) == [
        ("All_Beauty", "U1", "P1", 4.0, 1588615855),
        ("All_Beauty", "U2", "P1", 1.0, 1588615855),
    ]
    assert removed == {"All_Beauty": 0}
    assert [args[0] for args, _ in load_dataset_calls] == ["json"]


def test_hub_paths_select_categories_and_never_touch_the_network_offline(tmp_path, monkeypatch):
    assert hub2023.hub_path("Books") == "benchmark/5core/rating_only/Books.csv"
    assert hub2023.hub_path("Books", core="0core") == "benchmark/0core/rating_only/Books.csv"
    assert hub2023.hub_path("Books", kind="reviews") == "raw/review_categories/Books.jsonl"
    assert hub2023.hub_url("Books") == f"hf://datasets/{hub2023.REPOSITORY}@main/{hub2023.hub_path('Books')}"
    pinned = "0123456789abcdef0123456789abcdef01234567"
    assert hub2023.hub_url("Books", revision=pinned).startswith(
        f"hf://datasets/{hub2023.REPOSITORY}@{pinned}/"
    )
    with pytest.raises(DataError, match=r"'Books/\.\./x' is not an Amazon Reviews 2023 category name"):
        hub2023.hub_path("Books/../x")  # the category list itself is declared in tasks/datasets/
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(hub2023.datasets, "load_dataset", lambda *a, **k: pytest.fail("must not be called"))
    with pytest.raises(DataError, match=r"Books\.csv: HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set"):
        hub2023.load_categories(["Books"], cache_dir=tmp_path / "hf")
    with pytest.raises(DataError, match=r"data_files has no file for category 'Books'"):
        hub2023.load_categories(["Books"], data_files={"Movies_and_TV": tmp_path / "m.csv"})


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        ("U2,B2,3.0,1,9\n", r"line 3: expected 4 columns, got 5"),
        ("U2,B2,3.0\n", r"line 3: timestamp is missing"),
        ("U2,B2,x,1588615855070\n", r"line 3: rating 'x' is not a number"),
        ("U2,B2,5.5,1588615855070\n", r"line 3: rating 5\.5 is outside 1\.\.5"),
        ("U2,B2,3.0,2020-05-04\n", r"line 3: timestamp '2020-05-04' is not a non-negative integer"),
        (",B2,3.0,1588615855070\n", r"line 3: user_id is missing"),
        ("\nU2,B2,3.0,1588615855070\n", r"line 3: user_id is missing"),
    ],
)
def test_hub_csv_bad_row_names_file_and_line(tmp_path, second_line, message):
    path = write(tmp_path / "Books.csv", HUB_HEADER + "U1,B1,5.0,1588615855070\n" + second_line)
    with pytest.raises(DataError, match=r"Books\.csv " + message):
        hub2023.read_category("Books", data_files={"Books": path}, cache_dir=tmp_path / "hf")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", r"empty\.csv: file is empty"),
        ("header.csv", HUB_HEADER, r"header\.csv: file has no data rows"),
        (
            "other.csv",
            "user,item,rating,timestamp\nU1,B1,5.0,1\n",
            r"other\.csv line 1: header is not user_id",
        ),
        ("cut.csv.gz", None, r"cut\.csv\.gz: unreadable gzip"),
        ("absent.csv", False, r"absent\.csv: file not found"),
        (
            "bad.jsonl",
            '{"user_id": "U1", "parent_asin": "B1", "rating": 2.0, "timestamp": 5}\n{"user_id"\n',
            r"bad\.jsonl line 2: not valid JSON",
        ),
        (
            "mixed.jsonl",
            '{"user_id": "U1", "parent_asin": "B1", "rating": 2.0, "timestamp": 5}\n\n'
            '{"user_id": "U2", "parent_asin": "B1", "rating": "high", "timestamp": 5}\n',
            r"mixed\.jsonl line 3: rating 'high' is not a number",
        ),
    ],
)
def test_hub_unreadable_file_is_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        truncated_gzip(path, HUB_HEADER + "U1,B1,5.0,1\n")
    elif content is not False:
        write(path, content)
    with pytest.raises(DataError, match=message):
        hub2023.read_category("Books", data_files={"Books": path}, cache_dir=tmp_path / "hf")


# ---------------------------------------------------------------- RecBole atomic .inter (family R)


def test_recbole_inter_reads_typed_header_and_optional_timestamp(tmp_path):
    path = write(
        tmp_path / "books.inter", "user_id:token\titem_id:token\trating:float\nA1\t0001\t2.0\nA2\t0002\t5.0\n"
    )
    assert rows(recbole.read_inter(path, "Books")) == [
        ("Books", "A1", "0001", 2.0, None),
        ("Books", "A2", "0002", 5.0, None),
    ]
    path = write(tmp_path / "ts.inter", "user_id\titem_id\trating\ttimestamp\nA1\t0001\t4\t1500000000\n")
    assert rows(recbole.read_inter(path, "Books")) == [("Books", "A1", "0001", 4.0, 1500000000)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("A1\t0001\t2.0\nA2\t0002\n", r"line 3: expected 3 columns, got 2"),
        ("A1\t0001\t2.0\nA2\t0002\tfive\n", r"line 3: rating 'five' is not a number"),
        ("A1\t0001\t2.0\nA2\t0002\t0\n", r"line 3: rating 0\.0 is outside 1\.\.5"),
        ("A1\t0001\t2.0\n\nA2\t0002\t2.0\n", r"line 3: empty line"),
    ],
)
def test_recbole_bad_row_names_file_and_line(tmp_path, body, message):
    path = write(tmp_path / "books.inter", "user_id\titem_id\trating\n" + body)
    with pytest.raises(DataError, match=r"books\.inter " + message):
        recbole.read_inter(path, "Books")


def test_recbole_bad_files(tmp_path):
    cases = {
        "header.inter": (
            "user\titem\trating\nA1\t0001\t2.0\n",
            r"header\.inter line 1: header 'user\\titem\\trating'",
        ),
        "empty.inter": ("", r"empty\.inter: file is empty"),
        "only.inter": ("user_id\titem_id\trating\n", r"only\.inter: file has no data rows"),
    }
    for name, (content, message) in cases.items():
        with pytest.raises(DataError, match=message):
            recbole.read_inter(write(tmp_path / name, content), "Books")
    with pytest.raises(DataError, match=r"gone\.inter: file not found"):
        recbole.read_inter(tmp_path / "gone.inter", "Books")


# ---------------------------------------------------------------- C2DSR / ABXI sequences with maps (family L)


def write_abxi(
    folder: Path, sequences: str, users: object = None, items: object = None
) -> tuple[Path, Path, Path]:
    users = {"AU0": 0, "AU1": 1} if users is None else users
    items = {"ASIN1": [1, 0], "ASIN2": [2, 1], "ASIN3": [3, 1]} if items is None else items
    return (
        write(folder / "abe_50_preprocessed.txt", sequences),
        write(folder / "map_user_50.txt", users if isinstance(users, str) else json.dumps(users)),
        write(folder / "map_item_50.txt", items if isinstance(items, str) else json.dumps(items)),
    )


def test_abxi_decodes_raw_ids_and_each_items_domain(tmp_path):
    paths = write_abxi(tmp_path, "0 1|100 2|200\n1 3|50 1|60 2|70\n")
    table = abxi.read_sequences(*paths, ["Beauty", "Electronics"])
    assert_canonical_dtypes(table)
    assert rows(table) == [
        ("Beauty", "AU0", "ASIN1", None, 100),
        ("Electronics", "AU0", "ASIN2", None, 200),
        ("Electronics", "AU1", "ASIN3", None, 50),
        ("Beauty", "AU1", "ASIN1", None, 60),
        ("Electronics", "AU1", "ASIN2", None, 70),
    ]


@pytest.mark.parametrize(
    ("sequences", "users", "items", "message"),
    [
        ("0 1|100\n1 9|50\n", None, None, r"preprocessed\.txt line 2: item id 9 is not in the item map"),
        ("0 1|100\n7 1|50\n", None, None, r"preprocessed\.txt line 2: user id 7 is not in the user map"),
        ("0 1|100\n1 1-50\n", None, None, r"preprocessed\.txt line 2: '1-50' is not item\|timestamp"),
        ("0 1|100\n1 1|noon\n", None, None, r"preprocessed\.txt line 2: timestamp 'noon' is not an integer"),
        (
            "0 1|100\nx 1|50\n",
            None,
            None,
            r"preprocessed\.txt line 2: user id 'x' is not a non-negative integer",
        ),
        ("0 1|100\n", None, {"ASIN1": [1, 5]}, r"map_item_50\.txt key 'ASIN1': domain index outside 0\.\.1"),
        (
            "0 1|100\n",
            None,
            {"ASIN1": [1, 0], "ASIN2": [1, 1]},
            r"map_item_50\.txt: two keys map to the same ID",
        ),
        ("0 1|100\n", None, {"ASIN1": 1}, r"map_item_50\.txt: values must be \[item_id, domain_index\]"),
        ("0 1|100\n", {"AU0": -1}, None, r"map_user_50\.txt key 'AU0': negative ID"),
        ("0 1|100\n", "{not json", None, r"map_user_50\.txt: not a JSON object"),
        ("0 1|100\n", "{}", None, r"map_user_50\.txt: expected a non-empty JSON object"),
        ("", None, None, r"preprocessed\.txt: file is empty"),
        ("0\n1\n", None, None, r"preprocessed\.txt: no interactions"),
    ],
)
def test_abxi_bad_input_names_file_and_line_or_key(tmp_path, sequences, users, items, message):
    paths = write_abxi(tmp_path, sequences, users, items)
    with pytest.raises(DataError, match=message):
        abxi.read_sequences(*paths, ["Beauty", "Electronics"])


def test_abxi_missing_map(tmp_path):
    sequences, users, _ = write_abxi(tmp_path, "0 1|100\n")
    with pytest.raises(DataError, match=r"map_item\.txt: file not found"):
        abxi.read_sequences(sequences, users, tmp_path / "map_item.txt", ["Beauty", "Electronics"])


# ---------------------------------------------------------------- CDRIB split folders (family C)


def write_cdrib(folder: Path, train: str = "0\t0\n1\t1\n2\t0\n", test: str = "1\t2\n") -> Path:
    write(folder / "common_new_reindex.txt", "10\t0\t1\n11\t4\t1\n10\t2\t1\n")  # two common users
    write(folder / "train.txt", train)
    write(folder / "valid.txt", "0\t1\n")
    write(folder / "test.txt", test)
    return folder


def test_cdrib_common_users_share_ids_and_other_users_and_items_are_per_domain(tmp_path):
    folder = write_cdrib(tmp_path / "cloth_sport")
    split = cdrib.read_split(folder, "Clothing_Shoes_and_Jewelry", "cloth")
    assert rows(split["train"]) == [
        ("Clothing_Shoes_and_Jewelry", "u0", "cloth:i0", None, None),
        ("Clothing_Shoes_and_Jewelry", "u1", "cloth:i1", None, None),
        ("Clothing_Shoes_and_Jewelry", "cloth:u2", "cloth:i0", None, None),
    ]
    assert rows(split["valid"]) == [("Clothing_Shoes_and_Jewelry", "u0", "cloth:i1", None, None)]
    assert len(cdrib.read_domain(folder, "Clothing_Shoes_and_Jewelry", "cloth")) == 5


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("0\t0\n1\n", r"train\.txt line 2: expected 2 columns, got 1"),
        ("0\t0\n1\t1\t1\n", r"train\.txt line 2: expected 2 columns, got 3"),
        ("0\t0\nu1\t1\n", r"train\.txt line 2: user 'u1' is not a non-negative integer"),
        ("0\t0\n1\t-1\n", r"train\.txt line 2: item '-1' is not a non-negative integer"),
        ("", r"train\.txt: file is empty"),
    ],
)
def test_cdrib_bad_input_names_file_and_line(tmp_path, train, message):
    folder = write_cdrib(tmp_path / "cloth_sport", train=train)
    with pytest.raises(DataError, match=message):
        cdrib.read_split(folder, "Clothing_Shoes_and_Jewelry", "cloth")


def test_cdrib_missing_file(tmp_path):
    folder = write_cdrib(tmp_path / "cloth_sport")
    (folder / "test.txt").unlink()
    with pytest.raises(DataError, match=re.escape(str(folder / "test.txt")) + ": file not found"):
        cdrib.read_split(folder, "Clothing_Shoes_and_Jewelry", "cloth")

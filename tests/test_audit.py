"""The leak audit and the protocol v2 cleaning rules on planted data, where the answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.audit import AuditParams, audit, duplicate_pairs, touched_rows
from tasks.schema import canonical, empty_table
from tasks.spec import parse_spec
from tasks.split import cut_history_at_first_query, drop_duplicate_queries

SRC, TGT = ("Books",), "Movies"


def rows(domain: str, pairs: list[tuple[str, str]], ts: list[int] | None = None) -> pd.DataFrame:
    return canonical(
        pd.DataFrame(
            {
                "domain": domain,
                "user": [u for u, _ in pairs],
                "item": [i for _, i in pairs],
                "rating": np.nan,
                "ts": ts if ts is not None else [pd.NA] * len(pairs),
            }
        )
    )


def planted() -> dict[str, pd.DataFrame]:
    """20 warm users. ``dup`` (source) and ``dup-t`` (target) have the same 10 reviewers: Jaccard 1.0.

    ``near`` and ``near-t`` share 9 reviewers and each has one of its own: Jaccard 9/11 = 0.82 < 0.95.
    ``j90`` and ``j90-t``: 9 shared of 10 in one, 9 in the other: Jaccard 0.9, just under the default.
    Cold users c1, c2 have ``dup`` in their source history; c3 does not.
    """
    warm = [f"w{i:02d}" for i in range(20)]
    src = [(u, "dup") for u in warm[:10]] + [(u, "near") for u in warm[10:20]]
    tgt = [(u, "dup-t") for u in warm[:10]] + [(u, "near-t") for u in warm[11:20]] + [("w00", "near-t")]
    src += [(u, "j90") for u in warm[5:15]]
    tgt += [(u, "j90-t") for u in warm[5:14]]
    src += [(u, "filler") for u in warm] + [("c1", "dup"), ("c2", "dup"), ("c3", "filler"), ("c1", "filler")]
    tgt += [(u, "other") for u in warm[:15]]
    train = pd.concat([rows("Books", src), rows("Movies", tgt)], ignore_index=True)
    query = rows("Movies", [("c1", "dup-t"), ("c1", "other"), ("c2", "dup-t"), ("c3", "dup-t")])
    valid = rows("Movies", [("c4", "other")])
    return {
        "train": train,
        "support": empty_table(),
        "query": query,
        "valid_support": empty_table(),
        "valid_query": valid,
    }


def test_planted_duplicate_is_found_and_jaccard_090_is_not() -> None:
    t = planted()
    pairs = duplicate_pairs(t["train"], SRC, TGT, AuditParams(), raw_ids=False)
    assert list(zip(pairs["source_item"], pairs["target_item"], strict=True)) == [("dup", "dup-t")]
    assert pairs["co_reviewers"].tolist() == [10] and pairs["jaccard"].tolist() == [1.0]
    looser = duplicate_pairs(t["train"], SRC, TGT, AuditParams(jaccard=0.9), raw_ids=False)
    assert ("j90", "j90-t") in set(zip(looser["source_item"], looser["target_item"], strict=True))
    assert ("near", "near-t") not in set(zip(looser["source_item"], looser["target_item"], strict=True))


def test_min_co_reviewers_is_enforced() -> None:
    t = planted()
    assert duplicate_pairs(t["train"], SRC, TGT, AuditParams(min_co=11), raw_ids=False).empty


def test_raw_id_identity_is_a_duplicate() -> None:
    t = planted()
    train = pd.concat([t["train"], rows("Movies", [("w01", "filler")])], ignore_index=True)
    pairs = duplicate_pairs(train, SRC, TGT, AuditParams(), raw_ids=True)
    assert ("filler", "filler", "raw-id") in set(
        zip(pairs["source_item"], pairs["target_item"], pairs["why"], strict=True)
    )
    assert "filler" not in set(duplicate_pairs(train, SRC, TGT, AuditParams(), raw_ids=False)["source_item"])


def test_touched_pairs_are_exactly_the_users_own_duplicates() -> None:
    t = planted()
    pairs = duplicate_pairs(t["train"], SRC, TGT, AuditParams(), raw_ids=False)
    mask = touched_rows(t["query"], t["train"], pairs, SRC)
    # c3 asks for dup-t too, but has no dup in its own history: not touched
    assert mask.tolist() == [True, False, True, False]
    report = audit(t, SRC, TGT, AuditParams(), raw_ids=False, explicit=False, pairs=pairs)
    assert report["query"]["touched_pairs"] == 2 and report["query"]["touched_users"] == 2
    assert report["query"]["touched_share"] == 0.5
    assert not report["passed"]


def test_cleaning_removes_exactly_the_planted_pairs_and_emptied_users() -> None:
    t = planted()
    pairs = duplicate_pairs(t["train"], SRC, TGT, AuditParams(), raw_ids=False)
    touched = {n: touched_rows(t[n], t["train"], pairs, SRC) for n in ("query", "valid_query")}
    cleaned, counts = drop_duplicate_queries(t, touched)
    left = set(zip(cleaned["query"]["user"], cleaned["query"]["item"], strict=True))
    assert left == {("c1", "other"), ("c3", "dup-t")}
    assert counts["query_pairs_removed"] == 2 and counts["query_users_removed"] == 1  # c2 had only dup-t
    assert cleaned["train"].equals(t["train"])  # source histories stay
    assert audit(cleaned, SRC, TGT, AuditParams(), False, False)["passed"]


def test_validation_test_overlap_fails_the_audit() -> None:
    t = planted()
    t["valid_query"] = rows("Movies", [("c3", "other")])
    t["query"] = rows("Movies", [("c3", "dup-t")])
    report = audit(t, SRC, TGT, AuditParams(), False, False)
    assert report["valid_test_user_overlap"] == 1 and not report["passed"]


def _spec(**clean: str):
    return parse_spec(
        {
            "id": "X",
            "family": "L",
            "dataset": "d",
            "source": ["Books"],
            "target": "Movies",
            "k": 1,
            "split_seed": 1,
            "metrics": ["ndcg@10"],
            "beta": 0.2,
            "valid_fraction": 0.1,
            "budget": {"train_examples_multiple": 1, "adapt_steps": 1, "wall_seconds": 1},
            "filters": {"min_target": 2, "min_other": 1},
            "clean": clean,
        },
        "x.toml",
    )


def test_time_honest_history_cut_and_look_ahead() -> None:
    train = pd.concat(
        [
            rows(
                "Books", [("c1", "a"), ("c1", "b"), ("c1", "c"), ("c2", "a"), ("w1", "a")], [1, 5, 9, 20, 50]
            ),
            rows("Movies", [("w1", "x")], [40]),
        ],
        ignore_index=True,
    )
    tables = {
        "train": train,
        "support": rows("Movies", [("c1", "x"), ("c2", "x")], [2, 3]),
        "query": rows("Movies", [("c1", "y"), ("c2", "y")], [5, 10]),
        "valid_support": empty_table(),
        "valid_query": empty_table(),
    }
    before = audit(tables, ("Books",), "Movies", AuditParams(), True, False)
    assert before["look_ahead"]["cold_source_after_first_query"] == pytest.approx(2 / 4)  # c1's c, c2's a
    assert before["look_ahead"]["cold_source_after_first_target"] == pytest.approx(3 / 4)
    assert not before["passed"]
    cut, counts = cut_history_at_first_query(tables, _spec(history="before-first-query"))
    kept = set(zip(cut["train"]["user"], cut["train"]["item"], strict=True))
    # ts equal to the first query (c1's b at 5) is not earlier: dropped; c2 is left with no source row
    assert kept == {("c1", "a"), ("w1", "a"), ("w1", "x")}
    assert counts == {"cold_source_rows_after_first_query": 3, "users_without_source": 1}
    assert set(cut["query"]["user"]) == {"c1"} and set(cut["support"]["user"]) == {"c1"}
    assert audit(cut, ("Books",), "Movies", AuditParams(), True, False)["passed"]


def test_clean_rules_are_validated() -> None:
    from tasks.schema import DataError

    with pytest.raises(DataError, match="unknown rule"):
        _spec(bogus="x")
    with pytest.raises(DataError, match="must be one of"):
        _spec(duplicates="sometimes")
    with pytest.raises(DataError, match="families"):
        _spec(users="disjoint")
    with pytest.raises(DataError, match="time_quantile"):
        _spec(time_cut="global")

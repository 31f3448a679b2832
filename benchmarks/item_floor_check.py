"""Issue 18's "Checked by": which methods beat the item-prior floor on the cold-item tasks, at K = 1, 3, 5?

The floor of family IR is ``item-mean``, the item prior: a cold item's mean support rating. Family IL has no
item prior to speak of (a cold item has no training row and exactly K support rows, so any count is the same
for all), so its floor is ``random``. For every cold-item task of the suite and every method with committed
records for all seeds, the script compares the method's ranked metric (``item_mae`` in IR, lower is better;
``item_ndcg@10`` in IL, higher is better) with the floor's: the mean over seeds, and the paired per-item
difference with the leaderboard's 95% cold-item-cluster bootstrap interval (``leaderboard.statistics``). A
method "beats" the floor when the interval lies entirely on the better side; "tie" when it covers 0.

It reads committed records only; it runs nothing.

    python benchmarks/item_floor_check.py --out benchmarks/results/item_floor_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.protocols import get, rank_metric
from benchmark.records import load_record, record_path
from benchmark.registry import available, load_method
from benchmark.suite import load_suite
from leaderboard.statistics import paired_bootstrap, paired_user_differences
from tasks.spec import get_spec

REPO = Path(__file__).resolve().parents[1]
FLOORS = {"IR": "item-mean", "IL": "random"}


def seed_frames(results: Path, task: str, method: str, seeds: list[int], metric: str) -> pd.DataFrame | None:
    """(item, seed, value) over ``seeds`` of the method's ok records, or None when one is missing."""
    parts = []
    for seed in seeds:
        path = record_path(results, task, method, seed)
        if not path.is_file():
            return None
        record = load_record(path)
        if record.status != "ok":
            return None
        frame = pd.read_parquet(path.with_name(record.artifacts["per_user"]))
        parts.append(pd.DataFrame({"item": frame["item"].astype(str), "seed": seed, "value": frame[metric]}))
    return pd.concat(parts, ignore_index=True)


def compare(task: str, results: Path, seeds: list[int]) -> dict[str, Any]:
    family = get_spec(task).family
    metric = rank_metric(family)
    floor_name = FLOORS[family]
    floor = seed_frames(results, task, floor_name, seeds, metric.name)
    if floor is None:
        raise SystemExit(f"{task}: the floor {floor_name!r} has no ok records for seeds {seeds} in {results}")
    rows: dict[str, Any] = {}
    for method in sorted(m for m in available() if family in load_method(m).families and m != floor_name):
        frame = seed_frames(results, task, method, seeds, metric.name)
        if frame is None:
            continue
        diff, cluster = paired_user_differences(frame, floor, unit="item")
        interval = paired_bootstrap(diff, cluster)
        better = interval.high < 0 if metric.direction == "lower" else interval.low > 0
        worse = interval.low > 0 if metric.direction == "lower" else interval.high < 0
        rows[method] = {
            "mean": round(float(frame.groupby("seed")["value"].mean().mean()), 6),
            "difference": round(interval.mean, 6),
            "ci95": [round(interval.low, 6), round(interval.high, 6)],
            "verdict": "beats floor" if better else "below floor" if worse else "tie",
        }
    return {
        "family": family,
        "k": get_spec(task).k,
        "metric": metric.name,
        "direction": metric.direction,
        "floor": floor_name,
        "floor_mean": round(float(floor.groupby("seed")["value"].mean().mean()), 6),
        "methods": rows,
    }


def summary(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """Per family and K: the methods that beat the floor on every task of that K."""
    out: dict[str, dict[str, list[str]]] = {}
    for row in tasks.values():
        by_k = out.setdefault(row["family"], {})
        beat = {m for m, r in row["methods"].items() if r["verdict"] == "beats floor"}
        key = f"k{row['k']}"
        by_k[key] = sorted(beat if key not in by_k else set(by_k[key]) & beat)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "leaderboard" / "results")
    parser.add_argument("--suite", default="standard")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "item_floor_check.json")
    args = parser.parse_args(argv)
    suite = load_suite(args.suite)
    tasks = [t for t in suite.tasks if get(get_spec(t).family).cold == "items" and get_spec(t).ranked]
    rows = {t: compare(t, args.results, list(suite.seeds)) for t in tasks}
    report = {"seeds": list(suite.seeds), "summary": summary(rows), "tasks": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for task, row in rows.items():
        verdicts = ", ".join(f"{m} {r['verdict']} ({r['mean']:.4f})" for m, r in row["methods"].items())
        print(f"{task}: {row['floor']} {row['floor_mean']:.4f}; {verdicts}")
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())

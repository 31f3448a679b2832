"""Hub scale: build a task from a synthetic 10-million-row category in the Amazon Reviews 2023 schema.

Writes two rating-only files in the hub's format (header ``user_id,parent_asin,rating,timestamp``, 28-char
user IDs, 10-char parent ASINs, 1-5 stars, millisecond times) as a local mirror under a temporary data root:
``Books`` with ``--rows`` rows (default 10,000,000) and ``Movies_and_TV`` with a fifth of that, sharing a
share of their users. Then ``coldbench tasks build`` builds the example task
``examples/amazon2023/R-books2movies-2023-k3`` (5-core per domain, at most 20,000 overlapping users) in a
fresh process through the whole path: data-set TOML, checksums, ``datasets`` CSV builder, Arrow, column-wise
deduplication and filters, split, audit, Parquet. Reported: wall seconds and the peak RSS of that process
(the goal: under 2 minutes and 2 GB on 2 CPU cores), once cold (``datasets`` parses the CSVs into its Arrow
cache) and once warm (``--force``: the Arrow cache is reused, the task is rebuilt).

``--baseline DIR`` builds the same task, on the same files and in the same run, with the code of another
checkout (e.g. ``git worktree add ../coldbench-base <commit>``), cold and warm, alternating with this
checkout's builds so that both see the same machine load; the report then has both figures and both split
hashes (equal when the change left the task's content alone).

    python benchmarks/hub_scale.py --out benchmarks/results/hub_scale.json
    python benchmarks/hub_scale.py --baseline ../coldbench-base --out benchmarks/results/hub_scale.json
    python benchmarks/hub_scale.py --rows 1000000        # a quick check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "amazon2023"
TASK = "R-books2movies-2023-k3"
MIRROR = "amazon-reviews-2023/benchmark/5core/rating_only"
HEADER = b"user_id,parent_asin,rating,timestamp\n"
CHUNK = 2_000_000
STARS = pa.array(["1.0", "2.0", "3.0", "4.0", "5.0"])


def _ids(codes: np.ndarray, prefix: str, width: int) -> pa.Array:
    """``prefix`` + zero-padded codes, built in Arrow (no Python string per row)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(codes), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def write_category(path: Path, rows: int, users: int, first_user: int, items: int, seed: int) -> None:
    """A category file in chunks: users uniform over their range, items Zipf-like, ratings skewed high."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(HEADER)
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            user = first_user + rng.integers(0, users, n)
            item = (rng.pareto(1.1, n) * items / 50).astype(np.int64) % items
            stars = 5 - np.minimum(rng.geometric(0.45, n), 5)  # 0..4, mostly 4 (five stars)
            table = pa.table(
                {
                    "user_id": _ids(user, "AG", 26),
                    "parent_asin": _ids(item, f"B{seed}", 8),
                    "rating": STARS.take(pa.array(stars)),
                    "timestamp": rng.integers(1_200_000_000_000, 1_700_000_000_000, n),
                }
            )
            pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def make_root(root: Path, rows: int) -> dict:
    started = time.perf_counter()
    books_users, movie_users = rows // 10, rows // 50  # ~10 ratings per user in each category
    shared = movie_users // 2
    files = {
        "Books": (rows, books_users, 0, rows // 25, 1),
        "Movies_and_TV": (rows // 5, movie_users, books_users - shared, rows // 100, 2),
    }
    lines = []
    for category, (n, users, first, items, seed) in files.items():
        path = root / MIRROR / f"{category}.csv"
        write_category(path, n, users, first, items, seed)
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 24), b""):
                digest.update(block)
        lines.append(f"{digest.hexdigest()}  ./{path.relative_to(root)}")
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    sizes = {c: (root / MIRROR / f"{c}.csv").stat().st_size for c in files}
    return {
        "rows": {c: v[0] for c, v in files.items()},
        "users": {c: v[1] for c, v in files.items()},
        "shared_users": shared,
        "bytes": sizes,
        "seconds": round(time.perf_counter() - started, 1),
    }


def build(root: Path, cache: Path, out: Path, force: bool, code: Path = REPO) -> dict:
    """One ``coldbench tasks build`` in a fresh process, with the code of ``code``: wall seconds, peak RSS."""
    env = {
        **os.environ,
        "PYTHONPATH": str(code),  # the checkout's packages, ahead of the installed (editable) ones
        "COLDBENCH_CACHE": str(cache),
        "COLDBENCH_SPECS": str(code / EXAMPLES.relative_to(REPO)),
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    command = [sys.executable, "-c", CHILD, "tasks", "build", TASK, "--data-dir", str(root)]
    command += ["--out", str(out), *(["--force"] if force else [])]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"build failed ({done.returncode}) with {code}:\n{done.stderr[-3000:]}")
    imported = Path(done.stderr.split("CODE ", 1)[1].split("\n", 1)[0])
    if not imported.is_relative_to(code):  # an installed copy would measure the wrong code
        raise SystemExit(f"the build with {code} imported {imported}")
    peak_kib = int(done.stderr.rsplit("PEAK_RSS_KIB ", 1)[1].split()[0])
    return {"wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_kib / 1024, 1)}


def manifest_of(out: Path) -> dict:
    return json.loads((out / TASK / "manifest.json").read_text())


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# The build process reports its own peak RSS (ru_maxrss, KiB on Linux) once the command is done.
CHILD = (
    "import resource, sys\n"
    "import tasks.filters\n"
    "print('CODE', tasks.filters.__file__, file=sys.stderr)\n"
    "from benchmark.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the large category")
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data root")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="also build with this checkout's code, to compare"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="coldbench-hub-scale-"))
    base = None if args.baseline is None else args.baseline.resolve()
    try:
        data = make_root(work / "root", args.rows)
        load = {"before": _load()}
        root, runs = work / "root", {}
        for phase, force in (("cold", False), ("warm", True)):  # alternate, so both see the same load
            if base is not None:
                runs[("baseline", phase)] = build(root, work / "cache-base", work / "tasks-base", force, base)
            runs[("current", phase)] = build(root, work / "cache", work / "tasks", force)
        load["after"] = _load()
        manifest = manifest_of(work / "tasks")
        result = {
            "task": TASK,
            "data": data,
            "cold": runs[("current", "cold")],
            "warm": runs[("current", "warm")],
            "split_hash": manifest["split_hash"],
            "filters": manifest.get("filters"),
            "counts": manifest["counts"],
            "duplicate_rows_removed": manifest["duplicate_rows_removed"],
            "audit_passed": manifest["audit"]["passed"],
            "goal": {"wall_seconds": 120, "peak_rss_mb": 2048},
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": load},
            "command": " ".join(["python", "benchmarks/hub_scale.py", *(argv or sys.argv[1:])]),
        }
        if base is not None:
            before = manifest_of(work / "tasks-base")
            result["baseline"] = {
                "code": str(args.baseline),
                "cold": runs[("baseline", "cold")],
                "warm": runs[("baseline", "warm")],
                "split_hash": before["split_hash"],
                "same_content": before["content"] == manifest["content"],
            }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

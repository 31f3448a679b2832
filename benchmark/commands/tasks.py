"""``coldbench tasks build | list | show``: task specs and their split artifacts."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmark.cli import UsageError
from tasks import artifact
from tasks.catalog import resolve_data_dir
from tasks.schema import DataError
from tasks.spec import all_specs, get_spec


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("tasks", help="build, list and show cold-start tasks")
    verbs = parser.add_subparsers(dest="verb", required=True)

    build = verbs.add_parser("build", help="build split artifacts (reused when they verify)")
    build.add_argument("ids", nargs="*", help="task ids (or --all)")
    build.add_argument("--all", action="store_true", help="every task in tasks/specs")
    build.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    build.add_argument("--out", type=Path, default=None, help="artifact root (default: the cache)")
    build.add_argument("--force", action="store_true", help="rebuild even when an artifact verifies")
    build.set_defaults(func=_build)

    listing = verbs.add_parser("list", help="tasks with their counts (from built artifacts)")
    listing.add_argument("--out", type=Path, default=None, help="artifact root (default: the cache)")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=_list)

    show = verbs.add_parser("show", help="one task's spec and manifest")
    show.add_argument("id")
    show.add_argument("--out", type=Path, default=None, help="artifact root (default: the cache)")
    show.set_defaults(func=_show)


def _build(args: argparse.Namespace) -> int:
    specs = all_specs()
    if args.all == bool(args.ids):
        raise UsageError("give task ids or --all (not both)")
    ids = list(specs) if args.all else args.ids
    chosen = [specs[i] if i in specs else get_spec(i) for i in ids]
    data_dir = resolve_data_dir(args.data_dir)
    out = args.out or artifact.default_task_dir()
    started = time.perf_counter()
    for spec in chosen:
        manifest = artifact.build(spec, data_dir, out, force=args.force)
        print(f"{spec.id}\t{manifest['split_hash'][:16]}\t{out / spec.id}")
    print(f"built {len(chosen)} task(s) in {time.perf_counter() - started:.1f}s")
    return 0


def _summary(spec, out: Path) -> dict:
    row = {
        "id": spec.id,
        "family": spec.family,
        "source": list(spec.source),
        "target": spec.target,
        "k": spec.k,
        "beta": spec.beta,
        "train_rows": None,
        "cold_users": None,
        "query_rows": None,
        "split_hash": None,
        "ranked": spec.ranked,
        "audit": None,
    }
    manifest_path = out / spec.id / artifact.MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        counts = manifest["counts"]
        row["audit"] = _audit_cell(manifest.get("audit"))
        row |= {
            "train_rows": counts["train_rows"],
            "cold_users": counts["test_users"],
            "query_rows": counts["query_rows"],
            "split_hash": json.loads(manifest_path.read_text())["split_hash"],
        }
    return row


def _audit_cell(report: dict | None) -> str:
    """``ok`` or what failed, with the measured share: e.g. ``dup 14.3%, overlap 832``."""
    if not report:
        return "none"
    if report["passed"]:
        return "ok"
    problems = []
    if report["query"]["touched_pairs"]:
        problems.append(f"dup {100 * report['query']['touched_share']:.1f}%")
    if report["valid_test_user_overlap"]:
        problems.append(f"overlap {report['valid_test_user_overlap']}")
    ahead = (report.get("look_ahead") or {}).get("cold_source_after_first_query")
    if ahead:
        problems.append(f"ahead {100 * ahead:.0f}%")
    return ", ".join(problems)


def _list(args: argparse.Namespace) -> int:
    out = args.out or artifact.default_task_dir()
    rows = [_summary(spec, out) for spec in all_specs().values()]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["id"]) for r in rows) if rows else 2
    print(
        f"{'id':{width}} {'fam':3} {'K':>2} {'beta':>5} {'train':>8} {'cold':>6} {'query':>7} {'ranked':6}"
        f" {'audit':24} target"
    )
    for r in rows:
        beta = "" if r["beta"] is None else f"{r['beta']:.2f}"
        cells = [str(r[c]) if r[c] is not None else "-" for c in ("train_rows", "cold_users", "query_rows")]
        print(
            f"{r['id']:{width}} {r['family']:3} {r['k']:>2} {beta:>5}"
            f" {cells[0]:>8} {cells[1]:>6} {cells[2]:>7}"
            f" {'yes' if r['ranked'] else 'no':6} {r['audit'] or '-':24} {r['target']}"
        )
    if any(r["train_rows"] is None for r in rows):
        print("(counts appear once a task is built: coldbench tasks build --all)")
    return 0


def _show(args: argparse.Namespace) -> int:
    spec = get_spec(args.id)
    out = args.out or artifact.default_task_dir()
    try:
        manifest = artifact.verify(out / spec.id)
    except DataError:
        manifest = None
    print(json.dumps({"spec": spec.to_dict(), "manifest": manifest}, indent=2))
    return 0

"""``coldbench tasks build | list | show``: task specs and their split artifacts.

Specs are found on the search path (``tasks.search``): the package, ``$COLDBENCH_SPECS`` and each
``--specs DIR``. A spec file that fails validation is reported with its path and reason and left out; the
other tasks list and build as usual.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmark.cli import UsageError, add_specs_option
from benchmark.metrics import METRICS
from benchmark.verify import check_manifest
from tasks import artifact, search
from tasks.catalog import registry, resolve_data_dir
from tasks.schema import DataError
from tasks.spec import SpecSet, TaskSpec, find_specs, set_known_metrics


def register(sub: argparse._SubParsersAction) -> None:
    set_known_metrics(METRICS)  # tasks never imports benchmark: name the known metrics for spec validation
    parser = sub.add_parser("tasks", help="build, list and show cold-start tasks")
    verbs = parser.add_subparsers(dest="verb", required=True)
    common = argparse.ArgumentParser(add_help=False)
    add_specs_option(common)
    common.add_argument("--out", type=Path, default=None, help="artifact root (default: the cache)")

    build = verbs.add_parser(
        "build", parents=[common], help="build split artifacts (reused when they verify)"
    )
    build.add_argument("ids", nargs="*", help="task ids (or --all)")
    build.add_argument("--all", action="store_true", help="every valid task on the search path")
    build.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    build.add_argument("--force", action="store_true", help="rebuild even when an artifact verifies")
    build.add_argument(
        "--revision", default=None, help="hub data sets: the commit (or branch) to read (default: the TOML's)"
    )
    build.set_defaults(func=_build)

    listing = verbs.add_parser(
        "list", parents=[common], help="tasks with their counts (from built artifacts)"
    )
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=_list)

    show = verbs.add_parser("show", parents=[common], help="one task's spec and manifest")
    show.add_argument("id")
    show.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    show.set_defaults(func=_show)


def load_specs(args: argparse.Namespace) -> SpecSet:
    """The search path with this command's ``--specs`` folders added (workers inherit them)."""
    search.use_spec_dirs(args.specs)
    return find_specs()


def report_invalid(found: SpecSet) -> None:
    """One line per spec or data-set file that was left out, naming it and why (stderr: JSON stays clean)."""
    for problem in [*registry().errors.values(), *found.errors.values()]:
        print(f"coldbench: skipped: {' '.join(problem.split())}", file=sys.stderr)


def _build(args: argparse.Namespace) -> int:
    found = load_specs(args)
    if args.all == bool(args.ids):
        raise UsageError("give task ids or --all (not both)")
    chosen = list(found.specs.values()) if args.all else [found.get(i) for i in args.ids]
    data_dir = resolve_data_dir(args.data_dir)
    out = args.out or artifact.default_task_dir()
    started = time.perf_counter()
    for spec in chosen:
        manifest = artifact.build(spec, data_dir, out, force=args.force, revision=args.revision)
        print(f"{spec.id}\t{manifest['split_hash'][:16]}\t{out / spec.id}")
    print(f"built {len(chosen)} task(s) in {time.perf_counter() - started:.1f}s")
    if args.all and found.errors:
        report_invalid(found)
        print(f"coldbench: error: {len(found.errors)} spec file(s) could not be built", file=sys.stderr)
        return 1
    return 0


def _summary(spec: TaskSpec, out: Path, origin: str) -> dict:
    row = {
        "id": spec.id,
        "origin": origin,
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
        manifest = check_manifest(out / spec.id)
        counts = manifest["counts"]
        row["audit"] = _audit_cell(manifest.get("audit"))
        row |= {
            "train_rows": counts["train_rows"],
            # the cold units: test users, or test cold items in a cold-item family
            "cold_users": counts["test_cold_items" if "test_cold_items" in counts else "test_users"],
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


def _origin(path: Path) -> str:
    """``package`` for the package's own specs, else the folder the file came from."""
    return search.PACKAGE if path.parent.resolve() == search.PACKAGE_TASKS.resolve() else str(path.parent)


def _list(args: argparse.Namespace) -> int:
    found = load_specs(args)
    out = args.out or artifact.default_task_dir()
    rows = [_summary(spec, out, _origin(found.origins[spec.id])) for spec in found.specs.values()]
    report_invalid(found)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["id"]) for r in rows) if rows else 2
    targets = max([len(r["target"]) for r in rows] + [6])
    print(
        f"{'id':{width}} {'fam':3} {'K':>2} {'beta':>5} {'train':>8} {'cold':>6} {'query':>7} {'ranked':6}"
        f" {'audit':24} {'target':{targets}} from"
    )
    for r in rows:
        beta = "" if r["beta"] is None else f"{r['beta']:.2f}"
        cells = [str(r[c]) if r[c] is not None else "-" for c in ("train_rows", "cold_users", "query_rows")]
        print(
            f"{r['id']:{width}} {r['family']:3} {r['k']:>2} {beta:>5}"
            f" {cells[0]:>8} {cells[1]:>6} {cells[2]:>7}"
            f" {'yes' if r['ranked'] else 'no':6} {r['audit'] or '-':24}"
            f" {r['target']:{targets}} {r['origin']}"
        )
    if any(r["train_rows"] is None for r in rows):
        print("(counts appear once a task is built: coldbench tasks build --all)")
    return 0


def _show(args: argparse.Namespace) -> int:
    found = load_specs(args)
    spec = found.get(args.id)
    out = args.out or artifact.default_task_dir()
    try:
        manifest = artifact.verify(out / spec.id)
    except DataError:
        manifest = None
    origin = str(found.origins[spec.id])
    if args.format == "json":
        print(json.dumps({"spec": spec.to_dict(), "origin": origin, "manifest": manifest}, indent=2))
        return 0
    print("\n".join(_describe(spec, origin, manifest)))
    return 0


def _describe(spec, origin: str, manifest: dict | None) -> list[str]:
    """A task for a reader: what it asks, where it comes from, its counts and its leak audit."""
    beta = "" if spec.beta is None else f", beta {spec.beta:g}"
    lines = [
        f"{spec.id} (family {spec.family}, {'ranked' if spec.ranked else 'reported, not ranked'})",
        f"  {', '.join(spec.source)} -> {spec.target}; K = {spec.k}{beta}; data set {spec.dataset}",
        f"  spec: {origin}",
        f"  cleaning rules: {', '.join(f'{k} = {v}' for k, v in sorted(spec.clean.items())) or 'none'}",
    ]
    if manifest is None:
        return [*lines, "  not built yet: coldbench tasks build " + spec.id]
    counts = manifest["counts"]
    lines += [
        f"  split hash {manifest['split_hash']}",
        "  counts: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()),
    ]
    if manifest.get("cleaning"):
        lines.append(
            "  removed by cleaning: " + ", ".join(f"{k} {v:,}" for k, v in manifest["cleaning"].items())
        )
    report = manifest.get("audit")
    if report:
        lines.append(f"  audit: {_audit_cell(report)}; {report['duplicate_pairs']:,} duplicate products")
        for name in ("query", "valid_query"):
            part = report[name]
            lines.append(
                f"    {name}: {part['touched_pairs']:,} of {part['pairs']:,} pairs touched "
                f"({100 * part['touched_share']:.2f}%), {part['touched_users']:,} of {part['users']:,} users"
            )
        lines.append(f"    validation/test user overlap: {report['valid_test_user_overlap']:,}")
        for key, value in (report.get("look_ahead") or {}).items():
            lines.append(f"    {key.replace('_', ' ')}: {value:,}")
    return lines

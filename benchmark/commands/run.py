"""``coldbench run``: one (task, method, seed) cell -> a run record under ``--out``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmark.cli import UsageError
from benchmark.registry import RegistryError
from tasks.catalog import resolve_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run one method on one task with one seed")
    parser.add_argument("--method", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable)",
    )
    parser.add_argument("--save-predictions", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda where torch sees a GPU")
    parser.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    parser.add_argument(
        "--tasks-dir", type=Path, default=None, help="task artifact root (default: the cache)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs"), help="results root (default: ./runs)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from benchmark.runner import parse_overrides, run_cell  # torch: imported only when running

    try:
        overrides = parse_overrides(args.overrides)
        result = run_cell(
            args.task,
            args.method,
            args.seed,
            resolve_data_dir(args.data_dir),
            args.out,
            overrides,
            save_predictions=args.save_predictions,
            device=args.device,
            command=shlex.join(["coldbench", *sys.argv[1:]]),
            tasks_dir=args.tasks_dir,
        )
    except (RegistryError, KeyError, ValueError) as exc:
        raise UsageError(str(exc).strip("'\"")) from exc
    record = result.record
    if record.status != "ok":
        reason = (record.error or "").splitlines()[0] if record.error else record.status
        print(
            f"coldbench: {record.status}: {record.task.id} {record.method.name} seed {record.seed}: {reason}",
            file=sys.stderr,
        )
        print(result.path)
        return 1
    shown = " ".join(f"{k}={v:.4f}" for k, v in record.metrics.items())
    print(f"{record.task.id} {record.method.name} seed={record.seed} {shown} fit={record.timing.fit:.1f}s")
    print(result.path)
    return 0

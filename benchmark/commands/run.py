"""``coldbench run``: one (task, method, seed) cell -> a run record under ``--out``.

The cell runs in a supervised worker process, as in ``bench``: a method that hangs is stopped at its
wall-clock ceiling with a ``timeout`` record, and one that exits or kills its process gets a ``failed``
record; Ctrl-C or SIGTERM stops the worker and ends the command with one line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmark.cli import UsageError, add_specs_option
from benchmark.commands.bench import non_negative_int
from tasks.catalog import resolve_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run one method on one task with one seed", allow_abbrev=False)
    parser.add_argument("--method", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=non_negative_int, default=0, help="an integer >= 0 (default 0)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable; the key must exist, the value must have its type)",
    )
    parser.add_argument("--save-predictions", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda where torch sees a GPU")
    parser.add_argument("--data-dir", help="data root (default: $COLDBENCH_DATA)")
    add_specs_option(parser)
    parser.add_argument(
        "--tasks-dir", type=Path, default=None, help="task artifact root (default: the cache)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs"), help="results root (default: ./runs)")
    parser.set_defaults(func=_run)


def _job(args: argparse.Namespace):
    """Everything checked here, before any work: method, task, config, device, folders; then the artifact."""
    import torch

    from benchmark.bench import CellJob
    from benchmark.registry import load_method, registration
    from benchmark.runner import cell_config, parse_overrides, resolve_config
    from benchmark.suite import Cell
    from tasks import artifact
    from tasks.cache import default_cache_dir, require_writable
    from tasks.spec import get_spec

    spec = get_spec(args.task)
    cls = load_method(args.method)
    if spec.family not in cls.families:
        raise ValueError(f"method {args.method!r} supports families {cls.families}, not {spec.family}")
    overrides = parse_overrides(args.overrides)
    resolve_config(cls, spec.family, overrides)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: torch sees no CUDA device here; use --device cpu")
    tasks_dir = args.tasks_dir or artifact.default_task_dir()
    for folder, what in (
        (args.out, "--out folder"),
        (tasks_dir, "task folder"),
        (default_cache_dir(), "cache"),
    ):
        require_writable(folder, what)
    data_dir = resolve_data_dir(args.data_dir)
    split_hash = artifact.build(spec, data_dir, tasks_dir)["split_hash"]
    return CellJob(
        Cell(spec.id, args.method, args.seed),
        data_dir,
        args.out,
        tasks_dir,
        split_hash=split_hash,
        target=registration(args.method).target,
        spec=spec,
        overrides=overrides,
        save_predictions=args.save_predictions,
        device=args.device,
        command=shlex.join(["coldbench", *sys.argv[1:]]),
        variant=cell_config(args.method, cls, spec, overrides).variant,
    )


def _run(args: argparse.Namespace) -> int:
    from benchmark.bench import run_jobs
    from benchmark.records import load_record
    from benchmark.registry import RegistryError
    from tasks.search import use_spec_dirs

    use_spec_dirs(args.specs)
    try:
        job = _job(args)
    except (RegistryError, KeyError, ValueError) as exc:
        raise UsageError(exc.args[0] if type(exc) is KeyError and exc.args else str(exc)) from exc
    ((_, done),) = list(run_jobs([job], jobs=1, threads=None))
    cell = job.cell
    if done.status == "crashed":
        print(
            f"coldbench: crashed: {cell.task} {cell.method} seed {cell.seed}: {done.error}", file=sys.stderr
        )
        return 1
    path = job.record
    record = load_record(path)
    if record.status != "ok":
        reason = (record.error or "").splitlines()[0] if record.error else record.status
        print(
            f"coldbench: {record.status}: {record.task.id} {record.method.name} seed {record.seed}: {reason}",
            file=sys.stderr,
        )
        print(path)
        return 1
    shown = " ".join(f"{k}={v:.4f}" for k, v in record.metrics.items())
    print(f"{record.task.id} {record.method.name} seed={record.seed} {shown} fit={record.timing.fit:.1f}s")
    print(path)
    return 0

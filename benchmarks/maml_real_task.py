"""MAML end to end on a real task under both backends: torch.func (batched over users) and learn2learn.

Runs the cell ``coldbench run --method maml --task TASK --seed SEED`` in this process through the runner
(``benchmark.runner.run_cell``), both on the configuration ``coldbench run`` runs (the task group's tuned one
where it exists, passed as ``--set`` values since ``--set`` applies to the TOML defaults), once with
``backend="torch.func"`` and once with ``backend=learn2learn``, and writes both records under
``--records``. It reports each backend's metrics, their largest absolute difference, and the time per
meta-step: seconds spent in ``MAML._train_epoch`` (meta-training without the per-epoch validation, which runs
the same code under both backends) over the number of meta-steps (calls of the backend). Both runs draw the
same meta-batches, so their step counts are equal unless early stopping picks other epochs.

Wall time (``ratio``) and process CPU time (``cpu_ratio``, less sensitive to other work on the machine) are
both given. The record's ``timing.fit`` also counts validation and the prediction-time selection, so
``fit_ms_per_step`` is context only. Needs learn2learn: run it inside ``tox -e l2l``, whose
test ``tests/l2l/test_maml_real_task.py`` calls ``compare``, asserts the agreement and writes the JSON.

    python benchmarks/maml_real_task.py --records /tmp/records --out benchmarks/results/maml_real_task.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.runner import run_cell
from benchmark.tuning import tuned_config
from methods import maml
from tasks.catalog import resolve_data_dir

TASK, SEED = "R-books2movies-b20-k3", 0
BACKENDS = ("torch.func", "learn2learn")
TOLERANCE = 1e-4  # largest metric difference allowed between the backends (issue 12, item 5)


@dataclass
class Meter:
    """What one run spent in meta-training: backend calls (meta-steps), epochs, their wall and CPU seconds."""

    steps: int = 0
    epochs: int = 0
    train_s: float = 0.0
    train_cpu_s: float = 0.0
    epoch_s: list[float] = field(default_factory=list)


@contextmanager
def metered(backend: str) -> Iterator[Meter]:
    """Count ``backend``'s meta-steps and time ``MAML._train_epoch`` for the duration of one run.

    Wraps the entry of ``methods.maml.BACKENDS`` (looked up per epoch) and the method's epoch, and restores
    both afterwards; the run itself is untouched, so its record is the one ``coldbench run`` would write.
    """
    meter = Meter()
    losses: Callable[..., torch.Tensor] = maml.BACKENDS[backend]
    train_epoch = maml.MAML._train_epoch

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        meter.steps += 1
        return losses(*args, **kwargs)

    def timed(self: maml.MAML, *args: Any, **kwargs: Any) -> float:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return train_epoch(self, *args, **kwargs)
        finally:
            seconds = time.perf_counter() - start
            meter.epochs += 1
            meter.train_s += seconds
            meter.train_cpu_s += time.process_time() - cpu
            meter.epoch_s.append(round(seconds, 3))

    maml.BACKENDS[backend] = counted
    maml.MAML._train_epoch = timed  # type: ignore[method-assign]
    try:
        yield meter
    finally:
        maml.BACKENDS[backend] = losses
        maml.MAML._train_epoch = train_epoch  # type: ignore[method-assign]


def run_backend(
    backend: str, task: str, seed: int, data_dir: Path, records: Path, tasks_dir: Path | None, threads: int
) -> dict[str, Any]:
    """One cell under ``backend``: its record's figures and the meter's."""
    found = tuned_config("maml", task)  # --set applies to the TOML defaults: pass the tuned values too
    overrides = {**(found[0] if found else {}), "backend": backend}
    command = ["coldbench", "run", "--method", "maml", "--task", task, "--seed", str(seed)]
    command += [f"--set {k}={json.dumps(v)}" for k, v in overrides.items()]
    with metered(backend) as meter:
        result = run_cell(
            task,
            "maml",
            seed,
            data_dir,
            records,
            overrides=overrides,
            tasks_dir=tasks_dir,
            threads=threads,
            command=" ".join(command),
            tuned=True,
        )
    record = result.record
    per_user = result.path.with_name(record.artifacts["per_user"]) if "per_user" in record.artifacts else None
    return {
        "command": " ".join(command),
        "record": str(result.path.relative_to(records)),  # under --records (a tmp folder in the test)
        "per_user_file": per_user,
        "status": record.status,
        "error": record.error,
        "config_hash": record.method.config_hash,
        "split_hash": record.task.split_hash,
        "metrics": dict(record.metrics),
        "validation_score": record.validation_score,
        "n_eval_users": record.n_eval_users,
        "fit_s": record.timing.fit,
        "meta_steps": meter.steps,
        "epochs": meter.epochs,
        "train_s": round(meter.train_s, 3),
        "epoch_train_s": meter.epoch_s,
        "train_ms_per_step": round(1e3 * meter.train_s / meter.steps, 3) if meter.steps else None,
        "train_cpu_s": round(meter.train_cpu_s, 3),
        "train_cpu_ms_per_step": round(1e3 * meter.train_cpu_s / meter.steps, 3) if meter.steps else None,
        "fit_ms_per_step": round(1e3 * record.timing.fit / meter.steps, 3) if meter.steps else None,
    }


def per_user_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> float | None:
    """Largest absolute difference of any per-user metric between the two runs' per-user files."""
    if not (ours["per_user_file"] and theirs["per_user_file"]):
        return None
    a = pd.read_parquet(ours["per_user_file"]).sort_values("user").reset_index(drop=True)
    b = pd.read_parquet(theirs["per_user_file"]).sort_values("user").reset_index(drop=True)
    if not a["user"].equals(b["user"]):
        return float("inf")
    columns = [c for c in a.columns if c != "user" and pd.api.types.is_float_dtype(a[c])]
    return float(max(np.abs(a[c].to_numpy() - b[c].to_numpy()).max() for c in columns))


def learn2learn_version() -> str:
    import learn2learn  # only this env has it

    return learn2learn.__version__


def compare(
    task: str = TASK,
    seed: int = SEED,
    data_dir: Path | None = None,
    records: Path = Path("runs-l2l"),
    tasks_dir: Path | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Run both backends on (task, seed) and return the report (see the module docstring)."""
    data_dir = resolve_data_dir(data_dir)
    version = learn2learn_version()
    load_before = os.getloadavg()[0]
    runs = {b: run_backend(b, task, seed, data_dir, records, tasks_dir, threads) for b in BACKENDS}
    ours, theirs = runs["torch.func"], runs["learn2learn"]
    shared = sorted(set(ours["metrics"]) & set(theirs["metrics"]))
    differences = {m: abs(ours["metrics"][m] - theirs["metrics"][m]) for m in shared}

    def ratio(key: str) -> float | None:
        return round(theirs[key] / ours[key], 2) if ours[key] and theirs[key] else None

    max_per_user = per_user_difference(ours, theirs)
    for run in runs.values():
        run.pop("per_user_file")  # a path in --records: not part of the report
    return {
        "benchmark": "maml end to end on a real task: torch.func backend vs learn2learn.algorithms.MAML",
        "task": task,
        "seed": seed,
        "tolerance": TOLERANCE,
        "runs": runs,
        "metric_abs_diff": differences,
        "max_metric_abs_diff": max(differences.values()) if differences else None,
        "max_per_user_abs_diff": max_per_user,
        "agree": bool(differences)
        and set(ours["metrics"]) == set(theirs["metrics"])
        and max(differences.values()) <= TOLERANCE,
        "statistic": "MAML._train_epoch time per meta-step, learn2learn / torch.func: wall (ratio), CPU",
        "ratio": ratio("train_ms_per_step"),
        # process CPU time: less sensitive than wall time to other work on the machine
        "cpu_ratio": ratio("train_cpu_ms_per_step"),
        "fit_ratio": ratio("fit_s"),
        "learn2learn": version,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        # other processes on the machine slow both runs: keep for context
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data-dir", type=Path, help="data root (default: $COLDBENCH_DATA)")
    parser.add_argument("--tasks-dir", type=Path, help="task artifact root (default: the cache)")
    parser.add_argument("--records", type=Path, required=True, help="write both run records here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the JSON here (printed either way)")
    args = parser.parse_args(argv)
    report = compare(args.task, args.seed, args.data_dir, args.records, args.tasks_dir, args.threads)
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())

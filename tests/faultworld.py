"""A tiny world for fault tests: tiny tasks written as real artifacts, hostile methods, and the patches that
let ``coldbench bench`` run on them without the Amazon data.

Workers are separate processes: they get each cell's spec and ``module:Class`` from the bench process, so
the methods below are importable by name (``tests.faultworld:Hang``) and the patches are needed only in the
process that plans the suite.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.api import Budget, ColdBatch, Method, TrainView
from methods.floors import ItemMean, Popularity
from tasks import artifact, audit
from tasks.cache import write_json_atomic
from tasks.checksums import sha256_file
from tasks.spec import TaskSpec
from tests import tiny_tasks

TASKS = {"tiny-R": "R", "tiny-L": "L"}
METHODS = {
    "hang": "tests.faultworld:Hang",
    "exits": "tests.faultworld:Exits",
    "interrupts": "tests.faultworld:Interrupts",
    "os-exit": "tests.faultworld:OsExit",
    "self-kill": "tests.faultworld:SelfKill",
    "slow-item-mean": "tests.faultworld:SlowItemMean",
    "slow-popularity": "tests.faultworld:SlowPopularity",
    "tunable": "tests.faultworld:Tunable",
}


def tiny_tables(family: str) -> tuple[TaskSpec, dict]:
    """The spec and tables ``tiny_tasks.tiny_task`` encodes (captured, not encoded)."""
    seen: dict = {}
    original = tiny_tasks._encode
    tiny_tasks._encode = lambda spec, tables: seen.update(spec=spec, tables=tables)  # type: ignore[assignment]
    try:
        tiny_tasks.tiny_task(family)
    finally:
        tiny_tasks._encode = original
    return seen["spec"], seen["tables"]


def write_artifact(root: Path, task_id: str, wall_seconds: float = 120.0) -> TaskSpec:
    """Write the tiny task of ``TASKS[task_id]`` as an artifact ``root/<task_id>`` (as the builder would)."""
    spec, tables = tiny_tables(TASKS[task_id])
    spec = dataclasses.replace(
        spec, id=task_id, budget=dataclasses.replace(spec.budget, wall_seconds=wall_seconds)
    )
    folder = root / task_id
    folder.mkdir(parents=True, exist_ok=True)
    files, content = {}, {}
    for name, frame in sorted(tables.items()):
        path = folder / f"{name}.parquet"
        artifact._write_table(frame, path)
        files[path.name] = sha256_file(path)
        content[name] = artifact.content_digest(frame)
    params = audit.AuditParams()
    report = audit.audit(tables, spec.source, spec.target, params, True, spec.family == "R")
    manifest = {
        "task_id": task_id,
        "spec": spec.to_dict(),
        "builder_version": artifact.BUILDER_VERSION,
        "counts": artifact.counts_of(tables, spec),
        "audit": report,
        "files": files,
        "content": content,
        "split_hash": artifact.split_hash(task_id, content),
    }
    write_json_atomic(manifest, folder / artifact.MANIFEST)
    return spec


def patches(root: Path, walls: dict[str, float] | None = None) -> list[tuple[object, str, object]]:
    """Write the tiny artifacts under ``root``; the (object, attribute, value) patches that make bench plan
    on them and find the methods above (apply with ``setattr`` or pytest's ``monkeypatch.setattr``)."""
    import benchmark.bench
    import benchmark.registry
    import benchmark.runner
    import benchmark.suite
    import methods
    import tasks.spec

    walls = walls or {}
    registry = {**methods.REGISTRY, **METHODS}
    specs = {t: write_artifact(root, t, walls.get(t, 120.0)) for t in TASKS}

    def get_spec(task_id: str, *args: object) -> TaskSpec:
        if task_id not in specs:
            raise tasks.spec.DataError(f"unknown task {task_id!r}; known tasks: {', '.join(specs)}")
        return specs[task_id]

    def all_specs(*args: object) -> dict[str, TaskSpec]:
        return dict(specs)

    def build(spec: TaskSpec, data_dir: Path, out: Path, force: bool = False) -> dict:
        return json.loads((out / spec.id / artifact.MANIFEST).read_text())

    return [
        (tasks.spec, "get_spec", get_spec),
        (benchmark.bench, "get_spec", get_spec),
        (benchmark.runner, "get_spec", get_spec),
        (tasks.spec, "all_specs", all_specs),
        (benchmark.suite, "all_specs", all_specs),
        (artifact, "build", build),
        (methods, "REGISTRY", registry),
        (benchmark.registry, "REGISTRY", registry),
    ]


def install(root: Path, walls: dict[str, float] | None = None) -> None:
    """Apply ``patches`` for good (in a subprocess of a test)."""
    for target, name, value in patches(root, walls):
        setattr(target, name, value)


def write_suite(
    path: Path, methods: list[str], seeds: tuple[int, ...] = (0,), tasks: tuple[str, ...] = ()
) -> Path:
    names = ", ".join(f'"{t}"' for t in (tasks or tuple(TASKS)))
    listed = ", ".join(f'"{m}"' for m in methods)
    path.write_text(f'name = "tiny"\nseeds = {list(seeds)}\ntasks = [{names}]\nmethods = [{listed}]\n')
    return path


def _zeros(batch: ColdBatch) -> np.ndarray:
    if batch.wants_ratings:
        return np.full(len(batch.query_item), 3.0)
    return np.zeros((len(batch), len(batch.candidates)))


class _Hostile(Method):
    families = ("R",)
    summary = "a hostile test method"

    def predict(self, batch: ColdBatch) -> np.ndarray:
        return _zeros(batch)


class Hang(_Hostile):
    def fit(self, view: TrainView, budget: Budget) -> None:
        time.sleep(3600)


class Exits(_Hostile):
    def fit(self, view: TrainView, budget: Budget) -> None:
        sys.exit(3)


class Interrupts(_Hostile):
    def fit(self, view: TrainView, budget: Budget) -> None:
        raise KeyboardInterrupt


class OsExit(_Hostile):
    def fit(self, view: TrainView, budget: Budget) -> None:
        os._exit(7)


class SelfKill(_Hostile):
    def fit(self, view: TrainView, budget: Budget) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


SLOW_SECONDS = float(os.environ.get("FAULTWORLD_SLOW", "0.5"))


class SlowItemMean(ItemMean):
    """item-mean after a pause: its metrics are item-mean's, and a kill lands while it runs."""

    def fit(self, view: TrainView, budget: Budget) -> None:
        time.sleep(SLOW_SECONDS)
        super().fit(view, budget)


class SlowPopularity(Popularity):
    def fit(self, view: TrainView, budget: Budget) -> None:
        time.sleep(SLOW_SECONDS)
        super().fit(view, budget)


class Tunable(_Hostile):
    families = ("R", "L")

    """A method with a typed configuration, for ``--set`` checks."""

    @classmethod
    def default_config(cls, family: str) -> dict:
        return {"lr": 0.01, "steps": 3, "backend": "torch"}

    def fit(self, view: TrainView, budget: Budget) -> None:
        pass


def _bench_main(root: Path) -> int:
    """``coldbench bench`` on the tiny world under ``root`` (its suite.toml), for tests that signal it."""
    install(root / "tasks")
    from benchmark.cli import main

    args = ["--results", str(root / "results"), "--tasks-dir", str(root / "tasks"), "--data-dir", str(root)]
    return main(["bench", "--suite", str(root / "suite.toml"), *args, "--no-leaderboard", "--jobs", "2"])


if __name__ == "__main__":
    sys.exit(_bench_main(Path(sys.argv[1])))

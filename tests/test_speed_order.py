"""Speed without changing results: bench runs the cells sharing a pretraining one after the other (so the
later ones find the cache), and the MF family's lean Adam is torch's SparseAdam and Adam bit for bit."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.api import Budget, ColdBatch, Method, TrainView
from benchmark.bench import CellJob, chunked, run_suite
from benchmark.records import iter_records, load_record
from benchmark.suite import Cell, Suite
from benchmark.tuning import group_key
from methods.mf import MF, LeanAdam, adam
from tasks import artifact, audit
from tasks.cache import write_json_atomic
from tasks.checksums import sha256_file
from tasks.spec import TaskSpec
from tests import tiny_tasks

GROUP = {"tiny-L-k1": 1, "tiny-L-k3": 3, "tiny-L-k5": 5}  # one task group: the same data, three Ks


class TwoStage(Method):
    """A cheap two-stage method: ``pretrain`` reads the target history once (K-independent)."""

    families = ("L",)
    summary = "a two-stage test method"

    def __init__(self, config: dict, seed: int, device: str = "cpu") -> None:
        super().__init__(config, seed, device)
        self.popularity: torch.Tensor | None = None

    def pretrain(self, view: TrainView) -> None:
        counts = np.bincount(view.history(view.target_domain).item, minlength=len(view.item_domain))
        self.popularity = torch.as_tensor(counts + self.rng.random(len(counts)), dtype=torch.float32)

    def pretrained_state(self) -> dict:
        return {"popularity": self.popularity}

    def load_pretrained(self, state: dict) -> None:
        self.popularity = state["popularity"]

    def fit(self, view: TrainView, budget: Budget) -> None:
        if self.popularity is None:
            self.pretrain(view)

    def predict(self, batch: ColdBatch) -> np.ndarray:
        assert self.popularity is not None
        scores = self.popularity[torch.as_tensor(batch.candidates)].numpy()
        return np.tile(scores, (len(batch), 1))


def _write_group(root: Path) -> dict[str, TaskSpec]:
    """The tiny family-L task at each K of ``GROUP``, written as artifacts under ``root`` (as the builder)."""
    specs = {}
    for task_id, k in GROUP.items():
        seen: dict = {}
        original = tiny_tasks._encode
        tiny_tasks._encode = lambda spec, tables, seen=seen: seen.update(spec=spec, tables=tables)  # type: ignore[assignment]
        try:
            tiny_tasks.tiny_l(k)
        finally:
            tiny_tasks._encode = original
        spec, tables = dataclasses.replace(seen["spec"], id=task_id), seen["tables"]
        folder = root / task_id
        folder.mkdir(parents=True, exist_ok=True)
        files, content = {}, {}
        for name, frame in sorted(tables.items()):
            path = folder / f"{name}.parquet"
            artifact._write_table(frame, path)
            files[path.name] = sha256_file(path)
            content[name] = artifact.content_digest(frame)
        report = audit.audit(tables, spec.source, spec.target, audit.AuditParams(), True, False)
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
        specs[task_id] = spec
    return specs


@pytest.fixture
def tiny_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bench plans on the tiny group and finds ``two-stage``; workers get specs and classes from bench."""
    import benchmark.bench
    import benchmark.registry
    import benchmark.runner
    import benchmark.suite
    import methods
    import tasks.spec

    tasks_dir = tmp_path / "tasks"
    specs = _write_group(tasks_dir)
    registry = {**methods.REGISTRY, "two-stage": f"{__name__}:TwoStage"}

    def get_spec(task_id: str, *args: object) -> TaskSpec:
        if task_id not in specs:
            raise tasks.spec.DataError(f"unknown task {task_id!r}")
        return specs[task_id]

    def build(spec: TaskSpec, data_dir: Path, out: Path, force: bool = False) -> dict:
        return json.loads((out / spec.id / artifact.MANIFEST).read_text())

    for target, name, value in [
        (tasks.spec, "get_spec", get_spec),
        (benchmark.bench, "get_spec", get_spec),
        (benchmark.runner, "get_spec", get_spec),
        (tasks.spec, "all_specs", lambda *a: dict(specs)),
        (benchmark.suite, "all_specs", lambda *a: dict(specs)),
        (artifact, "build", build),
        (methods, "REGISTRY", registry),
        (benchmark.registry, "REGISTRY", registry),
    ]:
        monkeypatch.setattr(target, name, value)
    monkeypatch.delenv("COLDBENCH_PRETRAIN_CACHE", raising=False)
    monkeypatch.setenv("COLDBENCH_NO_PROGRESS", "1")
    assert len({group_key(s) for s in specs.values()}) == 1
    return tasks_dir


def test_a_group_pretrains_once_per_method_and_seed_with_two_jobs(tiny_group: Path, tmp_path: Path) -> None:
    """Two workers, two seeds, a two-stage method and a one-stage one over one group's three K tasks: each
    (method, seed, group) pretrains exactly once, the other K cells load it from the cache."""
    suite = Suite("group", (0, 1), tuple(GROUP), ("two-stage", "popularity"))
    results = tmp_path / "results"
    summary = run_suite(suite, tmp_path, results, tiny_group, jobs=2)
    assert summary.statuses["ok"] == 12, summary.failed
    sources: dict[int, list[str]] = {0: [], 1: []}
    for path in iter_records(results):
        record = load_record(path)
        if record.method.name == "two-stage":
            sources[record.seed].append(record.timing.pretrain)
        else:
            assert record.timing.pretrain is None
    assert {seed: sorted(s) for seed, s in sources.items()} == {
        s: ["cached", "cached", "ran"] for s in (0, 1)
    }


def _jobs(tasks: dict[str, str], methods: dict[str, bool], seeds: tuple[int, ...]) -> list[CellJob]:
    here = Path(".")
    cells = sorted(
        (Cell(t, m, s) for t in tasks for m in methods for s in seeds),
        key=lambda c: (c.seed, c.task, c.method),
    )
    return [CellJob(c, here, here, here, group=tasks[c.task], pretrains=methods[c.method]) for c in cells]


@pytest.mark.parametrize("workers", [2, 3, 8])
@pytest.mark.parametrize("n_groups", [1, 2, 5])
def test_chunks_keep_a_pretraining_in_one_chunk_in_seed_order(workers: int, n_groups: int) -> None:
    tasks = {f"g{g}-k{k}": f"g{g}" for g in range(n_groups) for k in (0, 1, 3)}
    methods = {"a-two-stage": True, "b-floor": False, "c-two-stage": True, "d-floor": False}
    jobs = _jobs(tasks, methods, (0, 1))
    chunks = chunked(jobs, workers)
    assert sorted(id(j) for c in chunks for j in c) == sorted(id(j) for j in jobs)  # every cell, once
    where: dict[tuple, set[int]] = {}
    for n, chunk in enumerate(chunks):
        for job in chunk:
            if job.pretrains:
                where.setdefault((job.cell.method, job.cell.seed, job.group), set()).add(n)
        tasks_in_order = [t for t, _ in itertools.groupby(j.cell.task for j in chunk)]
        assert len(tasks_in_order) == len(set(tasks_in_order))  # a task's cells are consecutive in a chunk
    assert all(len(found) == 1 for found in where.values())  # a shared pretraining never spans two chunks
    seeds = [job.cell.seed for chunk in chunks for job in chunk]
    assert seeds == sorted(seeds)  # seed first: an interrupted suite has whole seeds done
    assert len(chunks) >= min(2 * workers, 4)  # split so that every worker gets work


def _train(optimizer: str, sparse: bool, seed: int, steps: int = 200) -> dict[str, torch.Tensor]:
    """A small biased MF trained on random batches (with repeated rows) by torch's optimizers or LeanAdam."""
    model = MF(
        50, np.repeat([0, 1], [60, 40]), 8, sparse=sparse, generator=torch.Generator().manual_seed(seed)
    )
    tables = [model.user.weight, model.item.weight, model.user_bias.weight, model.item_bias.weight]
    sparse_params = tables if sparse else []
    dense = [p for p in model.parameters() if p.requires_grad and all(p is not t for t in sparse_params)]
    if optimizer == "lean":
        optimizers: list = adam([model], 0.01)  # the user and item tables paired with their biases
    else:
        optimizers = [torch.optim.Adam(dense, lr=0.01)]
        optimizers += [torch.optim.SparseAdam(sparse_params, lr=0.01)] if sparse else []
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        n = int(rng.integers(1, 150))
        users, items = (torch.as_tensor(rng.integers(0, size, n)) for size in (50, 100))
        rating = torch.as_tensor(rng.integers(1, 6, n), dtype=torch.float32)
        for opt in optimizers:
            opt.zero_grad()
        reg = model.user(users).pow(2).sum(-1) + model.item(items).pow(2).sum(-1)
        ((model(users, items) - rating).pow(2) + 0.001 * reg).mean().backward()
        for opt in optimizers:
            opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("sparse", [True, False])
def test_lean_adam_is_torch_adam_bit_for_bit(sparse: bool) -> None:
    (optimizer,) = adam([MF(5, np.zeros(4, dtype=int), 2, sparse=sparse)], 0.01)
    assert isinstance(optimizer, LeanAdam) and len(optimizer.groups) == 2 * sparse
    for seed in range(3):
        torch_state, lean_state = _train("torch", sparse, seed), _train("lean", sparse, seed)
        for name, value in torch_state.items():
            assert value.numpy().tobytes() == lean_state[name].numpy().tobytes(), name

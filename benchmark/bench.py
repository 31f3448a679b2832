"""``bench``: run the missing cells of a suite in supervised workers, resumable at any moment.

A cell is done when its record exists, validates, its side files verify (``benchmark.verify``), and it
matches the current split hash, method config hash, seed, code version (the package version; the git commit
is provenance only) and the method's code: distribution, version and source hash (the method's module and
the modules of its package it imports). A record that does not name its method's code (written before
records carried it) is run again: nothing shows it was made by the code on disk. Failed records count as
done unless ``retry_failed``; ``rerun`` runs every selected cell again.

Every cell runs in a worker process under a supervisor (``benchmark.executors``), with ``--jobs 1`` too: a
method that hangs is killed at its wall-clock ceiling (plus a grace) and gets a ``timeout`` record; one that
exits, raises SystemExit or KeyboardInterrupt, or kills its process gets a ``failed`` record; a worker that
dies before its method started leaves no record (``crashed``, re-run next time). Only that cell pays: the
rest of its chunk goes on in a fresh worker, other workers are untouched. Cells go to workers in chunks of
one task group (``chunked``): seed first, then the group (the K-shot tasks that share training data,
``tuning.group_key``), then task and method as ``suite.cells`` orders them, so a worker loads and encodes a
task once for all the methods of that chunk, and the cells of a two-stage method that share one pretraining
(same method, seed and group) run one after the other in one worker: the first pretrains, the later ones
find its cache entry (two workers on one key would both pretrain). The artifacts are built and hashed here
once; workers load them by hash.

Records are written atomically, so a run killed at any point leaves complete records or none. A lock file in
the results folder (``.coldbench.lock``, holding the pid, host and start time) makes a second bench on the
same folder stop at once; the start-up clean-up removes only temporary files whose writer is gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import itertools
import math
import os
import socket
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmark.executors import Event, Executor, Interrupted, ProcessExecutor, Report
from benchmark.records import Code, RecordError, RunRecord, record_path, write_record
from benchmark.registry import Provenance, RegistryError, load_method, provenance, registration, registrations
from benchmark.seeding import threads_per_worker
from benchmark.suite import Cell, Suite, cells
from benchmark.tuning import group_key
from benchmark.verify import verify_record
from tasks import artifact
from tasks.cache import default_cache_dir, require_writable
from tasks.spec import TaskSpec, get_spec

LOCK_NAME = ".coldbench.lock"
STALE_TMP_SECONDS = 24 * 3600  # a temporary file this old is abandoned even if its pid is alive (reused)


@dataclass(frozen=True)
class CellJob:
    cell: Cell
    data_dir: Path
    results: Path
    tasks_dir: Path
    split_hash: str | None = None  # known: the worker loads the artifact without rebuilding or re-hashing
    threads: int | None = None
    code: Code | None = None  # the bench's code info, so workers run no git per cell
    target: str | None = None  # ``module:Class`` as resolved here, so the worker loads the same class
    spec: TaskSpec | None = None  # resolved here (a task id not in tasks/specs, e.g. in tests)
    overrides: dict[str, Any] | None = None
    save_predictions: bool = False
    device: str = "cpu"
    command: str | None = None
    variant: str = ""  # the record identity's configuration part (``runner.cell_config``)
    group: str = ""  # the task group (``tuning.group_key``): tasks sharing training data; "" = the task
    pretrains: bool = False  # a two-stage method: its cells of one (seed, group) share one pretraining

    @property
    def record(self) -> Path:
        """Where this cell's record goes."""
        return record_path(self.results, self.cell.task, self.cell.method, self.cell.seed, self.variant)


@dataclass(frozen=True)
class CellDone:
    """One cell's outcome: its record's status, or ``crashed`` when no record was written."""

    status: str
    seconds: float
    error: str = ""  # the first line of the record's error, or the crash
    loads: int = 0  # artifacts the worker process had loaded so far (its task cache at work)


class _Hooks:
    """``runner.CellHooks`` in a worker: forwards the method's start and end to the supervisor."""

    def __init__(self, report: Report | None) -> None:
        self.report = report
        self.template: RunRecord | None = None

    def method_started(self, template: RunRecord, ceiling: float) -> None:
        self.template = template
        if self.report is not None:
            self.report("started", template, ceiling)

    def method_done(self) -> None:
        if self.report is not None:
            self.report("method_done")


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def describe(exc: BaseException) -> str:
    """One line for anything a method raised, SystemExit and KeyboardInterrupt included."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) raised inside the method"
    if isinstance(exc, KeyboardInterrupt):
        return "KeyboardInterrupt raised inside the method (workers ignore Ctrl-C: the method raised it)"
    return f"{type(exc).__name__}: {exc}"


def stopped_record(template: RunRecord, status: str, error: str, seconds: float) -> RunRecord:
    """The template a worker sent when its method started, completed for a method that had to be stopped."""
    from benchmark.records import Timing
    from benchmark.runner import now

    return template.model_copy(
        update={
            "status": status,
            "error": error,
            "finished_at": now(),
            "budget": template.budget.model_copy(update={"wall_seconds_used": round(seconds, 3)}),
            "timing": Timing(fit=round(seconds, 3), adapt=0.0, eval=0.0),
        }
    )


def run_job(job: CellJob, report: Report | None = None) -> CellDone:
    """Worker entry point: one cell. Whatever the method raises costs only this cell's record."""
    from benchmark import runner

    hooks = _Hooks(report)
    start = time.perf_counter()
    try:
        result = runner.run_cell(
            job.cell.task,
            job.cell.method,
            job.cell.seed,
            job.data_dir,
            job.results,
            overrides=job.overrides,
            save_predictions=job.save_predictions,
            device=job.device,
            tasks_dir=job.tasks_dir,
            threads=job.threads,
            command=job.command
            or f"coldbench bench (cell {job.cell.task} {job.cell.method} seed {job.cell.seed})",
            split_hash=job.split_hash,
            code=job.code,
            spec=job.spec,
            target=job.target,
            hooks=hooks,
            tuned=True,
        )
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the worker must live on
        seconds = time.perf_counter() - start
        if hooks.template is None:  # before the method started: nothing to record, re-run next time
            return CellDone("crashed", seconds, describe(exc), runner.LOADS[0])
        error = f"{describe(exc)}\n{traceback.format_exc(limit=6)}"
        write_record(stopped_record(hooks.template, "failed", error, seconds), job.record)
        return CellDone("failed", seconds, describe(exc), runner.LOADS[0])
    record = result.record
    return CellDone(record.status, time.perf_counter() - start, _first_line(record.error), runner.LOADS[0])


def settle(event: Event) -> CellDone:
    """A supervisor event -> the cell's outcome; a killed or dead method gets its record written here."""
    job: CellJob = event.job
    if event.kind == "done":
        return event.result
    if event.info is None:  # the method had not started: nothing to record, re-run next time
        return CellDone("crashed", event.seconds, f"worker {event.reason} before the method started")
    if event.kind == "killed" and event.phase == "method":
        status, error = "timeout", f"{event.reason}: the method ran {event.seconds:.1f}s and was stopped"
    else:
        where = "while the method ran" if event.phase == "method" else "after the method returned"
        status, error = "failed", f"worker process {event.reason} {where}"
    write_record(stopped_record(event.info, status, error, event.seconds), job.record)
    return CellDone(status, event.seconds, error)


def run_jobs(
    jobs_list: list[CellJob], jobs: int, threads: int | None, executor: Executor | None = None
) -> Iterator[tuple[CellJob, CellDone]]:
    """Each job's outcome, as it finishes, from ``jobs`` supervised workers."""
    supervisor = (executor or ProcessExecutor()).supervisor(run_job, jobs, threads)
    with contextlib.closing(supervisor.run(chunked(jobs_list, jobs))) as events:
        for event in events:
            yield event.job, settle(event)


def chunked(jobs_list: list[CellJob], workers: int) -> list[tuple[CellJob, ...]]:
    """Chunks of one (seed, task group), split further only while there are under 2 chunks a worker.

    Within a seed, a group's cells come together (its tasks in the order given, each task's cells
    consecutive), so the seed-first order holds and a worker loads each task once. A split never separates
    the cells of one two-stage method (``pretrains``) in a chunk: cells sharing a pretraining must not run in
    two workers at once, or both would pretrain instead of the later ones loading the first one's cache.
    """
    if workers <= 1:  # one worker runs every cell in order: its caches serve consecutive cells anyway
        return [(job,) for job in jobs_list]
    ordered = group_order(jobs_list)
    groups = [list(g) for _, g in itertools.groupby(ordered, lambda j: (j.cell.seed, j.group or j.cell.task))]
    if len(groups) >= 2 * workers:
        return [tuple(g) for g in groups]
    size = max(1, math.ceil(len(jobs_list) / (2 * workers)))
    chunks: list[tuple[CellJob, ...]] = []
    for group in groups:
        position = {id(job): i for i, job in enumerate(group)}
        units: dict[Any, list[CellJob]] = {}  # a two-stage method's cells of the group, or one cell
        for job in group:
            units.setdefault(job.cell.method if job.pretrains else id(job), []).append(job)
        chunk: list[CellJob] = []
        for unit in units.values():
            if chunk and len(chunk) + len(unit) > size:
                chunks.append(tuple(sorted(chunk, key=lambda j: position[id(j)])))
                chunk = []
            chunk += unit
        if chunk:
            chunks.append(tuple(sorted(chunk, key=lambda j: position[id(j)])))
    return chunks


def group_order(jobs_list: list[CellJob]) -> list[CellJob]:
    """The jobs by seed, then task group, then task, in order of first appearance (stable otherwise)."""
    first: dict[tuple[int, str], int] = {}
    for i, job in enumerate(jobs_list):
        first.setdefault((job.cell.seed, job.group or job.cell.task), i)
        first.setdefault((job.cell.seed, "\0" + job.cell.task), i)

    def key(job: CellJob) -> tuple[int, int, int]:
        seed = job.cell.seed
        return seed, first[(seed, job.group or job.cell.task)], first[(seed, "\0" + job.cell.task)]

    return sorted(jobs_list, key=key)


class DoneCheck:
    """``is_done`` for many cells: the code version, each method's config hash and code computed once.

    A current record whose configuration tuning kept gets its ``method.trials`` re-stamped here
    (``restamp_trials``) instead of being run again."""

    def __init__(
        self,
        results: Path,
        code: Code,
        retry_failed: bool,
        overrides: dict[str, Any] | None = None,
        rerun: bool = False,
    ) -> None:
        self.results, self.code, self.retry_failed = results, code, retry_failed
        self.overrides, self.rerun = overrides or {}, rerun
        self._expected: dict[tuple[str, str], tuple[str, Provenance, int | None, str]] = {}
        self._code: dict[str, Provenance] = {}
        self.rejected: list[str] = []  # records present but not verified: why (they are re-run)

    def expected(self, method: str, task: str) -> tuple[str, Provenance, int | None, str]:
        """A current record's config hash (``runner.cell_config``: tuned where it exists), code, trials and
        variant."""
        from benchmark.runner import cell_config, config_hash

        key = (method, task)
        if key not in self._expected:
            cls = load_method(method)
            chosen = cell_config(method, cls, get_spec(task), self.overrides)
            if method not in self._code:  # once per method: the code hash parses its modules (~16 ms)
                self._code[method] = provenance(method, registration(method).target, cls)
            code = self._code[method]
            self._expected[key] = (config_hash(chosen.config), code, chosen.trials, chosen.variant)
        return self._expected[key]

    def __call__(self, cell: Cell, split_hash: str) -> bool:
        config, code, trials, variant = self.expected(cell.method, cell.task)
        path = record_path(self.results, cell.task, cell.method, cell.seed, variant)
        if self.rerun or not path.is_file():
            return False
        try:
            record = verify_record(path, self.results)
        except RecordError as exc:
            self.rejected.append(str(exc))
            return False
        current = (
            record.task.split_hash == split_hash
            and record.method.config_hash == config
            and record.seed == cell.seed
            and record.code.version == self.code.version
            and same_method_code(record, code)
            and not (self.retry_failed and record.status == "failed")
        )
        if current and trials is not None and record.method.trials != trials:
            restamp_trials(record, path, trials)
        return current


def restamp_trials(record: RunRecord, path: Path, trials: int) -> None:
    """Tuning kept this record's configuration (same config hash, code and split): the run would repeat
    bit for bit, so only ``method.trials``, the number of trials that chose it, is rewritten (atomically)."""
    method = record.method.model_copy(update={"trials": trials})
    write_record(record.model_copy(update={"method": method}), path)


def same_method_code(record: RunRecord, code: Provenance) -> bool:
    """The record was made by this method code; a record that does not name its code is not current."""
    ref = record.method
    if ref.source_sha256 is None:
        return False
    return (ref.dist, ref.dist_version, ref.source_sha256) == (
        code.dist,
        code.dist_version,
        code.source_sha256,
    )


def is_done(cell: Cell, results: Path, split_hash: str, retry_failed: bool) -> bool:
    from benchmark.runner import code_info

    return DoneCheck(results, code_info(), retry_failed)(cell, split_hash)


def _writer_gone(tmp: Path) -> bool:
    """Whether the process that named ``tmp`` (``.<name>.<pid>.tmp``) is gone, or the file is abandoned."""
    try:
        if time.time() - tmp.stat().st_mtime > STALE_TMP_SECONDS:
            return True
    except OSError:
        return False
    pid = tmp.name.rsplit(".", 2)[-2] if tmp.name.count(".") >= 3 else ""
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def clean_partial_files(results: Path) -> int:
    """Remove temporary files that a killed writer left behind (never complete records, never the file of
    a writer still alive: a ``coldbench run`` may be writing into the same folder)."""
    removed = 0
    for tmp in results.glob("**/.*.tmp"):
        if _writer_gone(tmp):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


class ResultsBusy(RuntimeError):
    """Another bench holds the results folder's lock; the message names it."""


@contextlib.contextmanager
def results_lock(results: Path) -> Iterator[None]:
    """Hold ``<results>/.coldbench.lock`` (an advisory lock the kernel drops when the holder dies)."""
    path = results / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise ResultsBusy(
            f"results folder {results} is in use by {holder} (lock {path});"
            " wait for it to finish or use another --results"
        ) from None
    since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(
        fd, f"coldbench bench pid {os.getpid()} on host {socket.gethostname()} since {since}\n".encode(), 0
    )
    try:
        yield
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass
class BenchSummary:
    total: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    crashed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per cell that did not end ok, this run
    rejected: list[str] = field(default_factory=list)  # records that did not verify (re-run)
    seconds: float = 0.0
    method_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    cell_seconds: dict[Cell, float] = field(default_factory=dict)
    jobs: int = 1
    threads: int = 1
    loads: int = 0  # the most artifacts one worker loaded


def split_methods(suite: Suite, methods: list[str] | None) -> tuple[list[str], dict[str, str]]:
    """The selected methods that load, and the broken ones with why; an unknown name is a RegistryError."""
    known = registrations()
    chosen = list(methods or suite.methods)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise RegistryError(f"unknown method(s) {unknown}; registered: {', '.join(known)}")
    loadable, broken = [], {}
    for name in chosen:
        try:
            load_method(name)
            loadable.append(name)
        except RegistryError as exc:
            broken[name] = str(exc)
    return loadable, broken


def check_overrides(methods: list[str], tasks: tuple[str, ...], overrides: dict[str, Any]) -> None:
    """Every selected method must take every ``--set`` key, with a value of its type, for every family."""
    if not overrides:
        return
    from benchmark.runner import ConfigError, resolve_config

    families = sorted({get_spec(t).family for t in tasks})
    for name in methods:
        cls = load_method(name)
        for family in families:
            if family in cls.families:
                try:
                    resolve_config(cls, family, overrides)
                except ConfigError as exc:
                    raise ConfigError(f"--set for method {name!r} (family {family}): {exc}") from None


def run_suite(
    suite: Suite,
    data_dir: Path,
    results: Path,
    tasks_dir: Path,
    methods: list[str] | None = None,
    jobs: int = 1,
    retry_failed: bool = False,
    on_record: Callable[[Path], object] | None = None,
    overrides: dict[str, Any] | None = None,
    rerun: bool = False,
    executor: Executor | None = None,
) -> BenchSummary:
    """Run the suite's missing cells; ``Interrupted`` (SIGINT/SIGTERM) stops the workers and propagates."""
    for folder, what in (
        (results, "results folder"),
        (tasks_dir, "task folder"),
        (default_cache_dir(), "cache"),
    ):
        require_writable(folder, what)
    with results_lock(results):
        clean_partial_files(results)
        return _run_locked(
            suite,
            data_dir,
            results,
            tasks_dir,
            methods,
            jobs,
            retry_failed,
            on_record,
            overrides or {},
            rerun,
            executor or ProcessExecutor(),
        )


def _run_locked(
    suite: Suite,
    data_dir: Path,
    results: Path,
    tasks_dir: Path,
    methods: list[str] | None,
    jobs: int,
    retry_failed: bool,
    on_record: Callable[[Path], object] | None,
    overrides: dict[str, Any],
    rerun: bool,
    executor: Executor,
) -> BenchSummary:
    from benchmark.runner import code_info

    start = time.perf_counter()
    loadable, broken = split_methods(suite, methods)
    check_overrides(loadable, suite.tasks, overrides)
    grid = cells(suite, loadable) if loadable else []
    specs = {t: get_spec(t) for t in sorted({c.task for c in grid})}
    hashes = {t: artifact.build(spec, data_dir, tasks_dir)["split_hash"] for t, spec in specs.items()}
    code = code_info()
    done = DoneCheck(results, code, retry_failed, overrides, rerun)
    todo = [c for c in grid if not done(c, hashes[c.task])]
    jobs = max(1, min(jobs, executor.cpus(), len(todo) or 1))
    threads = threads_per_worker(jobs)
    summary = BenchSummary(
        total=len(grid) + len(broken), skipped=len(grid) - len(todo), jobs=jobs, threads=threads
    )
    summary.rejected = done.rejected
    for name, why in broken.items():
        summary.statuses["failed"] += 1
        summary.failed.append(f"failed: {name} (every cell of the method): {why}")
    targets = {m: registration(m).target for m in loadable}
    two_stage = {m: callable(getattr(load_method(m), "pretrain", None)) for m in loadable}
    groups = {t: group_key(spec) for t, spec in specs.items()}
    jobs_list = [
        CellJob(
            c,
            data_dir,
            results,
            tasks_dir,
            hashes[c.task],
            threads,
            code,
            targets[c.method],
            specs[c.task],
            overrides=overrides or None,
            variant=done.expected(c.method, c.task)[3],
            group=groups[c.task],
            pretrains=two_stage[c.method],
        )
        for c in todo
    ]
    bar = tqdm(
        total=len(grid),
        initial=summary.skipped,
        desc=f"bench {suite.name}",
        unit="cell",
        disable=os.environ.get("COLDBENCH_NO_PROGRESS") == "1",
    )
    finished = 0
    try:
        with contextlib.closing(run_jobs(jobs_list, jobs, threads, executor)) as outcomes:
            for job, cell_done in outcomes:
                _count(summary, job, cell_done, on_record)
                finished += 1
                bar.set_postfix(failed=len(summary.failed), refresh=False)
                bar.update(1)
    except Interrupted as exc:
        exc.detail = (
            f"workers stopped; {finished} of {len(todo)} cells finished this run, every record written is"
            " complete; run the same command again to continue"
        )
        raise
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _count(
    summary: BenchSummary,
    job: CellJob,
    done: CellDone,
    on_record: Callable[[Path], object] | None,
) -> None:
    cell = job.cell
    summary.statuses[done.status] += 1
    summary.loads = max(summary.loads, done.loads)
    line = f"{cell.task} {cell.method} seed {cell.seed}: {done.error or done.status}"
    if done.status == "crashed":
        summary.crashed.append(line)
        summary.failed.append(f"crashed (no record, re-run next time): {line}")
        return
    if done.status != "ok":
        summary.failed.append(f"{done.status}: {line}")
    summary.method_seconds[cell.method] += done.seconds
    summary.cell_seconds[cell] = done.seconds
    if on_record is not None:
        on_record(job.record)

"""Supervised workers: jobs run in long-lived child processes, each watched by this process while it runs.

Nothing a job does can end or hang the caller. A worker reports when the method starts (with its wall-clock
ceiling, and what to record if it must be stopped) and when the method's code is done; the supervisor kills a
worker still inside the method at the ceiling plus a grace (``kill_grace``), and notices a worker that dies
(``os._exit``, SIGKILL, out of memory). Either costs that job only: the supervisor reports it as an event,
starts a fresh worker, and the rest of that worker's chunk goes on there. Other workers are never touched.

Workers are spawned (a clean torch state), live as long as there is work for them (so a task loaded once
serves a whole chunk, see ``runner.load_task``), ignore Ctrl-C (the supervisor stops them), and die with the
supervisor (``PR_SET_PDEATHSIG`` on Linux), so a killed bench leaves no orphans. OpenMP/BLAS thread variables
are set before a worker starts: thread pools are sized when numpy and torch load, before any code of ours
runs there, and an unset pool takes every core.

An ``Executor`` says where jobs run: ``ProcessExecutor`` (this supervisor, the default) or
``benchmark.ray_executor.RayExecutor`` (Ray actors on a cluster), which yields the same ``Event``s.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any, Literal, Protocol

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
PR_SET_PDEATHSIG = 1

Report = Callable[..., None]
JobFn = Callable[[Any, Report], Any]


class Interrupted(BaseException):
    """SIGINT or SIGTERM reached the supervising process; workers are stopped before it propagates."""

    def __init__(self, signum: int, detail: str = "") -> None:
        super().__init__(signum, detail)
        self.signum, self.detail = signum, detail

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"stopped by {name}" + (f": {self.detail}" if self.detail else "")


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ``Interrupted`` for the duration (main thread only), so that every
    ``finally`` runs: workers are stopped and locks released instead of the process vanishing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    saved = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def kill_grace(ceiling: float) -> float:
    """Seconds past the ceiling before a worker is killed: the method's own timeout comes first, and a
    method killed here would have been recorded as timed out anyway."""
    return 1.0 + 0.1 * ceiling


@dataclass(frozen=True)
class Event:
    """What became of one job: ``done`` (the job's result), ``killed`` at a limit, or ``died``."""

    job: Any
    kind: Literal["done", "killed", "died"]
    result: Any = None
    info: Any = None  # what the job reported when its method started; None: it had not started
    phase: str = ""  # "load" (before the method), "method", or "after" (the method's code is done)
    seconds: float = 0.0  # since the method started
    reason: str = ""


@contextlib.contextmanager
def _child_environment(threads: int | None) -> Iterator[None]:
    """Thread variables for the child, and SIGINT ignored while it starts: an ignored signal stays ignored
    across exec, so a Ctrl-C never interrupts a worker mid-import (Python then installs no handler)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARS}
    if threads is not None:
        os.environ.update(dict.fromkeys(THREAD_VARS, str(threads)))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request above
        os._exit(1)


def _worker_main(conn: connection.Connection, fn: JobFn, parent: int) -> None:
    """A worker: run each job it is sent with a ``report`` callback, until sent None or orphaned."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def report(*message: object) -> None:
        conn.send(message)

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(("done", fn(job, report)))


class _Worker:
    def __init__(self, fn: JobFn, threads: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child, fn, os.getpid()), name="coldbench-worker"
        )
        with _child_environment(threads):
            self.process.start()
        child.close()

    def close(self, wait: float) -> None:
        """Ask the worker to exit, wait up to ``wait`` seconds, then kill it."""
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class _Slot:
    """One worker place: its process, the rest of its chunk, and the job it runs now."""

    worker: _Worker | None = None
    rest: deque = field(default_factory=deque)
    job: Any = None
    phase: str = ""
    info: Any = None
    started: float = 0.0  # when the method started (monotonic)
    deadline: float = math.inf
    limit: str = ""


def track_phase(slot: Any, message: tuple, now: float, after_seconds: float) -> None:
    """A worker's ``started``/``method_done`` report -> the slot's phase, deadline and limit text; shared by
    the process and Ray executors so both stop a cell at the same ceiling plus grace."""
    if message[0] == "started":
        ceiling = float(message[2])
        grace = kill_grace(ceiling)
        slot.phase, slot.info, slot.started = "method", message[1], now
        slot.deadline = now + ceiling + grace
        slot.limit = f"the {ceiling:g}s wall-clock ceiling (+{grace:g}s)"
    elif message[0] == "method_done":
        slot.phase, slot.deadline = "after", now + after_seconds
        slot.limit = f"the {after_seconds:g}s limit for writing the record"


class Supervisor:
    """Run chunks of jobs on ``jobs`` supervised workers, yielding one ``Event`` per job as it ends."""

    load_seconds = 1800.0  # job sent -> method started (worker start-up, task load)
    after_seconds = 600.0  # method's code done -> job's result (writing the record)

    def __init__(self, fn: JobFn, jobs: int = 1, threads: int | None = None) -> None:
        self.fn, self.jobs, self.threads = fn, max(1, jobs), threads
        self._retired: list[_Worker] = []

    def run(self, chunks: Iterable[Iterable[Any]]) -> Iterator[Event]:
        """Events in completion order. Closing the iterator early (or an exception) kills every worker."""
        queue = deque(deque(c) for c in chunks)
        slots = [_Slot() for _ in range(self.jobs)]
        finished = False
        try:
            while True:
                for slot in slots:
                    if slot.job is None:
                        self._feed(slot, queue)
                busy = [s for s in slots if s.job is not None]
                if not busy:
                    finished = True
                    return
                self._wait(busy)
                for slot in busy:
                    yield from self._collect(slot)
                for slot in busy:
                    if slot.job is not None and time.monotonic() >= slot.deadline:
                        yield self._kill(slot)
        finally:
            workers = self._retired + [s.worker for s in slots if s.worker is not None]
            for worker in workers:
                worker.close(wait=5.0 if finished else 0.0)
            self._retired = []

    def _feed(self, slot: _Slot, queue: deque) -> None:
        if not slot.rest and queue:
            slot.rest = queue.popleft()
        if not slot.rest:
            if slot.worker is not None:  # no more work for it: let it exit now, free its memory
                with contextlib.suppress(OSError):
                    slot.worker.conn.send(None)
                self._retired.append(slot.worker)
                slot.worker = None
            return
        job = slot.rest.popleft()
        for _ in range(2):  # an idle worker may have died since its last job: start another once
            if slot.worker is None:
                slot.worker = _Worker(self.fn, self.threads)
            try:
                slot.worker.conn.send(job)
                break
            except OSError:
                slot.worker.close(wait=0.0)
                slot.worker = None
        else:
            raise OSError("cannot start a worker process")
        slot.job, slot.phase, slot.info = job, "load", None
        slot.deadline, slot.limit = (
            time.monotonic() + self.load_seconds,
            f"the {self.load_seconds:g}s start-up limit",
        )

    @staticmethod
    def _wait(busy: list[_Slot]) -> None:
        timeout = max(0.0, min(s.deadline for s in busy) - time.monotonic())
        handles: list[Any] = [s.worker.conn for s in busy if s.worker is not None]
        handles += [s.worker.process.sentinel for s in busy if s.worker is not None]
        connection.wait(handles, timeout=timeout)

    def _collect(self, slot: _Slot) -> list[Event]:
        """Read the slot's messages; a finished job or a dead worker becomes an event."""
        assert slot.worker is not None
        events: list[Event] = []
        broken = False
        try:
            while slot.job is not None and slot.worker.conn.poll():
                events += self._message(slot, slot.worker.conn.recv())
        except (EOFError, OSError):
            broken = True
        if slot.job is not None and (broken or not slot.worker.process.is_alive()):
            slot.worker.process.join(5)
            events.append(self._end(slot, "died", _exit_text(slot.worker.process.exitcode)))
            slot.worker.close(wait=0.0)
            slot.worker = None
        return events

    def _message(self, slot: _Slot, message: tuple) -> list[Event]:
        track_phase(slot, message, time.monotonic(), self.after_seconds)
        if message[0] == "done":
            event = Event(slot.job, "done", result=message[1], info=slot.info, phase=slot.phase)
            slot.job = None
            return [event]
        return []

    def _kill(self, slot: _Slot) -> Event:
        assert slot.worker is not None
        slot.worker.close(wait=0.0)
        slot.worker = None
        return self._end(slot, "killed", f"killed at {slot.limit}")

    def _end(self, slot: _Slot, kind: Literal["killed", "died"], reason: str) -> Event:
        seconds = time.monotonic() - slot.started if slot.phase != "load" else 0.0
        event = Event(slot.job, kind, info=slot.info, phase=slot.phase, seconds=seconds, reason=reason)
        slot.job, slot.info, slot.deadline = None, None, math.inf
        return event


class Runs(Protocol):
    """What an executor's supervisor does: run chunks of jobs, yielding one ``Event`` per job as it ends."""

    def run(self, chunks: Iterable[Iterable[Any]]) -> Iterator[Event]: ...


class Executor(Protocol):
    """Where bench's jobs run. ``cpus`` bounds ``--jobs`` (this machine's CPUs, or a cluster's); the
    supervisor's events are the same whatever the executor, so bench settles them into the same records."""

    name: str

    def cpus(self) -> int: ...

    def supervisor(self, fn: JobFn, jobs: int, threads: int | None) -> Runs: ...


class ProcessExecutor:
    """The default executor: ``Supervisor``'s worker processes on this machine."""

    name = "process"

    def cpus(self) -> int:
        from benchmark.seeding import available_cpus  # imports torch: only when a bench plans its jobs

        return available_cpus()

    def supervisor(self, fn: JobFn, jobs: int, threads: int | None) -> Supervisor:
        return Supervisor(fn, jobs, threads)

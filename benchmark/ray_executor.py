"""``--executor ray``: bench's jobs on a Ray cluster, supervised the way ``executors.Supervisor`` supervises
its worker processes, for a suite that outgrows one machine.

Each worker place is a Ray actor: a long-lived worker process, so a task loaded once serves its whole chunk
(``runner.load_task``), as with the process executor. An actor reserves ``threads`` CPUs and gets the
OpenMP/BLAS thread variables before it starts, so Ray never puts more threads on a node than it has cores.
The job function is bench's own and the driver yields the process executor's ``Event``s, so bench settles
them into the same records. What a cluster changes, and what is done about it:

- Reports (the method started, with its record template and ceiling; the method's code is done) travel
  through a small mailbox actor that the driver reads every ``poll_seconds``; a worker's report is delivered
  before its job's result, and the ceiling's clock starts when the driver reads it (about
  ``poll_seconds`` late at most).
- Ray has no time limit for an actor call and ``ray.cancel`` cannot force-stop one, so at the ceiling plus
  ``kill_grace`` the driver ``ray.kill``s the actor: the cell gets the same ``timeout`` record as under the
  process executor, and its chunk goes on in a fresh actor. The method's own deadline still comes first.
- A worker that dies (``os._exit``, a signal, out of memory, a lost node: Ray's ``RayActorError``) has its
  cell run once more on a fresh actor; a second death is a ``died`` event, which bench records as it does
  the process executor's: a ``failed`` record when the method had started, else none (``crashed``, re-run
  next time).

Ray is an optional extra (``coldbench[ray]``) and is imported only when this executor is made. Without an
address a local Ray instance is started for the run (``num_cpus`` = jobs x threads) and stopped after it;
with one (``auto``, ``host:port``, ``ray://...``) the driver connects to that cluster, whose nodes must
see the data, task and results folders at the same paths and have ColdBench and the same Ray installed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmark.executors import THREAD_VARS, Event, JobFn, Supervisor, track_phase

EXTRA = "coldbench[ray]"
# forwarded to every worker: a remote node does not inherit the driver's environment
FORWARDED = ("HF_DATASETS_OFFLINE", "WANDB_MODE")
FORWARDED_PREFIX = "COLDBENCH_"


class RayMissing(ImportError):
    """Ray is not importable here; the message names the extra that installs it."""


def import_ray() -> Any:
    """The ``ray`` module, or ``RayMissing`` naming the extra (Ray is never imported at module load)."""
    try:
        import ray
    except ImportError as exc:
        raise RayMissing(
            f"--executor ray needs Ray, which is not installed here: pip install '{EXTRA}'"
            f" (or run the tests with tox -e ray); import failed: {exc}"
        ) from exc
    return ray


@contextlib.contextmanager
def signals_through_ray() -> Iterator[None]:
    """Ray's calls check for signals in C++ and wrap what a handler raised in a ``SystemError``; unwrap
    bench's ``Interrupted`` (and ``KeyboardInterrupt``), so Ctrl-C and SIGTERM end a bench as without Ray."""
    try:
        yield
    except SystemError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, BaseException) and not isinstance(cause, Exception):
            raise cause from None
        raise


def worker_env(threads: int | None) -> dict[str, str]:
    """The environment variables every worker gets: ColdBench's own, offline switches, thread counts."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX) or k in FORWARDED}
    if threads is not None:
        env.update(dict.fromkeys(THREAD_VARS, str(threads)))
    return env


class _Mailbox:
    """A Ray actor holding the workers' reports until the driver takes them all in one call."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, tuple]] = []

    def post(self, key: int, message: tuple) -> None:
        self.messages.append((key, message))

    def take(self) -> list[tuple[int, tuple]]:
        taken, self.messages = self.messages, []
        return taken


class _Worker:
    """A Ray actor: one worker place, running the jobs it is sent one at a time with a ``report`` callback."""

    def __init__(self, fn: JobFn, mailbox: Any) -> None:
        # the driver stops workers; a Ctrl-C meant for it must not raise KeyboardInterrupt inside a method
        with contextlib.suppress(ValueError):  # ValueError: not the main thread, where it cannot be set
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.fn, self.mailbox = fn, mailbox

    def run(self, key: int, job: Any) -> Any:
        import ray

        def report(*message: object) -> None:
            ray.get(self.mailbox.post.remote(key, message))  # delivered before this job's result

        return self.fn(job, report)


@dataclass
class _Slot:
    """One worker place: its actor, the rest of its chunk (job, attempt), and the call it runs now."""

    actor: Any = None
    rest: deque = field(default_factory=deque)
    job: Any = None
    attempt: int = 0  # deaths of this job so far
    key: int = -1  # this call's id in the mailbox: a killed call's late report is ignored
    ref: Any = None
    phase: str = ""
    info: Any = None
    started: float = 0.0
    deadline: float = math.inf
    limit: str = ""


class RaySupervisor:
    """Run chunks of jobs on ``jobs`` Ray actors, yielding one ``Event`` per job as it ends (as
    ``executors.Supervisor.run``)."""

    load_seconds = Supervisor.load_seconds
    after_seconds = Supervisor.after_seconds
    poll_seconds = 0.25  # how often the driver reads the mailbox and checks the ceilings
    retries = 1  # a job whose worker dies is run again this many times, then reported as died

    def __init__(self, executor: RayExecutor, fn: JobFn, jobs: int, threads: int | None) -> None:
        self.executor, self.fn, self.jobs, self.threads = executor, fn, max(1, jobs), threads
        self._keys = itertools.count()

    def run(self, chunks: Iterable[Iterable[Any]]) -> Iterator[Event]:
        """Events in completion order. Closing the iterator early (or an exception) kills every actor, and
        stops a Ray instance this executor started."""
        queue = deque(c for c in (deque((job, 0) for job in chunk) for chunk in chunks) if c)
        if not queue:
            return
        cpus = self.jobs * (self.threads or 1)
        ray = self.executor.connect(cpus)
        slots = [_Slot() for _ in range(self.jobs)]
        mailbox = None
        try:
            with signals_through_ray():
                mailbox = ray.remote(_Mailbox).options(num_cpus=0).remote()
                worker = ray.remote(_Worker).options(
                    num_cpus=self.threads or 1,
                    max_restarts=0,
                    max_task_retries=0,
                    runtime_env={"env_vars": worker_env(self.threads)},
                )
                while True:
                    for slot in slots:
                        if slot.job is None:
                            self._feed(ray, worker, mailbox, slot, queue)
                    busy = [s for s in slots if s.job is not None]
                    if not busy:
                        return
                    ready = self._wait(ray, busy)
                    self._read_mailbox(ray, mailbox, busy)  # after the wait: a ready job's reports are in
                    for slot in busy:
                        if slot.ref in ready:
                            yield from self._collect(ray, slot)
                    for slot in busy:
                        if slot.job is not None and time.monotonic() >= slot.deadline:
                            yield self._kill(ray, slot)
        finally:
            for actor in [s.actor for s in slots if s.actor is not None] + [mailbox]:
                if actor is not None:
                    with contextlib.suppress(Exception):
                        ray.kill(actor, no_restart=True)
            self.executor.close()

    def _feed(self, ray: Any, worker: Any, mailbox: Any, slot: _Slot, queue: deque) -> None:
        if not slot.rest and queue:
            slot.rest = queue.popleft()
        if not slot.rest:
            if slot.actor is not None:  # no more work for it: end it now, free its memory
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor, no_restart=True)
                slot.actor = None
            return
        job, attempt = slot.rest.popleft()
        if slot.actor is None:
            slot.actor = worker.remote(self.fn, mailbox)
        slot.key = next(self._keys)
        slot.ref = slot.actor.run.remote(slot.key, job)
        slot.job, slot.attempt, slot.phase, slot.info, slot.started = job, attempt, "load", None, 0.0
        slot.deadline, slot.limit = (
            time.monotonic() + self.load_seconds,
            f"the {self.load_seconds:g}s start-up limit",
        )

    def _wait(self, ray: Any, busy: list[_Slot]) -> set:
        """The busy slots' finished calls, waiting at most ``poll_seconds`` or until the next deadline."""
        timeout = max(0.0, min(self.poll_seconds, min(s.deadline for s in busy) - time.monotonic()))
        refs = [s.ref for s in busy]
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return set(ready)

    def _read_mailbox(self, ray: Any, mailbox: Any, busy: list[_Slot]) -> None:
        by_key = {s.key: s for s in busy}
        for key, message in ray.get(mailbox.take.remote()):
            slot = by_key.get(key)
            if slot is None or slot.job is None:
                continue
            track_phase(slot, message, time.monotonic(), self.after_seconds)

    def _collect(self, ray: Any, slot: _Slot) -> list[Event]:
        """A finished call: its result, or a dead worker (retried once), or the job function's own error."""
        from ray.exceptions import RayActorError

        try:
            result = ray.get(slot.ref)
        except RayActorError as exc:
            return self._died(ray, slot, exc)
        except Exception as exc:  # the job function raised (bench's catches everything a method raises)
            return [self._end(slot, "died", f"raised {_first_line(exc)} (on Ray)")]
        event = Event(slot.job, "done", result=result, info=slot.info, phase=slot.phase)
        slot.job, slot.ref, slot.info, slot.deadline = None, None, None, math.inf
        return [event]

    def _died(self, ray: Any, slot: _Slot, exc: BaseException) -> list[Event]:
        with contextlib.suppress(Exception):
            ray.kill(slot.actor, no_restart=True)
        slot.actor = None
        why = f"{type(exc).__name__}: {_first_line(exc)}"
        if slot.attempt < self.retries:
            label = getattr(slot.job, "cell", slot.job)
            print(
                f"coldbench: warning: a Ray worker died during {label} ({why}); running it once more",
                file=sys.stderr,
            )
            slot.rest.appendleft((slot.job, slot.attempt + 1))
            slot.job, slot.ref, slot.info, slot.deadline = None, None, None, math.inf
            return []
        return [self._end(slot, "died", f"died again after a retry (Ray {why})")]

    def _kill(self, ray: Any, slot: _Slot) -> Event:
        with contextlib.suppress(Exception):
            ray.kill(slot.actor, no_restart=True)
        slot.actor = None
        return self._end(slot, "killed", f"killed at {slot.limit}")

    def _end(self, slot: _Slot, kind: Literal["killed", "died"], reason: str) -> Event:
        seconds = time.monotonic() - slot.started if slot.phase != "load" else 0.0
        event = Event(slot.job, kind, info=slot.info, phase=slot.phase, seconds=seconds, reason=reason)
        slot.job, slot.ref, slot.info, slot.deadline = None, None, None, math.inf
        return event


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayExecutor:
    """``--executor ray [--address ADDR]``: a local Ray instance by default, or an existing cluster."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.ray = import_ray()
        self.address = address
        self._owned = False  # this executor started or connected Ray, so it stops or disconnects it

    def cpus(self) -> int:
        """The CPUs the cells may run on: this machine's for a local instance, else the cluster's."""
        if self.address is None:
            from benchmark.seeding import available_cpus

            return available_cpus()
        return max(1, int(self.connect(None).cluster_resources().get("CPU", 0)))

    def connect(self, cpus: int | None) -> Any:
        """Ray, initialized: an instance already running in this process is used as it is."""
        ray = self.ray
        if ray.is_initialized():
            return ray
        main = threading.current_thread() is threading.main_thread()
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        self._owned = True  # from the start: an init cut short by a signal is still stopped by close
        try:
            with signals_through_ray():
                if self.address is None:  # "local": a new instance even where RAY_ADDRESS names a cluster
                    ray.init(
                        address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING
                    )
                else:
                    ray.init(address=self.address, logging_level=logging.WARNING)
        finally:  # ray.init installs a SIGTERM handler that exits: keep bench's (stop workers, one line)
            for s, handler in saved.items():
                signal.signal(s, handler)
        return ray

    def supervisor(self, fn: JobFn, jobs: int, threads: int | None) -> RaySupervisor:
        return RaySupervisor(self, fn, jobs, threads)

    def close(self) -> None:
        """Stop the local instance this executor started, or disconnect from the cluster."""
        if self._owned and self.ray.is_initialized():
            self.ray.shutdown()
        self._owned = False

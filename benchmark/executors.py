"""Executors run grid cells somewhere and yield results as they finish.

``LocalExecutor`` uses worker processes on this machine (spawned, so each has a clean torch state). A cluster
executor (Ray) implements the same ``run`` signature: map a picklable top-level function over picklable
items and yield ``(item, result)`` pairs in completion order.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def run(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[T, R | BaseException]]: ...


class SerialExecutor:
    """In this process, one item at a time (``--jobs 1``): simplest to debug."""

    def run(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[T, R | BaseException]]:
        for item in items:
            try:
                yield item, fn(item)
            except Exception as exc:  # reported per item; the grid goes on
                yield item, exc


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class LocalExecutor:
    """``jobs`` spawned worker processes; a crashed worker costs only its item, the pool is rebuilt.

    Workers start with ``threads`` in the OpenMP/BLAS thread variables: their thread pools are sized when
    numpy and torch load, before any code of ours runs there, and an unset pool takes every core.
    """

    def __init__(self, jobs: int, threads: int = 1) -> None:
        self.jobs = jobs
        self.threads = threads

    def run(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[T, R | BaseException]]:
        saved = {name: os.environ.get(name) for name in THREAD_VARS}
        os.environ.update(dict.fromkeys(THREAD_VARS, str(self.threads)))
        try:
            yield from self._run(fn, items)
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _run(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[T, R | BaseException]]:
        pending = list(items)[::-1]
        while pending:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx) as pool:
                running: dict[Future, T] = {}
                broken = False
                while (pending or running) and not broken:
                    while pending and len(running) < self.jobs:
                        item = pending.pop()
                        running[pool.submit(fn, item)] = item
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = running.pop(future)
                        try:
                            yield item, future.result()
                        except BrokenProcessPool as exc:
                            broken = True
                            yield item, exc
                        except Exception as exc:
                            yield item, exc
                # a worker died (killed, out of memory): the items still running go back to the queue
                pending.extend(running.values())


def make_executor(jobs: int, threads: int = 1) -> Executor:
    return SerialExecutor() if jobs <= 1 else LocalExecutor(jobs, threads)

"""The one seeding function: Python, NumPy and torch, deterministic algorithms, a fixed thread count."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """``COLDBENCH_THREADS``, else 1: runs are comparable and parallel workers do not oversubscribe."""
    return int(os.environ.get("COLDBENCH_THREADS", "1"))


def threads_per_worker(jobs: int, requested: int | None = None) -> int:
    """Threads each of ``jobs`` workers may use so that jobs x threads never exceeds the CPUs.

    Oversubscribed OpenMP pools spin against each other: 2 jobs x 2 threads on 2 cores ran 6-27x slower.
    """
    return max(1, min(requested or default_threads(), available_cpus() // max(jobs, 1)))


def deterministic_torch() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of torch._inductor.

    That function sets the C++ flag (which decides the kernels) and ``torch._inductor.config.deterministic``
    (read only by ``torch.compile``); importing inductor pulls in torch._dynamo, 1.3-2.9 s per process. The
    same two settings are made here: the C++ flag directly, inductor's through the environment variable its
    config reads at import (and directly where some method imported it already).
    """
    os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1"
    inductor = sys.modules.get("torch._inductor.config")
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if inductor is not None or set_flag is None:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


def seed_everything(seed: int, threads: int | None = None) -> int:
    """Seed every generator a method could use and pin the thread count; returns the thread count.

    The count is capped at the CPUs this process may use.
    """
    threads = max(1, min(threads or default_threads(), available_cpus()))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    deterministic_torch()
    torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return threads

"""The one seeding function: Python, NumPy and torch, deterministic algorithms, a fixed thread count."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def default_threads() -> int:
    """``COLDBENCH_THREADS``, else 1: runs are comparable and parallel workers do not oversubscribe."""
    return int(os.environ.get("COLDBENCH_THREADS", "1"))


def seed_everything(seed: int, threads: int | None = None) -> int:
    """Seed every generator a method could use and pin the thread count; returns the thread count."""
    threads = threads or default_threads()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return threads

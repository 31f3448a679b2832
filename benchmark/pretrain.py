"""Train once per task group: the K-independent ``pretrain`` stage of a method, cached by content.

The K-shot tasks of one group share their training data and validation query, so a method's ``pretrain``
(see ``benchmark.api.Method``) gives the same result on each. ``prepare`` runs it once and stores what it
produced under ``$COLDBENCH_CACHE/pretrain/<key>.pt`` (and in this process); a later run of the same key
loads it, charges the view what pretraining charged and restores the run's generators, so that its record
(examples used, FLOPs, metrics) is the one an uncached run writes. ``COLDBENCH_PRETRAIN_CACHE=0`` turns the
cache off (always pretrain). Two workers may compute one key at once: the write is atomic, both are equal.
The folder is bounded: after each write, the least recently used entries (a load marks an entry used) are
deleted until the folder holds at most ``COLDBENCH_PRETRAIN_CACHE_MB`` (default 2048) megabytes; an evicted
entry is simply recomputed by the next run that needs it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.api import Budget, Method, TrainView
from benchmark.fitting import generator_state, set_generator_state
from tasks.cache import default_cache_dir

MEMORY_ENTRIES = 8  # states kept in a worker: one group's methods, without growing without bound
DEFAULT_CACHE_MB = 2048  # the disk folder's bound when COLDBENCH_PRETRAIN_CACHE_MB is unset
_MEMORY: OrderedDict[str, dict[str, Any]] = OrderedDict()


@dataclass(frozen=True)
class PretrainInfo:
    """Where a run's pretraining came from (``"ran"`` or ``"cached"``) and the seconds it took here."""

    source: str
    seconds: float


def has_pretrain(method: Method) -> bool:
    return callable(getattr(method, "pretrain", None))


def enabled() -> bool:
    return os.environ.get("COLDBENCH_PRETRAIN_CACHE", "1") not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    return default_cache_dir() / "pretrain"


def pretrain_key(
    name: str, source_sha: str, config_digest: str, seed: int, data_digest: str, budget: Budget, family: str
) -> str:
    """sha256 over everything a pretraining depends on (see the module docstring)."""
    parts = [name, source_sha, config_digest, seed, data_digest, budget.train_examples, budget.adapt_steps]
    return hashlib.sha256(json.dumps([*parts, family]).encode()).hexdigest()


def cache_limit_bytes() -> int:
    """The disk folder's bound, from ``COLDBENCH_PRETRAIN_CACHE_MB`` (a number of megabytes)."""
    raw = os.environ.get("COLDBENCH_PRETRAIN_CACHE_MB", str(DEFAULT_CACHE_MB))
    try:
        megabytes = float(raw)
    except ValueError:
        raise ValueError(f"COLDBENCH_PRETRAIN_CACHE_MB must be a number of megabytes, got {raw!r}") from None
    return int(megabytes * 2**20)


def evict(folder: Path, limit: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used entries of ``folder`` (oldest mtime first; ``keep`` never) until the
    entries take at most ``limit`` bytes; returns what was deleted. Entries vanishing meanwhile (another
    worker evicting) are skipped."""
    entries = []
    for path in folder.glob("*.pt"):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    deleted = []
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


def _load(key: str) -> dict[str, Any] | None:
    """The entry of ``key`` from memory or disk; None when absent, unreadable or corrupt."""
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = cache_dir() / f"{key}.pt"
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(entry, dict) or entry.get("key") != key:
            return None
    except Exception:  # a missing or corrupt entry is recomputed, never a crash
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # used now: the last to be evicted
    _remember(key, entry)
    return entry


def _remember(key: str, entry: dict[str, Any]) -> None:
    _MEMORY[key] = entry
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)


def _store(key: str, entry: dict[str, Any]) -> None:
    """Keep ``entry`` in memory and write it atomically (temp file + rename); a failed write is ignored."""
    _remember(key, entry)
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key[:16]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            torch.save(entry, handle)
        os.replace(tmp, folder / f"{key}.pt")
        evict(folder, cache_limit_bytes(), keep=folder / f"{key}.pt")
    except OSError:
        Path(locals().get("tmp", folder / ".none")).unlink(missing_ok=True)


def prepare(method: Method, view: TrainView, key: str) -> PretrainInfo:
    """Run ``method.pretrain(view)`` or load the cached result of ``key`` into method and view."""
    start = time.perf_counter()
    entry = _load(key) if enabled() else None
    if entry is not None:
        method.load_pretrained(copy.deepcopy(entry["state"]))  # the method must not alter the cached one
        view.replay_charges(entry["examples_used"], entry["charged"])
        set_generator_state(method._generators, entry["generators"])
        return PretrainInfo("cached", time.perf_counter() - start)
    used = view.examples_used
    method.pretrain(view)
    if enabled() and not view.timed_out:  # a pretraining cut by the clock is not the same on a rerun
        _store(
            key,
            {
                "key": key,
                "state": copy.deepcopy(method.pretrained_state()),
                "examples_used": view.examples_used - used,
                "charged": list(view.charged_domains),
                "generators": generator_state(method._generators),
            },
        )
    return PretrainInfo("ran", time.perf_counter() - start)

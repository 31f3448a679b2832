"""Aggregation of validated runs into per-task cells, ranks and per-family average ranks.

Records of one task that disagree on the task definition or split hash, or a metric declared with two
directions, stop the build (``BuildError``): such records cannot be compared. Only ``status == "ok"`` records
enter the statistics; failed, over-budget and timed-out runs are kept apart as left off. The statistics and
rank rules themselves live in ``leaderboard.statistics``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmark.records import SET_VARIANT, RunRecord
from leaderboard.families import FAMILY_TITLES, RANK_METRIC, unit_column
from leaderboard.load import BuildError, EntryKey, Run, Skipped, run_order
from leaderboard.statistics import Direction, Interval, RankResult, average_ranks, rank_task, t_interval

EntryRuns = tuple[tuple[Run, ...], tuple[Run, ...]]  # (ok runs, runs left off) of one entry on one task


@dataclass(frozen=True)
class Cell:
    """One entry on one task: ok runs (by seed), runs left off, metric intervals over seeds, cost, rank."""

    entry: EntryKey
    ok_runs: tuple[Run, ...]
    left_off: tuple[Run, ...]
    metrics: dict[str, Interval]
    fit_seconds: float
    flops: float
    rank: RankResult | None


@dataclass(frozen=True)
class TaskSummary:
    """Everything the pages show about one task, computed once so every renderer prints the same numbers."""

    id: str
    family: str
    k: int
    beta: float | None
    source: tuple[str, ...]
    target: str
    split_hash: str
    rank_metric: str
    directions: dict[str, Direction]
    cells: dict[EntryKey, Cell]
    left_off: tuple[Run, ...]
    ranked: bool  # the spec ranks it and its leak audit passed (protocol v2); else reported, not ranked
    audit: dict
    others: dict[EntryKey, Cell]  # non-standard variants (a profile, a --set run): reported, never ranked
    identical: tuple[tuple[EntryKey, ...], ...]  # standard entries with identical per-user results


@dataclass(frozen=True)
class Leaderboard:
    """The whole aggregated board: the single input of the Markdown, HTML and text renderers."""

    runs: tuple[Run, ...]
    skipped: tuple[Skipped, ...]
    tasks: dict[str, TaskSummary]
    labels: dict[EntryKey, str]
    family_tasks: dict[str, tuple[str, ...]]
    average_ranks: dict[str, dict[EntryKey, float | None]]
    directions: dict[str, Direction]
    styles: dict[EntryKey, int]  # site-wide colour index per entry, so a method looks the same in every plot


def _task_definition(record: RunRecord) -> tuple:
    """What records of one task must agree on to be compared."""
    t = record.task
    audit = tuple(sorted((k, str(v)) for k, v in t.audit.items()))
    return (t.family, t.k, t.beta, tuple(t.source), t.target, t.split_hash, t.ranked, audit)


def _check_consistency(runs: Sequence[Run]) -> dict[str, Direction]:
    """Refuse records that cannot be compared; return each metric's direction as the records declare it."""
    first_task: dict[str, Run] = {}
    first_entry: dict[tuple[str, EntryKey], Run] = {}
    first_direction: dict[str, tuple[Direction, Run]] = {}
    for run in runs:
        seen = first_task.setdefault(run.record.task.id, run)
        if _task_definition(seen.record) != _task_definition(run.record):
            raise BuildError(
                f"task {run.record.task.id!r}: {seen.path} and {run.path} disagree on the task definition "
                f"(family, k, beta, source, target or split_hash); rerun the stale records"
            )
        twin = first_entry.setdefault((run.record.task.id, run.entry), run)
        if twin.record.method.config_hash != run.record.method.config_hash:
            raise BuildError(
                f"{twin.path} and {run.path} are seeds of one entry but ran different configurations "
                f"({twin.record.method.config_hash[:12]} vs {run.record.method.config_hash[:12]}); rerun the "
                "stale records"
            )
        for metric, direction in sorted(run.record.metric_directions.items()):
            prior = first_direction.setdefault(metric, (direction, run))
            if prior[0] != direction:
                raise BuildError(
                    f"metric {metric!r} is declared {prior[0]!r} in {prior[1].path} "
                    f"but {direction!r} in {run.path}"
                )
    return {metric: d for metric, (d, _) in sorted(first_direction.items())}


def _labels(runs: Iterable[Run]) -> dict[EntryKey, str]:
    """A method's name for its standard entry; ``name (profile)`` or ``name @<config hash>`` for the others.

    The keys themselves come from ``leaderboard.load.entry_key``.
    """
    labels = {}
    for run in runs:
        name, variant = run.entry
        if not variant:
            labels[run.entry] = name
        elif variant.startswith(SET_VARIANT):
            labels[run.entry] = f"{name} @{variant.removeprefix(SET_VARIANT)}"
        else:
            labels[run.entry] = f"{name} ({variant})"
    return dict(sorted(labels.items()))


def _identical(cells_input: dict[EntryKey, EntryRuns], unit: str) -> tuple[tuple[EntryKey, ...], ...]:
    """Entries whose per-unit values of every metric agree on every seed: the same predictions, as far as
    the metrics can tell (e.g. two methods that reduce to one model), so the page can say so."""
    groups: dict[bytes, list[EntryKey]] = defaultdict(list)
    for key, (ok, _) in cells_input.items():
        if any(r.per_user is None for r in ok):
            continue
        parts = [(r.record.seed, r.per_user.sort_values(unit).reset_index(drop=True).round(12)) for r in ok]
        digest = pd.util.hash_pandas_object(
            pd.concat([frame.assign(seed=seed) for seed, frame in parts], ignore_index=True), index=False
        )
        groups[digest.to_numpy().tobytes()].append(key)
    return tuple(tuple(sorted(keys)) for keys in sorted(groups.values()) if len(keys) > 1)


def _user_values(runs: Sequence[Run], metric: str, unit: str) -> pd.DataFrame | None:
    """Per-(unit, seed) values of ``metric``, the paired input of the bootstrap tie test; ``unit`` is the
    ID column (``user``, or ``item`` in a cold-item family), so the bootstrap clusters by it."""
    parts = [
        pd.DataFrame({unit: r.per_user[unit], "seed": r.record.seed, "value": r.per_user[metric]})
        for r in runs
        if r.per_user is not None and metric in r.per_user.columns
    ]
    return pd.concat(parts, ignore_index=True) if parts else None


def _entry_runs(task_runs: Sequence[Run]) -> dict[EntryKey, EntryRuns]:
    """Per entry with at least one ok run: (ok runs, runs left off), each by seed."""
    by_entry: dict[EntryKey, list[Run]] = defaultdict(list)
    for run in task_runs:
        by_entry[run.entry].append(run)
    cells_input = {}
    for key in sorted(by_entry):
        runs = sorted(by_entry[key], key=lambda r: r.record.seed)
        ok = tuple(r for r in runs if r.record.status == "ok")
        if ok:
            cells_input[key] = (ok, tuple(r for r in runs if r.record.status != "ok"))
    return cells_input


def _task_ranks(
    cells_input: dict[EntryKey, EntryRuns],
    rank_metric: str,
    directions: dict[str, Direction],
    unit: str,
) -> dict[EntryKey, RankResult]:
    """Ranks on the task by the mean over seeds, ties tested on the paired per-unit values."""
    means = {}
    per_user = {}
    for key, (ok, _) in cells_input.items():
        values = [r.record.metrics[rank_metric] for r in ok if rank_metric in r.record.metrics]
        if values:
            means[key] = float(np.mean(values))
            per_user[key] = _user_values(ok, rank_metric, unit)
    return rank_task(means, per_user, directions[rank_metric], unit=unit) if means else {}


def _cell(key: EntryKey, ok: tuple[Run, ...], left_off: tuple[Run, ...], rank: RankResult | None) -> Cell:
    """Intervals over seeds for every metric the ok runs report, plus their mean cost."""
    names = sorted({m for r in ok for m in r.record.metrics})
    metrics = {m: t_interval([r.record.metrics[m] for r in ok if m in r.record.metrics]) for m in names}
    return Cell(
        entry=key,
        ok_runs=ok,
        left_off=left_off,
        metrics=metrics,
        fit_seconds=float(np.mean([r.record.timing.fit for r in ok])),
        flops=float(np.mean([r.record.train_flops_estimate for r in ok])),
        rank=rank,
    )


def _summarize_task(task_runs: Sequence[Run], directions: dict[str, Direction]) -> TaskSummary:
    """One task's cells and ranks; the task definition is the same in every record (checked before).

    Only standard entries are ranked; other variants get their intervals in ``others``.
    """
    first = task_runs[0].record.task
    rank_metric = RANK_METRIC[first.family]
    unit = unit_column(first.family)
    cells_input = _entry_runs(task_runs)
    standard = {key: runs for key, runs in cells_input.items() if not key[1]}
    ranks = _task_ranks(standard, rank_metric, directions, unit)
    cells = {key: _cell(key, ok, left_off, ranks.get(key)) for key, (ok, left_off) in standard.items()}
    others = {key: _cell(key, ok, off, None) for key, (ok, off) in cells_input.items() if key[1]}
    task_directions = {
        m: directions[m] for m in sorted({m for r in task_runs for m in r.record.metric_directions})
    }
    return TaskSummary(
        id=first.id,
        family=first.family,
        k=first.k,
        beta=first.beta,
        source=tuple(first.source),
        target=first.target,
        split_hash=first.split_hash,
        rank_metric=rank_metric,
        directions=task_directions,
        cells=cells,
        left_off=tuple(sorted((r for r in task_runs if r.record.status != "ok"), key=run_order)),
        ranked=first.ranked and bool(first.audit.get("passed", True)),
        audit=dict(first.audit),
        others=others,
        identical=_identical(standard, unit),
    )


def _family_ranks(
    tasks: dict[str, TaskSummary],
) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[EntryKey, float | None]]]:
    """Per family: its ranked tasks that have ranks, and the average rank of each entry over them."""
    family_tasks: dict[str, tuple[str, ...]] = {}
    averages: dict[str, dict[EntryKey, float | None]] = {}
    for family in FAMILY_TITLES:
        ranked = {
            t.id: {key: c.rank.rank for key, c in t.cells.items() if c.rank is not None}
            for t in tasks.values()
            if t.family == family and t.ranked
        }
        with_ranks = {tid: r for tid, r in ranked.items() if r}
        family_tasks[family] = tuple(sorted(with_ranks))
        averages[family] = average_ranks(with_ranks) if with_ranks else {}
    return family_tasks, averages


def summarize(runs: Sequence[Run], skipped: Sequence[Skipped] = ()) -> Leaderboard:
    """Aggregate validated runs into per-task statistics, ranks and per-family average ranks."""
    ordered = sorted(runs, key=run_order)
    directions = _check_consistency(ordered)
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in ordered:
        by_task[run.record.task.id].append(run)
    tasks = {task_id: _summarize_task(by_task[task_id], directions) for task_id in sorted(by_task)}
    family_tasks, averages = _family_ranks(tasks)
    labels = _labels(ordered)
    return Leaderboard(
        runs=tuple(ordered),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        tasks=tasks,
        labels=labels,
        styles={key: i for i, key in enumerate(sorted(labels, key=lambda k: (labels[k], k)))},
        family_tasks=family_tasks,
        average_ranks=averages,
        directions=directions,
    )

"""Generate ``LEADERBOARD.md`` and a static results site from run records, and nothing else.

Inputs: the records ``<results>/<task>/<method>/seed-<S>.json`` and the per-user metric files next to them
(``artifacts["per_user"]``, Parquet: ``user`` plus one float column per user-level metric). Every record is
validated before use (schema, location, finite metrics, readable per-user file); an invalid one stops the
build with a ``RecordError`` naming the file, unless ``skip_invalid`` is set: then it is left out and listed
on the page. Records of one task that disagree on the task definition or split hash, or a metric declared
with two directions, always stop the build (``BuildError``): such records cannot be compared.

Only ``status == "ok"`` records enter the tables; failed, over-budget and timed-out runs are listed apart.
A leaderboard entry is a method name with one config hash; a method seen with several configs gets one entry
per config, labelled ``name @hash``. Statistics and ranks follow ``leaderboard.statistics``.

Ranking metric per family (``RANK_METRIC``): a user-averaged metric, so that the order of the means and the
paired per-user tie test measure the same quantity (the record's value is the mean of its per-user column,
which validation checks). R ranks by ``user_mae`` (MAE per cold user, averaged; lower is better), L and C by
``ndcg@10`` over the full ranking. Pooled metrics are not user averages and cannot be paired, so they are
shown, not ranked (``TABLE_METRICS``): R's ``mae`` over all query ratings (the number papers report) and C's
``sampled_ndcg@10`` (CDRIB's protocol, 999 stored negatives, averaged over test pairs). Directions always
come from the records, never from these constants.

Output (``out`` folder): ``LEADERBOARD.md``, ``index.html``, ``pages/task-*.html`` (one per task: all metrics,
ranks with paired differences, cost), ``pages/method-*.html`` (a card per method: summary, package, paper,
defaults, equal-budget tuning, configs, records, provenance). CSS is inlined and a Content-Security-Policy
forbids scripts, so each page opens from a file; hence no click-to-sort either (see the README): every table
says how to read it and in which order its rows are. ``render_text`` is the terminal view of the same
numbers (``coldbench leaderboard show``).

The output is a function of the records, plus what method cards read from the installed methods (summary,
TOML defaults; a method not installed gets a note) and the committed tuned files (``leaderboard/tuned``):
everything is sorted, floats are formatted with fixed digits, no build time or absolute path is written, so
the same inputs give byte-identical files.
"""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmark.records import RecordError, RunRecord, iter_records, load_record
from benchmark.verify import check_side_files
from leaderboard.statistics import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    Direction,
    Interval,
    RankResult,
    average_ranks,
    rank_task,
    t_interval,
)
from tasks.cache import write_text_atomic

__all__ = [
    "FAMILY_TITLES",
    "RANK_METRIC",
    "TABLE_METRICS",
    "BuildError",
    "BuildResult",
    "Leaderboard",
    "Run",
    "Skipped",
    "build",
    "load_runs",
    "method_info",
    "ranking_rows",
    "render",
    "render_text",
    "summarize",
]

FAMILY_TITLES: dict[str, str] = {
    "R": "Explicit-rating cold-start transfer (repaired PTUPCDR protocol)",
    "L": "Leave-one-domain-out, implicit feedback",
    "C": "CDRIB's cold-start users (cloth/sport), cleaned, disjoint validation and test users",
}
RANK_METRIC: dict[str, str] = {"R": "user_mae", "L": "ndcg@10", "C": "ndcg@10"}
TABLE_METRICS: dict[str, tuple[str, ...]] = {
    "R": ("mae", "user_mae"),
    "L": ("ndcg@10",),
    "C": ("sampled_ndcg@10", "ndcg@10"),
}
CURVE_FAMILIES = ("R", "L")
PAGES = "pages"
MARKDOWN = "LEADERBOARD.md"
INDEX = "index.html"
_STYLE = Path(__file__).with_name("assets") / "style.css"
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

EntryKey = tuple[str, str]  # (method name, config hash)


class BuildError(Exception):
    """Records that are each valid but cannot be compared (conflicting task definitions or directions)."""


@dataclass(frozen=True)
class Run:
    """A validated record, its path relative to the results folder, and its per-user values (ok runs)."""

    path: str
    record: RunRecord
    per_user: pd.DataFrame | None

    @property
    def entry(self) -> EntryKey:
        return (self.record.method.name, self.record.method.config_hash)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


# --- loading and validation ---------------------------------------------------------------------------------


def _refuse(path: Path, message: str) -> RecordError:
    return RecordError(f"{path}: {message}")


def _check_location(path: Path, rel: Path, record: RunRecord) -> None:
    """The file must sit where the runner writes it, so a copied or renamed record cannot pose as another."""
    expected = (record.task.id, record.method.name, f"seed-{record.seed}.json")
    if rel.parts != expected:
        raise _refuse(
            path,
            f"record for task {record.task.id!r}, method {record.method.name!r}, "
            f"seed {record.seed} is stored at {rel.as_posix()!r}, expected {'/'.join(expected)!r}",
        )


def _load_per_user(path: Path, record: RunRecord) -> pd.DataFrame:
    name = record.artifacts.get("per_user")
    if not name:
        raise _refuse(path, "status ok but artifacts.per_user is missing (incomplete record)")
    if name in {".", ".."} or Path(name).name != name or "\\" in name:
        raise _refuse(path, f"artifacts.per_user {name!r} is not a plain file name next to the record")
    file = path.with_name(name)
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as exc:
        raise _refuse(
            path, f"per-user file {name!r} is missing or unreadable ({type(exc).__name__})"
        ) from exc
    if "user" not in table.column_names:
        raise _refuse(path, f"per-user file {name!r} has no 'user' column")
    if not (
        pa.types.is_string(table.schema.field("user").type)
        or pa.types.is_large_string(table.schema.field("user").type)
    ):
        raise _refuse(path, f"per-user file {name!r}: 'user' is not a string column")
    users = table.column("user")
    if users.null_count or pc.count_distinct(users).as_py() != len(users):
        raise _refuse(path, f"per-user file {name!r}: 'user' has missing or duplicate values")
    out = {"user": users.to_numpy(zero_copy_only=False).astype(str)}
    for column in sorted(c for c in table.column_names if c in record.metric_directions):
        kind = table.schema.field(column).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise _refuse(path, f"per-user file {name!r}: column {column!r} is not numeric ({kind})")
        values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        if np.isinf(values).any():
            raise _refuse(path, f"per-user file {name!r}: column {column!r} has an infinite value")
        out[column] = values
    return pd.DataFrame(out)


def _load_run(results: Path, path: Path) -> Run:
    record = load_record(path)
    rel = path.relative_to(results)
    _check_location(path, rel, record)
    per_user = None
    if record.status == "ok":
        bad = sorted(k for k, v in record.metrics.items() if not math.isfinite(v))
        if bad:
            raise _refuse(path, f"status ok but metric(s) {bad} are not finite")
        per_user = _load_per_user(path, record)
        _check_rank_metric(path, record, per_user)
        check_side_files(path, record)
    return Run(rel.as_posix(), record, per_user)


def _check_rank_metric(path: Path, record: RunRecord, per_user: pd.DataFrame) -> None:
    """The ranked number must be the mean of its per-user values: an edited record or file fails here."""
    metric = RANK_METRIC[record.task.family]
    if metric not in record.metrics or metric not in per_user.columns:
        return
    values = per_user[metric].to_numpy()
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    if not math.isclose(record.metrics[metric], mean, rel_tol=1e-6, abs_tol=1e-9):
        raise _refuse(
            path,
            f"metric {metric!r} is {record.metrics[metric]!r} but the mean of its per-user values is "
            f"{mean!r} (record or per-user file edited?)",
        )


def load_runs(results: Path, skip_invalid: bool = False) -> tuple[list[Run], list[Skipped]]:
    """Validate every record under ``results``; raise the first ``RecordError`` unless ``skip_invalid``."""
    if not results.is_dir():
        raise BuildError(f"results folder {results} does not exist")
    runs: list[Run] = []
    skipped: list[Skipped] = []
    listed = iter_records(results)
    strays = sorted(set(results.rglob("seed-*.json")) - set(listed))
    for path in sorted([*listed, *strays]):
        try:
            if path in strays:
                raise _refuse(path, "not at <results>/<task>/<method>/seed-<S>.json, where records live")
            runs.append(_load_run(results, path))
        except RecordError as exc:
            if not skip_invalid:
                raise RecordError(f"{exc} (refusing to build; --skip-invalid leaves it out)") from exc
            rel = path.relative_to(results).as_posix()
            reason = str(exc).removeprefix(f"{path}: ")
            skipped.append(Skipped(rel, reason))
    return runs, skipped


# --- aggregation --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Leaderboard:
    runs: tuple[Run, ...]
    skipped: tuple[Skipped, ...]
    tasks: dict[str, TaskSummary]
    labels: dict[EntryKey, str]
    family_tasks: dict[str, tuple[str, ...]]
    average_ranks: dict[str, dict[EntryKey, float | None]]
    directions: dict[str, Direction]
    styles: dict[EntryKey, int]  # site-wide colour index per entry, so a method looks the same in every plot


def _task_definition(record: RunRecord) -> tuple:
    t = record.task
    audit = tuple(sorted((k, str(v)) for k, v in t.audit.items()))
    return (t.family, t.k, t.beta, tuple(t.source), t.target, t.split_hash, t.ranked, audit)


def _check_consistency(runs: Sequence[Run]) -> dict[str, Direction]:
    first_task: dict[str, Run] = {}
    first_direction: dict[str, tuple[Direction, Run]] = {}
    for run in runs:
        seen = first_task.setdefault(run.record.task.id, run)
        if _task_definition(seen.record) != _task_definition(run.record):
            raise BuildError(
                f"task {run.record.task.id!r}: {seen.path} and {run.path} disagree on the task definition "
                f"(family, k, beta, source, target or split_hash); rerun the stale records"
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
    """A method's name, plus its config hash where one family shows the method with several configs.

    Methods keep one default config per family, so different hashes across families are expected.
    """
    configs: dict[tuple[str, str], set[str]] = defaultdict(set)
    families: dict[EntryKey, set[str]] = defaultdict(set)
    for run in runs:
        method, family = run.record.method, run.record.task.family
        configs[(method.name, family)].add(method.config_hash)
        families[(method.name, method.config_hash)].add(family)
    labels = {}
    for (name, config_hash), fams in families.items():
        ambiguous = any(len(configs[(name, f)]) > 1 for f in fams)
        labels[(name, config_hash)] = f"{name} @{config_hash[:12]}" if ambiguous else name
    return dict(sorted(labels.items()))


def _user_values(runs: Sequence[Run], metric: str) -> pd.DataFrame | None:
    parts = [
        pd.DataFrame({"user": r.per_user["user"], "seed": r.record.seed, "value": r.per_user[metric]})
        for r in runs
        if r.per_user is not None and metric in r.per_user.columns
    ]
    return pd.concat(parts, ignore_index=True) if parts else None


def _summarize_task(task_runs: Sequence[Run], directions: dict[str, Direction]) -> TaskSummary:
    first = task_runs[0].record.task
    rank_metric = RANK_METRIC[first.family]
    by_entry: dict[EntryKey, list[Run]] = defaultdict(list)
    for run in task_runs:
        by_entry[run.entry].append(run)
    cells_input = {}
    for key in sorted(by_entry):
        runs = sorted(by_entry[key], key=lambda r: r.record.seed)
        ok = tuple(r for r in runs if r.record.status == "ok")
        if ok:
            cells_input[key] = (ok, tuple(r for r in runs if r.record.status != "ok"))
    means = {}
    per_user = {}
    for key, (ok, _) in cells_input.items():
        values = [r.record.metrics[rank_metric] for r in ok if rank_metric in r.record.metrics]
        if values:
            means[key] = float(np.mean(values))
            per_user[key] = _user_values(ok, rank_metric)
    ranks = rank_task(means, per_user, directions[rank_metric]) if means else {}
    cells = {}
    for key, (ok, left_off) in cells_input.items():
        names = sorted({m for r in ok for m in r.record.metrics})
        metrics = {m: t_interval([r.record.metrics[m] for r in ok if m in r.record.metrics]) for m in names}
        cells[key] = Cell(
            entry=key,
            ok_runs=ok,
            left_off=left_off,
            metrics=metrics,
            fit_seconds=float(np.mean([r.record.timing.fit for r in ok])),
            flops=float(np.mean([r.record.train_flops_estimate for r in ok])),
            rank=ranks.get(key),
        )
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
        left_off=tuple(sorted((r for r in task_runs if r.record.status != "ok"), key=_run_order)),
        ranked=first.ranked and bool(first.audit.get("passed", True)),
        audit=dict(first.audit),
    )


def _run_order(run: Run) -> tuple:
    return (run.record.task.id, run.record.method.name, run.record.method.config_hash, run.record.seed)


def summarize(runs: Sequence[Run], skipped: Sequence[Skipped] = ()) -> Leaderboard:
    """Aggregate validated runs into per-task statistics, ranks and per-family average ranks."""
    ordered = sorted(runs, key=_run_order)
    directions = _check_consistency(ordered)
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in ordered:
        by_task[run.record.task.id].append(run)
    tasks = {task_id: _summarize_task(by_task[task_id], directions) for task_id in sorted(by_task)}
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


# --- formatting ---------------------------------------------------------------------------------------------


def _fixed(x: float, digits: int = 4) -> str:
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _sig(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:.3g}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _signed(x: float) -> str:
    text = _fixed(x)
    return text if text.startswith("-") or text == "n/a" else f"+{text}"


def _estimate(iv: Interval) -> str:
    return f"{_fixed(iv.mean)} ± {_fixed(iv.half_width)}" if iv.has_interval else _fixed(iv.mean)


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _first_line(error: str) -> str:
    """The runner stores ``Type: message`` then a traceback; the page shows the message only."""
    lines = [line for line in error.splitlines() if line.strip()]
    return _one_line(lines[0] if lines else "")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&$])")


def md(text: object) -> str:
    """Markdown-safe text: one line, every character with Markdown or HTML meaning backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _one_line(str(text), 10_000))


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _slug(kind: str, name: str) -> str:
    """A file name that is safe on every file system and unique per name (hash suffix)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:60] or "x"
    return f"{kind}-{safe}-{sha256(name.encode()).hexdigest()[:8]}.html"


def _direction_word(direction: Direction) -> str:
    return "higher is better" if direction == "higher" else "lower is better"


def _arrow(direction: Direction) -> str:
    return "↑" if direction == "higher" else "↓"


def _beta(beta: float | None) -> str:
    return "" if beta is None else f", beta {beta:g}"


def _reason(run: Run) -> str:
    r = run.record
    parts = []
    if r.status == "over_budget" or r.status == "timeout":
        b = r.budget
        parts.append(
            f"train examples {b.train_examples_used}/{b.train_examples_limit}, "
            f"adapt steps {b.adapt_steps_used}/{b.adapt_steps_limit}, "
            f"wall {_sig(b.wall_seconds_used)}/{_sig(b.wall_seconds_limit)} s"
        )
    if r.error:
        parts.append(_first_line(r.error))
    return "; ".join(parts) or "(no reason recorded)"


# --- derived views shared by the Markdown and HTML renderers -------------------------------------------


@dataclass(frozen=True)
class Setting:
    """K-shot tasks that differ only in K (same family, source, target and beta)."""

    family: str
    source: tuple[str, ...]
    target: str
    beta: float | None
    tasks: tuple[tuple[int, str], ...]  # (k, task id), sorted

    @property
    def title(self) -> str:
        return f"{', '.join(self.source)} → {self.target}{_beta(self.beta)}"


def _settings(lb: Leaderboard, family: str) -> list[Setting]:
    groups: dict[tuple, list[tuple[int, str]]] = defaultdict(list)
    for t in lb.tasks.values():
        if t.family == family and t.k > 0 and t.cells and t.ranked:
            groups[(t.source, t.target, -1.0 if t.beta is None else t.beta, t.beta)].append((t.k, t.id))
    out = []
    for (source, target, _, beta), tasks in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        if len({k for k, _ in tasks}) >= 2:
            out.append(Setting(family, source, target, beta, tuple(sorted(tasks))))
    return out


def _family_entries(lb: Leaderboard, family: str) -> list[EntryKey]:
    keys = {key for t in lb.tasks.values() if t.family == family for key in t.cells}
    averages = lb.average_ranks.get(family, {})

    def order(key: EntryKey) -> tuple:
        avg = averages.get(key)
        return (avg is None, avg if avg is not None else 0.0, lb.labels[key], key)

    return sorted(keys, key=order)


def _family_task_ids(lb: Leaderboard, family: str) -> list[str]:
    """The family's ranked tasks: the spec ranks them and their leak audit passed."""
    return [t.id for t in lb.tasks.values() if t.family == family and t.ranked]


def _reported_task_ids(lb: Leaderboard, family: str) -> list[str]:
    return [t.id for t in lb.tasks.values() if t.family == family and not t.ranked]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def audit_banner(task: TaskSummary) -> str:
    """Why a task is reported but not ranked, in the audit's measured figures."""
    a = task.audit
    if not a:
        return "Reported, not ranked: its records carry no leak audit."
    reasons = []
    if a.get("query_touched_pairs"):
        reasons.append(
            f"{_pct(a['query_touched_share'])} of its test pairs ({a['query_touched_pairs']:,} of "
            f"{a['query_pairs']:,}) ask for the target-domain duplicate of an item in the same user's source "
            f"history ({a['duplicate_pairs']:,} duplicate products found)"
        )
    if a.get("valid_test_user_overlap"):
        reasons.append(f"{a['valid_test_user_overlap']:,} of its test users are also validation users")
    if a.get("cold_source_after_first_query"):
        reasons.append(
            f"{_pct(a['cold_source_after_first_query'])} of cold users' source rows come after their first "
            "query interaction"
        )
    if not reasons:
        ahead = a.get("target_train_after_first_query_median")
        text = "a comparison variant; its audit passed"
        if ahead == 0:
            text += " and no training row is later than any cold user's first query (global time cut)"
        reasons.append(text)
    return "Reported, not ranked: " + "; ".join(reasons) + "."


def audit_line(task: TaskSummary) -> str:
    """The audit figures of a task in one line, for its page."""
    a = task.audit
    if not a:
        return "no audit in the records"
    parts = [
        "passed" if a.get("passed") else "failed",
        f"{a.get('duplicate_pairs', 0):,} cross-domain duplicate products",
        f"touched test pairs {a.get('query_touched_pairs', 0):,} of {a.get('query_pairs', 0):,}"
        f" ({_pct(a.get('query_touched_share', 0.0))}),"
        f" validation {_pct(a.get('valid_query_touched_share', 0.0))}",
        f"validation/test user overlap {a.get('valid_test_user_overlap', 0):,}",
    ]
    if a.get("cold_source_after_first_query") is not None:
        parts.append(
            f"cold users' source rows after their first query {_pct(a['cold_source_after_first_query'])}"
        )
        parts.append(
            "warm target rows after a cold user's first query (median over users) "
            + _pct(a["target_train_after_first_query_median"])
        )
    return "; ".join(parts)


def _cell_marks(cell: Cell) -> str:
    marks = ""
    if cell.rank is not None and cell.rank.tied:
        marks += "≈"
    if cell.rank is not None and not cell.rank.leader and not cell.rank.paired:
        marks += "†"
    if cell.left_off:
        marks += "‡"
    return marks


def _avg_text(lb: Leaderboard, family: str, key: EntryKey) -> str:
    avg = lb.average_ranks.get(family, {}).get(key)
    if avg is not None:
        return f"{avg:.2f}"
    cells = [lb.tasks[tid].cells.get(key) for tid in lb.family_tasks[family]]
    ranked = sum(1 for c in cells if c is not None and c.rank is not None)
    return f"n/a ({ranked}/{len(lb.family_tasks[family])})"


LEGEND = (
    "Each cell: mean over seeds ± half-width of the 95% Student-t interval (no interval with one seed), "
    "then the rank. Rank 1 (highlighted) is the leader, the best mean in the metric's declared direction, "
    "and every method tied with it: ≈ marks a tie, where the 95% paired-bootstrap interval of the per-user "
    "difference to the leader covers 0 (users resampled as clusters with all their seeds, since users are "
    f"the unit of sampling; {BOOTSTRAP_RESAMPLES:,} resamples, resampling seed {BOOTSTRAP_SEED}). "
    "Other methods follow in competition ranking by mean. † no paired per-user "
    "data, so no tie could be tested. ‡ some seeds of this cell did not finish ok and are left off. "
    "Average rank: mean of the ranks over the family's ranked tasks, n/a (ranked/total) unless the method "
    "is ranked on every one."
)


# --- Markdown -----------------------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _md_cell(cell: Cell | None, metric: str, ranked: bool) -> str:
    if cell is None or metric not in cell.metrics:
        return "–"
    text = md(_estimate(cell.metrics[metric]))
    if ranked and cell.rank is not None:
        text = f"**{text}**" if cell.rank.rank == 1 else text
        text += f" ({cell.rank.rank})"
    marks = _cell_marks(cell) if ranked else ("‡" if cell.left_off else "")
    return text + (f" {marks}" if marks else "")


def render_markdown(lb: Leaderboard) -> str:
    n_ok = sum(r.record.status == "ok" for r in lb.runs)
    lines = [
        "# ColdBench leaderboard",
        "",
        "<!-- Generated by `coldbench leaderboard build` from run records; do not edit by hand. -->",
        "",
        f"Built from {len(lb.runs)} run records: {n_ok} ok, {len(lb.runs) - n_ok} left off the leaderboard"
        + (f", {len(lb.skipped)} invalid records skipped" if lb.skipped else "")
        + ". Open `index.html` next to this file for plots, per-task pages and method cards.",
        "",
        LEGEND,
        "",
    ]
    for family, title in FAMILY_TITLES.items():
        task_ids = _family_task_ids(lb, family)
        reported = _reported_task_ids(lb, family)
        if not task_ids and not reported:
            continue
        rank_metric = RANK_METRIC[family]
        direction = lb.directions.get(rank_metric)
        lines += [f"## Family {family}: {md(title)}", ""]
        if not direction:
            lines += [f"No record reports the ranking metric {md(rank_metric)}.", ""]
        entries = _family_entries(lb, family)
        for metric in TABLE_METRICS[family] if task_ids else ():
            ranked = metric == rank_metric
            d = lb.directions.get(metric)
            lines += [
                f"{md(metric)}"
                + (f" ({_direction_word(d)})" if d else "")
                + (", ranked:" if ranked else ", reported, not ranked:"),
                "",
            ]
            header = ["Method"] + (["Avg rank"] if ranked else []) + [md(t) for t in task_ids]
            rows = []
            for key in entries:
                row = [md(lb.labels[key])] + ([_avg_text(lb, family, key)] if ranked else [])
                row += [_md_cell(lb.tasks[t].cells.get(key), metric, ranked) for t in task_ids]
                rows.append(row)
            lines += _md_table(header, rows)
        for setting in _settings(lb, family) if family in CURVE_FAMILIES else []:
            lines += [f"### Accuracy vs K: {md(setting.title)} ({md(rank_metric)})", ""]
            header = ["Method"] + [f"K={k}" for k, _ in setting.tasks]
            rows = []
            for key in entries:
                cells = [lb.tasks[tid].cells.get(key) for _, tid in setting.tasks]
                if any(c is not None for c in cells):
                    rows.append([md(lb.labels[key])] + [_md_cell(c, rank_metric, False) for c in cells])
            lines += _md_table(header, rows)
        if reported:
            lines += [f"### Reported, not ranked ({md(rank_metric)})", ""]
            lines += [f"- {md(t)}: {md(audit_banner(lb.tasks[t]))}" for t in reported] + [""]
            keys = sorted({k for t in reported for k in lb.tasks[t].cells}, key=lambda k: (lb.labels[k], k))
            rows = [
                [md(lb.labels[k])]
                + [_md_cell(lb.tasks[t].cells.get(k), rank_metric, False) for t in reported]
                for k in keys
            ]
            lines += _md_table(["Method"] + [md(t) for t in reported], rows)
    left_off = [r for r in lb.runs if r.record.status != "ok"]
    if left_off:
        lines += ["## Runs left off the leaderboard", ""]
        rows = [
            [
                md(r.record.task.id),
                md(lb.labels[r.entry]),
                str(r.record.seed),
                md(r.record.status),
                md(_reason(r)),
            ]
            for r in left_off
        ]
        lines += _md_table(["Task", "Method", "Seed", "Status", "Reason"], rows)
    if lb.skipped:
        lines += ["## Invalid records skipped (--skip-invalid)", ""]
        lines += _md_table(["File", "Reason"], [[md(s.path), md(s.reason)] for s in lb.skipped])
    return "\n".join(lines).rstrip("\n") + "\n"


# --- plain text (coldbench leaderboard show) ----------------------------------------------------------------


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """Columns as wide as their widest entry, so any name fits; ``align`` holds ``l`` or ``r`` per column."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = zip(row, widths, align, strict=True)
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in cells).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def _text_cell(cell: Cell | None, metric: str) -> str:
    """A ranked table's cell as in ``LEADERBOARD.md``, without Markdown: estimate, (rank), marks."""
    if cell is None or metric not in cell.metrics:
        return "–"
    text = _estimate(cell.metrics[metric])
    if cell.rank is not None:
        text += f" ({cell.rank.rank})"
    marks = _cell_marks(cell)
    return text + (f" {marks}" if marks else "")


def _text_family(lb: Leaderboard, family: str) -> list[str]:
    task_ids = _family_task_ids(lb, family)
    reported = _reported_task_ids(lb, family)
    metric = RANK_METRIC[family]
    direction = lb.directions.get(metric)
    lines = [f"Family {family}: {FAMILY_TITLES[family]}", ""]
    if not direction:
        lines.append(f"No record reports the ranking metric {metric}.")
    if task_ids:
        lines.append(
            f"{metric}" + (f" ({_direction_word(direction)})" if direction else "") + ", ranked: mean over "
            "seeds ± half-width of the 95% t-interval, then (rank on the task); ≈ tied with the leader."
        )
        rows = [
            [lb.labels[key], _avg_text(lb, family, key)]
            + [_text_cell(lb.tasks[t].cells.get(key), metric) for t in task_ids]
            for key in _family_entries(lb, family)
        ]
        lines += _text_table(["Method", "Avg rank", *task_ids], rows, "l" + "r" * (len(task_ids) + 1))
    if reported:
        lines += ["", "Reported, not ranked (coldbench leaderboard show --task ID):"]
        lines += [f"  {t}: {audit_banner(lb.tasks[t])}" for t in reported]
    return [*lines, ""]


def _text_task(lb: Leaderboard, task: TaskSummary) -> list[str]:
    direction = task.directions.get(task.rank_metric)
    lines = [
        f"Task {task.id} (family {task.family}): " + ("ranked" if task.ranked else audit_banner(task)),
        f"Leak audit: {audit_line(task)}",
        "",
    ]
    if not task.cells:
        return [*lines, "No run of this task finished ok."]
    lines.append(
        f"{task.rank_metric}" + (f" ({_direction_word(direction)})" if direction else "") + ": mean over ok "
        "seeds ± half-width of the 95% t-interval. Difference: mean of (method − leader) over paired (user, "
        "seed) values [95% user-cluster bootstrap interval]; an interval covering 0 is a tie."
    )
    header = [*RANKING_HEADER[:3], task.rank_metric, *RANKING_HEADER[3:]]
    return lines + _text_table(header, [row for _, row in ranking_rows(lb, task)], "rlrrrrl")


def render_text(lb: Leaderboard, family: str | None = None, task: str | None = None) -> str:
    """The ranked tables (one family's, or every family's), or one task's ranking, as aligned plain text:
    the numbers of ``LEADERBOARD.md`` and the task pages, from the same ``Leaderboard``."""
    if task is not None:
        lines = _text_task(lb, lb.tasks[task])
    else:
        n_ok = sum(r.record.status == "ok" for r in lb.runs)
        lines = [f"ColdBench leaderboard: {len(lb.runs)} run records, {n_ok} ok.", ""]
        for f in FAMILY_TITLES:
            if family in (None, f) and (_family_task_ids(lb, f) or _reported_task_ids(lb, f)):
                lines += _text_family(lb, f)
        lines += textwrap.wrap(LEGEND, 110, break_on_hyphens=False)
    return "\n".join(lines).rstrip("\n") + "\n"


# --- SVG plots ----------------------------------------------------------------------------------------------

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B")
DASHES = ("", "6 3", "2 3", "8 3 2 3")
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM, _LEGEND = 560, 300, 64, 16, 30, 46, 230


MARKERS = ("circle", "square", "triangle", "diamond", "cross")


def _marker(index: int, cx: float, cy: float, size: float, title: str = "") -> str:
    """The entry's marker shape at (cx, cy): shape and colour cycle together, so that 40 entries
    (8 colours x 5 shapes, coprime cycles) each get a distinct pair and neighbours differ in both."""
    color = PALETTE[index % len(PALETTE)]
    shape = MARKERS[index % len(MARKERS)]
    inner = f"<title>{title}</title>" if title else ""
    x, y, r = _c(cx), _c(cy), size
    if shape == "circle":
        return f'<circle cx="{x}" cy="{y}" r="{r:g}" fill="{color}">{inner}</circle>'
    if shape == "square":
        return (
            f'<rect x="{_c(cx - r)}" y="{_c(cy - r)}" width="{2 * r:g}" height="{2 * r:g}" fill="{color}">'
            f"{inner}</rect>"
        )
    corners = {
        "triangle": [(0, -1.2), (1.1, 0.9), (-1.1, 0.9)],
        "diamond": [(0, -1.3), (1.3, 0), (0, 1.3), (-1.3, 0)],
        "cross": [
            (-0.4, -1.2),
            (0.4, -1.2),
            (0.4, -0.4),
            (1.2, -0.4),
            (1.2, 0.4),
            (0.4, 0.4),
            (0.4, 1.2),
            (-0.4, 1.2),
            (-0.4, 0.4),
            (-1.2, 0.4),
            (-1.2, -0.4),
            (-0.4, -0.4),
        ],
    }[shape]
    points = " ".join(f"{_c(cx + dx * r)},{_c(cy + dy * r)}" for dx, dy in corners)
    return f'<polygon points="{points}" fill="{color}">{inner}</polygon>'


def _style(index: int) -> tuple[str, str]:
    return PALETTE[index % len(PALETTE)], DASHES[(index // len(PALETTE)) % len(DASHES)]


def _c(x: float) -> str:
    return _fixed(x, 2)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float], int]:
    """Axis range widened to round steps, the ticks, and the decimals their labels need."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo <= 0:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = multiple * magnitude
        if (hi - lo) / step <= count:
            break
    low = math.floor(lo / step + 1e-9) * step
    high = math.ceil(hi / step - 1e-9) * step
    n = round((high - low) / step)
    ticks = [low + i * step for i in range(n + 1)]
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if multiple == 2.5 else 0))
    return low, high, ticks, decimals


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a + (v - lo) / (hi - lo) * (b - a)


def _svg_frame(title: str, x_label: str, y_label: str, width: int) -> list[str]:
    return [
        f'<svg class="plot" viewBox="0 0 {width} {_H}" role="img" aria-label="{esc(title)}">',
        f'<text class="title" x="{_LEFT}" y="18">{esc(title)}</text>',
        f'<text x="{_c(_LEFT + (_W - _LEFT - _RIGHT) / 2)}" y="{_H - 8}" '
        f'text-anchor="middle">{esc(x_label)}</text>',
        f'<text transform="translate(14 {_c(_TOP + (_H - _TOP - _BOTTOM) / 2)}) rotate(-90)" '
        f'text-anchor="middle">{esc(y_label)}</text>',
    ]


def _y_axis(lo: float, hi: float) -> tuple[float, float, list[str]]:
    pad = 0.06 * (hi - lo)
    low, high, ticks, decimals = _nice_ticks(lo - pad, hi + pad)
    parts = []
    for tick in ticks:
        y = _scale(tick, low, high, _H - _BOTTOM, _TOP)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_c(y)}" y2="{_c(y)}"/>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{_c(y + 4)}" text-anchor="end">{_fixed(tick, decimals)}</text>'
        )
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>')
    parts.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_H - _BOTTOM}" y2="{_H - _BOTTOM}"/>'
    )
    return low, high, parts


def _legend(items: Sequence[tuple[str, int]], markers: bool = False) -> list[str]:
    parts = []
    for i, (label, style) in enumerate(items):
        color, dash = _style(style)
        y = _TOP + 8 + 16 * i
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if not markers:
            parts.append(
                f'<line x1="{_W + 8}" x2="{_W + 30}" y1="{y}" y2="{y}" stroke="{color}" '
                f'stroke-width="2"{dash_attr}/>'
            )
        parts.append(_marker(style, _W + 19, y, 4))
        parts.append(f'<text x="{_W + 36}" y="{y + 4}">{esc(_one_line(label, 32))}</text>')
    return parts


@dataclass(frozen=True)
class Series:
    """One method's line: ``style`` is its site-wide colour index, points are ``(x index, estimate)``."""

    label: str
    style: int
    points: tuple[tuple[int, Interval], ...]


@dataclass(frozen=True)
class Point:
    label: str
    style: int
    x: float
    y: float


def svg_lines(title: str, x_values: Sequence[str], series: Sequence[Series], y_label: str) -> str:
    """Line chart over categorical x (K values) with interval bars; series keep their given order."""
    values = [v for s in series for _, iv in s.points for v in (iv.mean, iv.low, iv.high) if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    parts = _svg_frame(title, "support size K", y_label, _W + _LEGEND)
    low, high, axis = _y_axis(lo, hi)
    parts += axis
    span = _W - _RIGHT - _LEFT

    def x_of(i: int) -> float:
        return _LEFT + span * (i + 0.5) / max(1, len(x_values))

    for i, text in enumerate(x_values):
        parts.append(
            f'<text x="{_c(x_of(i))}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{esc(text)}</text>'
        )
    for s in series:
        color, dash = _style(s.style)
        coords = [(x_of(i), _scale(iv.mean, low, high, _H - _BOTTOM, _TOP), iv) for i, iv in s.points]
        if len(coords) > 1:
            path = " ".join(f"{_c(x)},{_c(y)}" for x, y, _ in coords)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>'
            )
        for x, y, iv in coords:
            if iv.has_interval:
                y1 = _scale(iv.low, low, high, _H - _BOTTOM, _TOP)
                y2 = _scale(iv.high, low, high, _H - _BOTTOM, _TOP)
                parts.append(
                    f'<line x1="{_c(x)}" x2="{_c(x)}" y1="{_c(y1)}" y2="{_c(y2)}" stroke="{color}"/>'
                )
            parts.append(_marker(s.style, x, y, 3, f"{esc(s.label)}: {esc(_estimate(iv))}"))
    parts += _legend([(s.label, s.style) for s in series])
    parts.append("</svg>")
    return "\n".join(parts)


def svg_scatter(title: str, points: Sequence[Point], x_label: str, y_label: str) -> str:
    """Labelled points on a log x axis (cost spans orders of magnitude); x <= 0 sits at the axis start.

    Points drawn at the same spot share one text label, so coinciding methods stay readable.
    """
    parts = _svg_frame(title, f"{x_label} (log scale)", y_label, _W + _LEGEND)
    ys = [p.y for p in points if math.isfinite(p.y)]
    low, high, axis = _y_axis(min(ys) if ys else 0.0, max(ys) if ys else 1.0)
    parts += axis
    logs = [math.log10(p.x) for p in points if p.x > 0 and math.isfinite(p.x)]
    e_lo = math.floor(min(logs) - 0.05) if logs else 0
    e_hi = max(math.ceil(max(logs) + 0.05) if logs else 1, e_lo + 1)
    for e in range(e_lo, e_hi + 1):
        x = _scale(e, e_lo, e_hi, _LEFT, _W - _RIGHT)
        parts.append(f'<text x="{_c(x)}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{10.0**e:g}</text>')
    spots: dict[tuple[int, int], tuple[str, str, list[str]]] = {}
    for p in points:
        position = math.log10(p.x) if p.x > 0 and math.isfinite(p.x) else e_lo
        cx = _c(_scale(position, e_lo, e_hi, _LEFT, _W - _RIGHT))
        cy = _c(_scale(p.y, low, high, _H - _BOTTOM, _TOP))
        title = f"{esc(p.label)}: x={esc(_sig(p.x))}, y={esc(_fixed(p.y))}"
        parts.append(_marker(p.style, float(cx), float(cy), 4, title))
        spot = (round(float(cx) / 8), round(float(cy) / 8))  # within ~8 px reads as the same spot
        spots.setdefault(spot, (cx, cy, []))[2].append(p.label)
    for cx, cy, labels in spots.values():
        text = _one_line(", ".join(labels), 40)
        parts.append(f'<text x="{_c(float(cx) + 6)}" y="{_c(float(cy) - 6)}">{esc(text)}</text>')
    parts += _legend([(p.label, p.style) for p in points], markers=True)
    parts.append("</svg>")
    return "\n".join(parts)


# --- HTML ---------------------------------------------------------------------------------------------------


def _page(title: str, body: Sequence[str], root: str) -> str:
    css = _STYLE.read_text(encoding="utf-8").strip()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            f"<title>{esc(title)}</title>",
            "<style>",
            css,
            "</style>",
            "</head>",
            "<body>",
            f'<header><a href="{root}{INDEX}">ColdBench leaderboard</a></header>',
            "<main>",
            *body,
            "</main>",
            "<footer>Generated by <code>coldbench leaderboard build</code> from run records only.</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], name_columns: int = 1) -> str:
    """``header`` and ``rows`` hold ready HTML for cell contents; a row cell may be ``(html, css class)``."""
    head = "".join(
        f'<th class="name">{h}</th>' if i < name_columns else f"<th>{h}</th>" for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            content, css = cell if isinstance(cell, tuple) else (cell, "name" if i < name_columns else "")
            cells.append(f'<td class="{css}">{content}</td>' if css else f"<td>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="scroll"><table>\n<thead><tr>'
        + head
        + "</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody></table></div>"
    )


def _link(href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def _html_cell(cell: Cell | None, metric: str, ranked: bool) -> str | tuple[str, str]:
    if cell is None or metric not in cell.metrics:
        return ('<span class="muted">–</span>', "")
    text = esc(_estimate(cell.metrics[metric]))
    css = ""
    if ranked and cell.rank is not None:
        text += f'<span class="rank">({cell.rank.rank})</span>'
        css = "leader" if cell.rank.leader else ("tied" if cell.rank.rank == 1 else "")
    marks = _cell_marks(cell) if ranked else ("‡" if cell.left_off else "")
    if marks:
        text += f'<span class="mark">{esc(marks)}</span>'
    return (text, css)


def _method_href(lb: Leaderboard, key: EntryKey, prefix: str) -> str:
    return _link(f"{prefix}{_slug('method', key[0])}", lb.labels[key])


def _left_off_table(lb: Leaderboard, runs: Sequence[Run], prefix: str) -> str:
    rows = [
        [
            _link(f"{prefix}{_slug('task', r.record.task.id)}", r.record.task.id),
            _method_href(lb, r.entry, prefix),
            str(r.record.seed),
            esc(r.record.status),
            (esc(_reason(r)), "text"),
        ]
        for r in runs
    ]
    return _table(["Task", "Method", "Seed", "Status", "Reason"], rows, name_columns=2)


def _how(text: str) -> str:
    """The one line above a table that says how to read it (``text`` is ready HTML)."""
    return f'<p class="legend how">How to read: {text}</p>'


def _reported_section(lb: Leaderboard, family: str, prefix: str) -> list[str]:
    """The family's tasks that are reported but not ranked: why (audit figures), then the rank metric."""
    reported = _reported_task_ids(lb, family)
    if not reported:
        return []
    metric = RANK_METRIC[family]
    direction = lb.directions.get(metric)
    out = [f"<h3>Reported, not ranked (<code>{esc(metric)}</code>)</h3>", '<ul class="banner">']
    out += [
        f"<li>{_link(prefix + _slug('task', t), t)}: {esc(audit_banner(lb.tasks[t]))}</li>" for t in reported
    ]
    out.append("</ul>")
    keys = sorted({k for t in reported for k in lb.tasks[t].cells}, key=lambda k: (lb.labels[k], k))
    header = ["Method"] + [_link(prefix + _slug("task", t), t) for t in reported]
    rows = [
        [_method_href(lb, k, prefix)]
        + [_html_cell(lb.tasks[t].cells.get(k), metric, False) for t in reported]
        for k in keys
    ]
    out.append(
        _how(
            f"<code>{esc(metric)}</code>"
            + (f" ({_direction_word(direction)})" if direction else "")
            + ", mean over seeds ± half-width of the 95% t-interval; no ranks and no ties: these tasks stay "
            "out of the ranking for the reasons above. Rows by method name."
        )
    )
    out.append(_table(header, rows))
    return out


def _metric_how(metric: str, direction: Direction | None, ranked: bool) -> str:
    """How to read a family's table of ``metric``: cells, direction, interval, and what a highlight means."""
    head = f"<code>{esc(metric)}</code>" + (f" ({_direction_word(direction)})" if direction else "")
    if not ranked:
        return _how(
            head + ", mean over seeds ± half-width of the 95% t-interval; shown for comparison, not "
            "ranked (a pooled metric is not a per-user mean, so no paired tie test). Rows in the ranked "
            "table's order."
        )
    return _how(
        head + ", mean over seeds ± half-width of the 95% t-interval, then (rank on that task). Highlighted: "
        "rank 1, the leader and every method tied with it (≈: the paired bootstrap interval of the per-user "
        "difference covers 0). Rows by average rank; a task's header opens its page, ranked on that task."
    )


def _family_tables(lb: Leaderboard, family: str, entries: Sequence[EntryKey], prefix: str) -> list[str]:
    """One table per metric of ``TABLE_METRICS``: methods x the family's ranked tasks."""
    task_ids = _family_task_ids(lb, family)
    out: list[str] = []
    for metric in TABLE_METRICS[family] if task_ids else ():
        ranked = metric == RANK_METRIC[family]
        d = lb.directions.get(metric)
        out.append(
            f"<h3><code>{esc(metric)}</code>"
            + (f" ({_direction_word(d)})" if d else "")
            + (", ranked" if ranked else ", reported, not ranked")
            + "</h3>"
        )
        header = ["Method"] + (["Avg rank"] if ranked else [])
        header += [_link(f"{prefix}{_slug('task', t)}", t) for t in task_ids]
        rows = []
        for key in entries:
            row: list = [_method_href(lb, key, prefix)] + (
                [esc(_avg_text(lb, family, key))] if ranked else []
            )
            row += [_html_cell(lb.tasks[t].cells.get(key), metric, ranked) for t in task_ids]
            rows.append(row)
        out.append(_metric_how(metric, d, ranked))
        out.append(_table(header, rows))
    return out


def _family_cost_plot(lb: Leaderboard, family: str, entries: Sequence[EntryKey]) -> list[str]:
    points = []
    for key in entries:
        avg = lb.average_ranks.get(family, {}).get(key)
        if avg is not None:
            fit = sum(lb.tasks[t].cells[key].fit_seconds for t in lb.family_tasks[family])
            points.append(Point(lb.labels[key], lb.styles[key], fit, avg))
    if not points:
        return []
    return [
        "<h3>Cost vs quality</h3>",
        svg_scatter(
            f"Family {family}: fit time vs average rank",
            points,
            "fit seconds, summed over the family's tasks (mean over seeds)",
            "average rank (lower is better)",
        ),
    ]


def _family_curves(
    lb: Leaderboard, family: str, entries: Sequence[EntryKey], direction: Direction
) -> list[str]:
    """Accuracy vs K for each setting of the family that was run at several K."""
    rank_metric = RANK_METRIC[family]
    out = []
    for setting in _settings(lb, family):
        ks = [f"K={k}" for k, _ in setting.tasks]
        series = []
        for key in entries:
            pts = tuple(
                (i, lb.tasks[tid].cells[key].metrics[rank_metric])
                for i, (_, tid) in enumerate(setting.tasks)
                if key in lb.tasks[tid].cells and rank_metric in lb.tasks[tid].cells[key].metrics
            )
            if pts:
                series.append(Series(lb.labels[key], lb.styles[key], pts))
        out.append(f"<h3>Accuracy vs K: {esc(setting.title)}</h3>")
        out.append(
            svg_lines(
                f"{family}: {setting.title}", ks, series, f"{rank_metric} ({_direction_word(direction)})"
            )
        )
    return out


def _family_section(lb: Leaderboard, family: str) -> list[str]:
    rank_metric = RANK_METRIC[family]
    direction = lb.directions.get(rank_metric)
    entries = _family_entries(lb, family)
    prefix = f"{PAGES}/"
    out = [f'<h2 id="family-{family}">Family {family}: {esc(FAMILY_TITLES[family])}</h2>']
    if not direction:
        out.append(f"<p>No record reports the ranking metric <code>{esc(rank_metric)}</code>.</p>")
    out += _family_tables(lb, family, entries, prefix)
    if direction:
        out += _family_cost_plot(lb, family, entries)
        if family in CURVE_FAMILIES:
            out += _family_curves(lb, family, entries, direction)
    return out + _reported_section(lb, family, prefix)


def _index_lists(lb: Leaderboard, prefix: str) -> list[str]:
    """Left-off runs, skipped records, and the links to every method and task page."""
    body = []
    left_off = [r for r in lb.runs if r.record.status != "ok"]
    if left_off:
        body += [
            '<h2 id="left-off">Runs left off the leaderboard</h2>',
            _how("runs that did not finish ok (failed, over budget, timed out); their seeds are in no mean."),
            _left_off_table(lb, left_off, prefix),
        ]
    if lb.skipped:
        body.append('<h2 id="skipped">Invalid records skipped (--skip-invalid)</h2>')
        body.append(_how("record files that failed validation and were left out of every table."))
        body.append(_table(["File", "Reason"], [[esc(s.path), (esc(s.reason), "text")] for s in lb.skipped]))
    methods = sorted({r.record.method.name for r in lb.runs})
    if methods:
        body.append('<h2 id="methods">Methods</h2>')
        body.append(
            "<ul>" + "".join(f"<li>{_link(prefix + _slug('method', m), m)}</li>" for m in methods) + "</ul>"
        )
    tasks = sorted(lb.tasks)
    if tasks:
        body.append('<h2 id="tasks">Tasks</h2>')
        body.append(
            "<ul>" + "".join(f"<li>{_link(prefix + _slug('task', t), t)}</li>" for t in tasks) + "</ul>"
        )
    return body


def render_index(lb: Leaderboard) -> str:
    n_ok = sum(r.record.status == "ok" for r in lb.runs)
    body = [
        "<h1>ColdBench leaderboard</h1>",
        f"<p>Built from {len(lb.runs)} run records: {n_ok} ok, {len(lb.runs) - n_ok} left off the leaderboard"
        + (f", {len(lb.skipped)} invalid records skipped" if lb.skipped else "")
        + ".</p>",
        f'<p class="legend">{esc(LEGEND)}</p>',
    ]
    families = [f for f in FAMILY_TITLES if _family_task_ids(lb, f) or _reported_task_ids(lb, f)]
    if families:
        body.append(
            "<ul>"
            + "".join(
                f'<li><a href="#family-{f}">Family {f}: {esc(FAMILY_TITLES[f])}</a></li>' for f in families
            )
            + "</ul>"
        )
    for family in families:
        body += _family_section(lb, family)
    body += _index_lists(lb, f"{PAGES}/")
    return _page("ColdBench leaderboard", body, "")


def _task_card(task: TaskSummary) -> list[str]:
    direction = task.directions.get(task.rank_metric)
    return [
        f"<h1>Task {esc(task.id)}</h1>",
        '<dl class="card">',
        f"<dt>Family</dt><dd>{esc(task.family)}: {esc(FAMILY_TITLES.get(task.family, ''))}</dd>",
        f"<dt>Source</dt><dd>{esc(', '.join(task.source))}</dd>",
        f"<dt>Target</dt><dd>{esc(task.target)}</dd>",
        f"<dt>Shots K</dt><dd>{task.k}</dd>",
        f"<dt>Beta</dt><dd>{esc('n/a' if task.beta is None else f'{task.beta:g}')}</dd>",
        f"<dt>Split hash</dt><dd><code>{esc(task.split_hash)}</code></dd>",
        f"<dt>Leak audit</dt><dd>{esc(audit_line(task))}</dd>",
        f"<dt>Leaderboard</dt><dd>{esc('ranked' if task.ranked else audit_banner(task))}</dd>",
        f"<dt>Ranked by</dt><dd><code>{esc(task.rank_metric)}</code>"
        + (f" ({_direction_word(direction)})" if direction else " (not reported)")
        + "</dd>",
        "</dl>",
    ]


def _task_order(lb: Leaderboard, task: TaskSummary) -> list[EntryKey]:
    """Entries by rank on the task (unranked last), then label: the order of every table of its page."""
    return sorted(
        task.cells,
        key=lambda k: (
            task.cells[k].rank is None,
            task.cells[k].rank.rank if task.cells[k].rank else 0,
            lb.labels[k],
            k,
        ),
    )


RANKING_HEADER = ("Rank", "Method", "Seeds ok", "Difference to leader", "Pairs", "Verdict")


def ranking_rows(lb: Leaderboard, task: TaskSummary) -> list[tuple[EntryKey, list[str]]]:
    """Plain-text rows of a task's ranking (``RANKING_HEADER`` plus the metric after "Seeds ok"), in rank
    order: the task page and ``coldbench leaderboard show --task`` print the same strings."""
    rows = []
    for key in _task_order(lb, task):
        cell = task.cells[key]
        r = cell.rank
        iv = cell.metrics.get(task.rank_metric)
        if r is None:
            status, diff, pairs = "not ranked (metric missing)", "–", "–"
        elif r.leader:
            status, diff, pairs = "leader", "–", "–"
        elif r.difference is None or r.difference.n == 0:
            status, diff, pairs = "no paired data", "–", "0"
        else:
            d = r.difference
            status = "tied with leader" if r.tied else "worse than leader"
            diff, pairs = f"{_signed(d.mean)} [{_signed(d.low)}, {_signed(d.high)}]", str(d.n)
        seeds = f"{len(cell.ok_runs)}/{len(cell.ok_runs) + len(cell.left_off)}"
        rank = str(r.rank) if r else "–"
        rows.append((key, [rank, lb.labels[key], seeds, _estimate(iv) if iv else "–", diff, pairs, status]))
    return rows


def _ranking_legend(task: TaskSummary) -> str:
    direction = task.directions.get(task.rank_metric)
    return _how(
        f"<code>{esc(task.rank_metric)}</code>"
        + (f" ({_direction_word(direction)})" if direction else "")
        + ", mean over ok seeds ± half-width of the 95% t-interval. Difference: mean of (method − leader) "
        "over paired (user, seed) values, with its 95% bootstrap interval over users resampled with all "
        f"their seeds ({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}); an interval covering 0 is "
        "a tie, and tied methods share rank 1."
    )


def _task_ranking(lb: Leaderboard, task: TaskSummary) -> list[str]:
    rows = [
        [
            esc(row[0]),
            (_method_href(lb, key, ""), "name"),
            esc(row[2]),
            esc(row[3]),
            esc(row[4]),
            esc(row[5]),
            (esc(row[6]), "text"),
        ]
        for key, row in ranking_rows(lb, task)
    ]
    header = [*RANKING_HEADER[:3], esc(task.rank_metric), *RANKING_HEADER[3:]]
    return ["<h2>Ranking</h2>", _ranking_legend(task), _table(header, rows, name_columns=0)]


def _task_metrics(lb: Leaderboard, task: TaskSummary, order: Sequence[EntryKey]) -> list[str]:
    metrics = sorted({m for c in task.cells.values() for m in c.metrics})
    header = ["Method"] + [f"{esc(m)} {_arrow(task.directions[m])}" for m in metrics]
    rows = [
        [_method_href(lb, key, "")]
        + [
            esc(_estimate(task.cells[key].metrics[m])) if m in task.cells[key].metrics else "–"
            for m in metrics
        ]
        for key in order
    ]
    how = _how(
        "every metric the records report: mean over ok seeds ± half-width of the 95% Student-t interval; "
        "↑ higher is better, ↓ lower is better. Rows in ranking order."
    )
    return ["<h2>All metrics</h2>", how, _table(header, rows)]


def _task_cost(lb: Leaderboard, task: TaskSummary, order: Sequence[EntryKey]) -> list[str]:
    rows = []
    for key in order:
        ok = task.cells[key].ok_runs
        seconds = [
            [r.record.timing.fit for r in ok],
            [r.record.timing.adapt for r in ok],
            [r.record.timing.eval for r in ok],
            [r.record.train_flops_estimate for r in ok],
        ]
        counts = [
            [r.record.n_params for r in ok],
            [r.record.peak_rss_mb for r in ok],
            [r.record.budget.train_examples_used for r in ok],
        ]
        rows.append(
            [_method_href(lb, key, "")]
            + [esc(_sig(float(np.mean(v)))) for v in seconds]
            + [f"{round(float(np.mean(v))):,}" for v in counts]
        )
    header = [
        "Method",
        "Fit s",
        "Adapt s",
        "Eval s",
        "Train FLOPs",
        "Params",
        "Peak RSS MB",
        "Train examples",
    ]
    how = _how(
        "means over ok seeds, lower is cheaper; seconds are wall clock on the machine each record names, "
        "FLOPs an estimate, train examples the training interactions the budgeted view handed out."
    )
    return ["<h2>Cost</h2>", how, _table(header, rows)]


def _task_plots(lb: Leaderboard, task: TaskSummary, order: Sequence[EntryKey]) -> list[str]:
    direction = task.directions.get(task.rank_metric)
    if not direction:
        return []
    ranked = [k for k in order if task.rank_metric in task.cells[k].metrics]
    y_label = f"{task.rank_metric} ({_direction_word(direction)})"
    out = []
    for attr, x_label in (("fit_seconds", "fit seconds"), ("flops", "training FLOPs (estimate)")):
        points = [
            Point(
                lb.labels[k],
                lb.styles[k],
                getattr(task.cells[k], attr),
                task.cells[k].metrics[task.rank_metric].mean,
            )
            for k in ranked
        ]
        out.append(svg_scatter(f"{task.id}: {x_label} vs {task.rank_metric}", points, x_label, y_label))
    return out


def _task_runs(lb: Leaderboard, task: TaskSummary) -> list[str]:
    rows = []
    for r in sorted((r for c in task.cells.values() for r in c.ok_runs), key=_run_order):
        rows.append(
            [
                _method_href(lb, r.entry, ""),
                str(r.record.seed),
                esc(r.record.status),
                esc(_sig(r.record.validation_score)) if r.record.validation_score is not None else "–",
                str(r.record.n_eval_users),
                (f"<code>{esc(r.path)}</code>", "name"),
            ]
        )
    how = _how(
        "one row per ok record. Validation score: what the method's own model selection reached on "
        "validation users (higher is better: −user_mae in family R); – where the method does not report it."
    )
    header = ["Method", "Seed", "Status", "Validation score", "Eval users", "Record"]
    return ["<h2>Runs</h2>", how, _table(header, rows)]


def render_task(lb: Leaderboard, task: TaskSummary) -> str:
    body = _task_card(task)
    if task.cells:
        order = _task_order(lb, task)
        body += _task_ranking(lb, task)
        body += _task_metrics(lb, task, order)
        body += _task_cost(lb, task, order)
        body += _task_plots(lb, task, order)
    else:
        body.append("<p>No run of this task finished ok.</p>")
    body += _task_runs(lb, task)
    if task.left_off:
        body += [
            "<h2>Runs left off the leaderboard</h2>",
            _how("runs that did not finish ok; their seeds are not in any mean above."),
            _left_off_table(lb, task.left_off, ""),
        ]
    return _page(f"ColdBench task {task.id}", body, "../")


def _paper(paper: str) -> str:
    if not paper:
        return '<span class="muted">not given</span>'
    if re.fullmatch(r"https?://[^\s\"'<>]+", paper):
        return _link(paper, paper)
    return esc(paper)


def _config_text(config: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in config.items()) or "none"


@dataclass(frozen=True)
class MethodInfo:
    """What the method class installed where the page is built says about itself (``problem`` if nothing)."""

    summary: str = ""
    package: str = ""
    defaults: tuple[tuple[str, str], ...] = ()  # (family, "key=value, ...") from the TOML next to the module
    problem: str = ""


def method_info(name: str) -> MethodInfo:
    """Summary, package and defaults of ``name`` from the registry; a method not installed here (a plugin
    whose records were copied in) gets a note instead, so the page still builds from its records alone."""
    from benchmark.registry import NAME, RegistryError, load_method, registrations

    entry = registrations().get(name) if NAME.match(name) else None
    if entry is None:
        return MethodInfo(problem="not installed where this page was built; the records below still hold")
    try:
        cls = load_method(name)
        defaults = tuple((family, _config_text(cls.default_config(family))) for family in cls.families)
    except (RegistryError, OSError, ValueError) as exc:  # a broken plugin or TOML costs its card only
        return MethodInfo(package=entry.dist, problem=_first_line(str(exc)))
    return MethodInfo(str(cls.summary), f"{entry.dist} {entry.dist_version}", defaults)


def _method_card(name: str, runs: Sequence[Run], info: MethodInfo) -> list[str]:
    papers = sorted({r.record.method.paper for r in runs})
    keys = {r.entry for r in runs}
    body = [f"<h1>Method {esc(name)}</h1>", '<dl class="card">']
    if info.problem:
        body.append(f'<dt>Summary</dt><dd><span class="muted">{esc(info.problem)}</span></dd>')
    else:
        summary = esc(info.summary) or '<span class="muted">not given</span>'
        body.append(f"<dt>Summary</dt><dd>{summary}</dd>")
    if info.package:
        body.append(f"<dt>Package</dt><dd>{esc(info.package)}</dd>")
    body.append("<dt>Paper</dt><dd>" + "<br>".join(_paper(p) for p in papers) + "</dd>")
    if info.defaults:
        body.append(
            "<dt>Defaults</dt><dd>"
            + "<br>".join(f"<code>{esc(f)}</code>: {esc(text)}" for f, text in info.defaults)
            + "</dd>"
        )
    body.append(f"<dt>Configs</dt><dd>{len(keys)}</dd>")
    body.append(f"<dt>Records</dt><dd>{len(runs)} ({sum(r.record.status == 'ok' for r in runs)} ok)</dd>")
    body.append("</dl>")
    return body


def _method_tuning(name: str) -> list[str]:
    """The equal-budget tuning of ``name`` (``leaderboard/tuned``), where it was tuned."""
    from benchmark.registry import NAME
    from benchmark.tuning import CARD_HEADER, card_rows, load_tuned

    if not NAME.match(name):  # a name from a record never becomes a file path unless it is a method name
        return []
    tuned = card_rows(name)
    if not tuned:
        return []
    sizes = sorted({g.get("n_trials", 0) for g in load_tuned(name).get("groups", {}).values()})
    n = str(sizes[0]) if len(sizes) == 1 else f"up to {sizes[-1]}"
    return [
        f"<h2>Tuning: {esc(n)} configurations per task group, validation users, seed 0</h2>",
        _how(
            "one row per task group (tasks sharing training data), scored on its smallest-K task; the "
            "default configuration is the first trial, and the best validation score (−user_mae in family R, "
            "ndcg@10 in L and C: higher is better) wins, the earlier trial on a tie. Test users never enter."
        ),
        _table([esc(h) for h in CARD_HEADER], [[esc(c) for c in row] for row in tuned]),
    ]


def _method_results(lb: Leaderboard, runs: Sequence[Run]) -> list[str]:
    body = []
    for key in sorted({r.entry for r in runs}):
        example = next(r for r in runs if r.entry == key)
        body.append(f"<h2>Config <code>{esc(key[1])}</code></h2>")
        body.append(f"<pre>{esc(json.dumps(example.record.method.config, indent=2, sort_keys=True))}</pre>")
        rows = []
        for task in lb.tasks.values():
            cell = task.cells.get(key)
            if cell is None:
                continue
            iv = cell.metrics.get(task.rank_metric)
            rows.append(
                [
                    _link(_slug("task", task.id), task.id),
                    esc(task.rank_metric),
                    _html_cell(cell, task.rank_metric, True) if iv else "–",
                    f"{len(cell.ok_runs)}/{len(cell.ok_runs) + len(cell.left_off)}",
                    esc(_sig(cell.fit_seconds)),
                    esc(_sig(cell.flops)),
                ]
            )
        if rows:
            body.append(
                _how(
                    "each task's ranked metric (its direction is on the task page): mean over ok seeds ± "
                    "half-width of the 95% t-interval, then (rank on that task); highlighted: rank 1."
                )
            )
            body.append(
                _table(["Task", "Metric", "Result (rank)", "Seeds ok", "Fit s", "Train FLOPs"], rows, 2)
            )
    return body


def _method_provenance(runs: Sequence[Run]) -> list[str]:
    rows = []
    for r in sorted(runs, key=_run_order):
        rec = r.record
        rows.append(
            [
                _link(_slug("task", rec.task.id), rec.task.id),
                str(rec.seed),
                esc(rec.status),
                f"<code>{esc(rec.method.config_hash[:12])}</code>",
                esc(f"{rec.code.version} {rec.code.commit[:12]}" + (" dirty" if rec.code.dirty else "")),
                esc(f"{rec.env.device}, {rec.env.threads} threads"),
                esc(
                    f"python {rec.env.python}, torch {rec.env.torch}, "
                    f"numpy {rec.env.numpy}, pandas {rec.env.pandas}"
                ),
                esc(f"{rec.budget.train_examples_used}/{rec.budget.train_examples_limit}"),
                esc(f"{rec.started_at} → {rec.finished_at}"),
                (f"<code>{esc(_one_line(rec.command, 300))}</code>", "text"),
                (esc(_first_line(rec.error)) if rec.error else "", "text"),
            ]
        )
    header = ["Task", "Seed", "Status", "Config", "Code", "Device", "Environment", "Train examples", "Run"]
    platforms = sorted({f"{r.record.env.platform}; {r.record.env.cpu}" for r in runs})
    return [
        "<h2>Records and provenance</h2>",
        _how("one row per record, by task and seed: the code, environment and budget each run used."),
        _table([*header, "Command", "Error"], rows),
        "<h3>Platforms</h3>",
        "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in platforms) + "</ul>",
    ]


def render_method(lb: Leaderboard, name: str) -> str:
    runs = [r for r in lb.runs if r.record.method.name == name]
    body = _method_card(name, runs, method_info(name))
    body += _method_tuning(name)
    body += _method_results(lb, runs)
    body += _method_provenance(runs)
    return _page(f"ColdBench method {name}", body, "../")


def render(lb: Leaderboard) -> dict[str, str]:
    """Every output file as ``relative path -> text``, in sorted order."""
    files = {MARKDOWN: render_markdown(lb), INDEX: render_index(lb)}
    for task in lb.tasks.values():
        files[f"{PAGES}/{_slug('task', task.id)}"] = render_task(lb, task)
    for name in sorted({r.record.method.name for r in lb.runs}):
        files[f"{PAGES}/{_slug('method', name)}"] = render_method(lb, name)
    return dict(sorted(files.items()))


# --- entry point --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    written: tuple[str, ...]
    removed: tuple[str, ...]
    runs: int
    skipped: tuple[Skipped, ...]


def _stale_pages(out: Path, keep: set[str]) -> list[Path]:
    folder = out / PAGES
    if not folder.is_dir():
        return []
    candidates = list(folder.glob("task-*.html")) + list(folder.glob("method-*.html"))
    return sorted(p for p in candidates if f"{PAGES}/{p.name}" not in keep)


def build(
    results: Path, out: Path, skip_invalid: bool = False, log: Callable[[str], None] | None = None
) -> BuildResult:
    """Validate, aggregate and write the pages; nothing is written when any record is refused."""
    runs, skipped = load_runs(results, skip_invalid=skip_invalid)
    lb = summarize(runs, skipped)
    files = render(lb)
    for rel, text in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, text)
    stale = _stale_pages(out, set(files))
    for path in stale:
        path.unlink()
    if log is not None:
        for s in lb.skipped:
            log(f"skipped invalid record {s.path}: {s.reason}")
    return BuildResult(tuple(files), tuple(p.name for p in stale), len(runs), lb.skipped)

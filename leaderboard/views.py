"""Views of a ``Leaderboard`` that several renderers share: row orders, task groups, marks, audit text.

Markdown, HTML and the terminal view all go through these, so the same board prints the same rows in the
same order with the same marks everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from leaderboard.aggregate import Cell, Leaderboard, TaskSummary
from leaderboard.families import unit_column, unit_noun
from leaderboard.formatting import estimate, first_line, sig, signed
from leaderboard.load import EntryKey, Run
from leaderboard.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED

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
RANKING_HEADER = ("Rank", "Method", "Seeds ok", "Difference to leader", "Pairs", "Verdict")
NO_REASON = "the method does not declare this family"


def unit_note(family: str) -> str:
    """What the unit is in a family whose unit is not the user (the legend speaks of users); "" for users.

    In a cold-item family the per-unit values are per cold item, so ties are tested on cold items.
    """
    if unit_column(family) == "user":
        return ""
    return (
        f"In family {family} the unit is the cold item, not the user: the ranked metric is a mean over "
        f"{unit_noun(family)}, and the tie test pairs per-item values by (cold item, seed) and resamples "
        f"{unit_noun(family)} as clusters with all their seeds."
    )


def _support(name: str) -> tuple[tuple[str, ...], dict[str, str]] | None:
    """The families a registered method declares and its reasons for the others; None where it is not
    installed here or does not load (its records still show; only the not-applicable list lacks it)."""
    from benchmark.registry import NAME, RegistryError, load_method, registrations

    if not NAME.match(name) or name not in registrations():
        return None
    try:
        cls = load_method(name)
    except (RegistryError, OSError, ValueError, ImportError):
        return None
    reasons = {str(f): str(r) for f, r in dict(getattr(cls, "not_applicable", {}) or {}).items()}
    return tuple(cls.families), reasons


def not_applicable(lb: Leaderboard, family: str) -> list[tuple[str, str]]:
    """``(method, reason)`` for each method on the board that does not support ``family``, by name.

    The methods are those with records anywhere on the board and installed where it is built (a registered
    method with no record is on no page, so the output stays a function of the records and the installed
    methods). A method with a cell in the family is never listed: its results speak for it. The reason is
    the method's ``not_applicable[family]``, or ``NO_REASON`` where it gives none.
    """
    shown = {key[0] for t in lb.tasks.values() if t.family == family for key in (*t.cells, *t.others)}
    out = []
    for name in sorted({r.record.method.name for r in lb.runs} - shown):
        support = _support(name)
        if support is not None and family not in support[0]:
            out.append((name, support[1].get(family) or NO_REASON))
    return out


def _beta(beta: float | None) -> str:
    return "" if beta is None else f", beta {beta:g}"


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


def settings(lb: Leaderboard, family: str) -> list[Setting]:
    """The family's ranked settings run at two or more K: the rows of an accuracy-vs-K table or plot."""
    groups: dict[tuple, list[tuple[int, str]]] = defaultdict(list)
    for t in lb.tasks.values():
        if t.family == family and t.k > 0 and t.cells and t.ranked:
            groups[(t.source, t.target, -1.0 if t.beta is None else t.beta, t.beta)].append((t.k, t.id))
    out = []
    for (source, target, _, beta), tasks in sorted(groups.items(), key=lambda kv: kv[0][:3]):
        if len({k for k, _ in tasks}) >= 2:
            out.append(Setting(family, source, target, beta, tuple(sorted(tasks))))
    return out


def family_entries(lb: Leaderboard, family: str) -> list[EntryKey]:
    """The family's entries by average rank (unranked last), then label: the row order of its tables."""
    keys = {key for t in lb.tasks.values() if t.family == family for key in t.cells}
    averages = lb.average_ranks.get(family, {})

    def order(key: EntryKey) -> tuple:
        avg = averages.get(key)
        return (avg is None, avg if avg is not None else 0.0, lb.labels[key], key)

    return sorted(keys, key=order)


def family_task_ids(lb: Leaderboard, family: str) -> list[str]:
    """The family's ranked tasks: the spec ranks them and their leak audit passed."""
    return [t.id for t in lb.tasks.values() if t.family == family and t.ranked]


def reported_task_ids(lb: Leaderboard, family: str) -> list[str]:
    """The family's tasks shown for comparison only (a failed audit or a variant the spec does not rank)."""
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


def cell_marks(cell: Cell) -> str:
    """The ≈ † ‡ marks of a ranked cell, as ``LEGEND`` explains them."""
    marks = ""
    if cell.rank is not None and cell.rank.tied:
        marks += "≈"
    if cell.rank is not None and not cell.rank.leader and not cell.rank.paired:
        marks += "†"
    if cell.left_off:
        marks += "‡"
    return marks


def avg_text(lb: Leaderboard, family: str, key: EntryKey) -> str:
    """The average rank, or n/a (ranked/total) so that a missing task is never hidden by an average."""
    avg = lb.average_ranks.get(family, {}).get(key)
    if avg is not None:
        return f"{avg:.2f}"
    cells = [lb.tasks[tid].cells.get(key) for tid in lb.family_tasks[family]]
    ranked = sum(1 for c in cells if c is not None and c.rank is not None)
    return f"n/a ({ranked}/{len(lb.family_tasks[family])})"


def left_off_reason(run: Run) -> str:
    """Why a run is off the leaderboard: its budget use where it ran out, and its error message."""
    r = run.record
    parts = []
    if r.status == "over_budget" or r.status == "timeout":
        b = r.budget
        parts.append(
            f"train examples {b.train_examples_used}/{b.train_examples_limit}, "
            f"adapt steps {b.adapt_steps_used}/{b.adapt_steps_limit}, "
            f"wall {sig(b.wall_seconds_used)}/{sig(b.wall_seconds_limit)} s"
        )
    if r.error:
        parts.append(first_line(r.error))
    return "; ".join(parts) or "(no reason recorded)"


def task_order(lb: Leaderboard, task: TaskSummary) -> list[EntryKey]:
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


def ranking_rows(lb: Leaderboard, task: TaskSummary) -> list[tuple[EntryKey, list[str]]]:
    """Plain-text rows of a task's ranking (``RANKING_HEADER`` plus the metric after "Seeds ok"), in rank
    order: the task page and ``coldbench leaderboard show --task`` print the same strings."""
    rows = []
    for key in task_order(lb, task):
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
            diff, pairs = f"{signed(d.mean)} [{signed(d.low)}, {signed(d.high)}]", str(d.n)
        seeds = f"{len(cell.ok_runs)}/{len(cell.ok_runs) + len(cell.left_off)}"
        rank = str(r.rank) if r else "–"
        rows.append((key, [rank, lb.labels[key], seeds, estimate(iv) if iv else "–", diff, pairs, status]))
    return rows


def identical_text(lb: Leaderboard, task: TaskSummary) -> str:
    """The task's groups of entries with identical per-user results, e.g. ``cmf = finetune``; "" if none."""
    return "; ".join(" = ".join(lb.labels[k] for k in group) for group in task.identical)


def other_entries(lb: Leaderboard, task_ids: list[str]) -> list[EntryKey]:
    """Non-standard variants (profiles such as ``reference``, ``--set`` runs) on these tasks, by label."""
    keys = {k for t in task_ids for k in lb.tasks[t].others}
    return sorted(keys, key=lambda k: (lb.labels[k], k))

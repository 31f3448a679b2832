"""The terminal view (``coldbench leaderboard show``): the numbers of ``LEADERBOARD.md`` as aligned text."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from leaderboard.aggregate import Cell, Leaderboard, TaskSummary
from leaderboard.families import FAMILY_TITLES, RANK_METRIC, unit_noun
from leaderboard.formatting import direction_word, estimate
from leaderboard.views import (
    LEGEND,
    RANKING_HEADER,
    audit_banner,
    audit_line,
    avg_text,
    cell_marks,
    family_entries,
    family_task_ids,
    not_applicable,
    ranking_rows,
    reported_task_ids,
    unit_note,
)


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
    text = estimate(cell.metrics[metric])
    if cell.rank is not None:
        text += f" ({cell.rank.rank})"
    marks = cell_marks(cell)
    return text + (f" {marks}" if marks else "")


def _text_family(lb: Leaderboard, family: str) -> list[str]:
    """A family's ranked table, then the names of its reported tasks and why they are not ranked."""
    task_ids = family_task_ids(lb, family)
    reported = reported_task_ids(lb, family)
    metric = RANK_METRIC[family]
    direction = lb.directions.get(metric)
    lines = [f"Family {family}: {FAMILY_TITLES[family]}", ""]
    note = unit_note(family)
    lines += [*textwrap.wrap(note, 110, break_on_hyphens=False), ""] if note else []
    if not direction:
        lines.append(f"No record reports the ranking metric {metric}.")
    if task_ids:
        lines.append(
            f"{metric}" + (f" ({direction_word(direction)})" if direction else "") + ", ranked: mean over "
            "seeds ± half-width of the 95% t-interval, then (rank on the task); ≈ tied with the leader."
        )
        rows = [
            [lb.labels[key], avg_text(lb, family, key)]
            + [_text_cell(lb.tasks[t].cells.get(key), metric) for t in task_ids]
            for key in family_entries(lb, family)
        ]
        lines += _text_table(["Method", "Avg rank", *task_ids], rows, "l" + "r" * (len(task_ids) + 1))
    if reported:
        lines += ["", "Reported, not ranked (coldbench leaderboard show --task ID):"]
        lines += [f"  {t}: {audit_banner(lb.tasks[t])}" for t in reported]
    absent = not_applicable(lb, family)
    if absent:
        lines += ["", f"Not applicable to family {family} (the method does not declare it):"]
        lines += [f"  {name}: {reason}" for name, reason in absent]
    return [*lines, ""]


def _text_task(lb: Leaderboard, task: TaskSummary) -> list[str]:
    """One task's ranking with differences to the leader, as on its page."""
    direction = task.directions.get(task.rank_metric)
    lines = [
        f"Task {task.id} (family {task.family}): " + ("ranked" if task.ranked else audit_banner(task)),
        f"Leak audit: {audit_line(task)}",
        "",
    ]
    if not task.cells:
        return [*lines, "No run of this task finished ok."]
    lines.append(
        f"{task.rank_metric}" + (f" ({direction_word(direction)})" if direction else "") + ": mean over ok "
        "seeds ± half-width of the 95% t-interval. Difference: mean of (method − leader) over paired "
        f"({unit_noun(task.family, plural=False)}, seed) values [95% {unit_noun(task.family, plural=False)}"
        "-cluster bootstrap interval]; an interval covering 0 is a tie."
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
            if family in (None, f) and (family_task_ids(lb, f) or reported_task_ids(lb, f)):
                lines += _text_family(lb, f)
        lines += textwrap.wrap(LEGEND, 110, break_on_hyphens=False)
    return "\n".join(lines).rstrip("\n") + "\n"

"""``pages/task-*.html``: one task's definition and audit, ranking with paired differences, metrics, cost."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmark.protocols import selection_label
from leaderboard.aggregate import Leaderboard, TaskSummary
from leaderboard.families import FAMILY_TITLES, unit_column, unit_noun
from leaderboard.formatting import arrow, direction_word, esc, estimate, sig
from leaderboard.html_base import how_to_read, html_page, html_table, left_off_table, method_link
from leaderboard.load import EntryKey, run_order
from leaderboard.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from leaderboard.svg import Point, svg_scatter
from leaderboard.views import (
    RANKING_HEADER,
    audit_banner,
    audit_line,
    identical_text,
    other_entries,
    ranking_rows,
    task_order,
)


def _task_card(task: TaskSummary) -> list[str]:
    """What the task is: family, domains, K, beta, split hash, leak audit, and whether it is ranked."""
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
        + (f" ({direction_word(direction)})" if direction else " (not reported)")
        + "</dd>",
        "</dl>",
    ]


def _ranking_legend(task: TaskSummary) -> str:
    """How to read the ranking; the unit (users, or cold items in a cold-item family) is the family's."""
    direction = task.directions.get(task.rank_metric)
    pair = unit_noun(task.family, plural=False)
    return how_to_read(
        f"<code>{esc(task.rank_metric)}</code>"
        + (f" ({direction_word(direction)})" if direction else "")
        + ", mean over ok seeds ± half-width of the 95% t-interval. Difference: mean of (method − leader) "
        f"over paired ({pair}, seed) values, with its 95% bootstrap interval over {unit_noun(task.family)} "
        f"resampled with all their seeds ({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}); an "
        "interval covering 0 is a tie, and tied methods share rank 1."
    )


def _task_ranking(lb: Leaderboard, task: TaskSummary) -> list[str]:
    """The ranking table: the strings of ``ranking_rows``, escaped, with the method linked to its card."""
    rows = [
        [
            esc(row[0]),
            (method_link(lb, key, ""), "name"),
            esc(row[2]),
            esc(row[3]),
            esc(row[4]),
            esc(row[5]),
            (esc(row[6]), "text"),
        ]
        for key, row in ranking_rows(lb, task)
    ]
    header = [*RANKING_HEADER[:3], esc(task.rank_metric), *RANKING_HEADER[3:]]
    same = identical_text(lb, task)
    note = (
        [
            f"<p>Identical per-user results on every seed (the same predictions as far as the metrics show): "
            f"{esc(same)}.</p>"
        ]
        if same
        else []
    )
    return ["<h2>Ranking</h2>", _ranking_legend(task), html_table(header, rows, name_columns=0), *note]


def _task_others(lb: Leaderboard, task: TaskSummary) -> list[str]:
    """Non-standard configurations of this task (a ``reference`` profile, ``--set`` runs), never ranked."""
    keys = other_entries(lb, [task.id])
    if not keys:
        return []
    rows = []
    for key in keys:
        cell = task.others[key]
        iv = cell.metrics.get(task.rank_metric)
        seeds = f"{len(cell.ok_runs)}/{len(cell.ok_runs) + len(cell.left_off)}"
        rows.append([(method_link(lb, key, ""), "name"), seeds, esc(estimate(iv)) if iv else "–"])
    how = how_to_read(
        "configurations other than the standard (tuned or default) one: a profile such as "
        "<code>reference</code> (the method as its authors ran it) or an ad hoc <code>--set</code> run; "
        "reported for comparison, not ranked."
    )
    header = ["Configuration", "Seeds ok", esc(task.rank_metric)]
    return ["<h2>Other configurations</h2>", how, html_table(header, rows)]


def _task_metrics(lb: Leaderboard, task: TaskSummary, order: Sequence[EntryKey]) -> list[str]:
    """Every metric the records report, ranked or not, so nothing measured is hidden."""
    metrics = sorted({m for c in task.cells.values() for m in c.metrics})
    header = ["Method"] + [f"{esc(m)} {arrow(task.directions[m])}" for m in metrics]
    rows = [
        [method_link(lb, key, "")]
        + [
            esc(estimate(task.cells[key].metrics[m])) if m in task.cells[key].metrics else "–"
            for m in metrics
        ]
        for key in order
    ]
    how = how_to_read(
        "every metric the records report: mean over ok seeds ± half-width of the 95% Student-t interval; "
        "↑ higher is better, ↓ lower is better. Rows in ranking order."
    )
    return ["<h2>All metrics</h2>", how, html_table(header, rows)]


def _task_cost(lb: Leaderboard, task: TaskSummary, order: Sequence[EntryKey]) -> list[str]:
    """Time, FLOPs, size and data used per entry, means over ok seeds."""
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
            [method_link(lb, key, "")]
            + [esc(sig(float(np.mean(v)))) for v in seconds]
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
    how = how_to_read(
        "means over ok seeds, lower is cheaper; seconds are wall clock on the machine each record names, "
        "FLOPs an estimate, train examples the training interactions the budgeted view handed out."
    )
    return ["<h2>Cost</h2>", how, html_table(header, rows)]


def _task_plots(lb: Leaderboard, task: TaskSummary, order: Sequence[EntryKey]) -> list[str]:
    """Fit time and FLOPs against the ranked metric; none where no record declares its direction."""
    direction = task.directions.get(task.rank_metric)
    if not direction:
        return []
    ranked = [k for k in order if task.rank_metric in task.cells[k].metrics]
    y_label = f"{task.rank_metric} ({direction_word(direction)})"
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
    """One row per ok record, so each number above traces back to its file."""
    rows = []
    cells = [*task.cells.values(), *task.others.values()]
    for r in sorted((r for c in cells for r in c.ok_runs), key=run_order):
        rows.append(
            [
                method_link(lb, r.entry, ""),
                str(r.record.seed),
                esc(r.record.status),
                esc(sig(r.record.validation_score)) if r.record.validation_score is not None else "–",
                str(r.record.n_eval_users),
                (f"<code>{esc(r.path)}</code>", "name"),
            ]
        )
    units = unit_noun(task.family)
    score = "−user_mae in family R"  # the cold-user families' wording, as before the cold-item families
    if unit_column(task.family) != "user":
        score = f"{selection_label(task.family).replace('-', '−', 1)} in family {task.family}"
    how = how_to_read(
        "one row per ok record. Validation score: what the method's own model selection reached on "
        f"validation {esc(units)} (higher is better: {esc(score)}); – where the method does not report it."
    )
    header = ["Method", "Seed", "Status", "Validation score", f"Eval {esc(units)}", "Record"]
    return ["<h2>Runs</h2>", how, html_table(header, rows)]


def render_task(lb: Leaderboard, task: TaskSummary) -> str:
    """A task's page; every table on it is in the order of the task's ranking."""
    body = _task_card(task)
    if task.cells:
        order = task_order(lb, task)
        body += _task_ranking(lb, task)
        body += _task_metrics(lb, task, order)
        body += _task_cost(lb, task, order)
        body += _task_plots(lb, task, order)
    else:
        body.append("<p>No run of this task finished ok.</p>")
    body += _task_others(lb, task)
    body += _task_runs(lb, task)
    if task.left_off:
        body += [
            "<h2>Runs left off the leaderboard</h2>",
            how_to_read("runs that did not finish ok; their seeds are not in any mean above."),
            left_off_table(lb, task.left_off, ""),
        ]
    return html_page(f"ColdBench task {task.id}", body, "../")

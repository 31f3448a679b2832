"""``index.html``: every family's tables and plots on one page, then the lists of runs, methods and tasks."""

from __future__ import annotations

from collections.abc import Sequence

from leaderboard.aggregate import Leaderboard
from leaderboard.families import CURVE_FAMILIES, FAMILY_TITLES, RANK_METRIC, TABLE_METRICS, unit_column
from leaderboard.formatting import direction_word, esc, slug
from leaderboard.html_base import (
    PAGES,
    HtmlCell,
    how_to_read,
    html_cell,
    html_link,
    html_page,
    html_table,
    left_off_table,
    method_link,
)
from leaderboard.load import EntryKey
from leaderboard.statistics import Direction
from leaderboard.svg import Point, Series, svg_lines, svg_scatter
from leaderboard.views import (
    LEGEND,
    audit_banner,
    avg_text,
    family_entries,
    family_task_ids,
    not_applicable,
    reported_task_ids,
    settings,
    unit_note,
)


def _reported_section(lb: Leaderboard, family: str, prefix: str) -> list[str]:
    """The family's tasks that are reported but not ranked: why (audit figures), then the rank metric."""
    reported = reported_task_ids(lb, family)
    if not reported:
        return []
    metric = RANK_METRIC[family]
    direction = lb.directions.get(metric)
    out = [f"<h3>Reported, not ranked (<code>{esc(metric)}</code>)</h3>", '<ul class="banner">']
    out += [
        f"<li>{html_link(prefix + slug('task', t), t)}: {esc(audit_banner(lb.tasks[t]))}</li>"
        for t in reported
    ]
    out.append("</ul>")
    keys = sorted({k for t in reported for k in lb.tasks[t].cells}, key=lambda k: (lb.labels[k], k))
    header = ["Method"] + [html_link(prefix + slug("task", t), t) for t in reported]
    rows = [
        [method_link(lb, k, prefix)] + [html_cell(lb.tasks[t].cells.get(k), metric, False) for t in reported]
        for k in keys
    ]
    out.append(
        how_to_read(
            f"<code>{esc(metric)}</code>"
            + (f" ({direction_word(direction)})" if direction else "")
            + ", mean over seeds ± half-width of the 95% t-interval; no ranks and no ties: these tasks stay "
            "out of the ranking for the reasons above. Rows by method name."
        )
    )
    out.append(html_table(header, rows))
    return out


def _metric_how(metric: str, direction: Direction | None, ranked: bool, unit: str = "user") -> str:
    """How to read a family's table of ``metric``: cells, direction, interval, and what a highlight means.

    ``unit`` is the family's per-unit ID column (``user``, or ``item`` for cold items), named in the text.
    """
    head = f"<code>{esc(metric)}</code>" + (f" ({direction_word(direction)})" if direction else "")
    if not ranked:
        return how_to_read(
            head + ", mean over seeds ± half-width of the 95% t-interval; shown for comparison, not "
            f"ranked (a pooled metric is not a per-{unit} mean, so no paired tie test). Rows in the ranked "
            "table's order."
        )
    return how_to_read(
        head + ", mean over seeds ± half-width of the 95% t-interval, then (rank on that task). Highlighted: "
        "rank 1, the leader and every method tied with it (≈: the paired bootstrap interval of the "
        f"per-{unit} difference covers 0). Rows by average rank; a task's header opens its page, ranked on "
        "that task."
    )


def _family_tables(lb: Leaderboard, family: str, entries: Sequence[EntryKey], prefix: str) -> list[str]:
    """One table per metric of ``TABLE_METRICS``: methods x the family's ranked tasks."""
    task_ids = family_task_ids(lb, family)
    out: list[str] = []
    for metric in TABLE_METRICS[family] if task_ids else ():
        ranked = metric == RANK_METRIC[family]
        d = lb.directions.get(metric)
        out.append(
            f"<h3><code>{esc(metric)}</code>"
            + (f" ({direction_word(d)})" if d else "")
            + (", ranked" if ranked else ", reported, not ranked")
            + "</h3>"
        )
        header = ["Method"] + (["Avg rank"] if ranked else [])
        header += [html_link(f"{prefix}{slug('task', t)}", t) for t in task_ids]
        rows = []
        for key in entries:
            row: list[HtmlCell] = [method_link(lb, key, prefix)]
            row += [esc(avg_text(lb, family, key))] if ranked else []
            row += [html_cell(lb.tasks[t].cells.get(key), metric, ranked) for t in task_ids]
            rows.append(row)
        out.append(_metric_how(metric, d, ranked, unit_column(family)))
        out.append(html_table(header, rows))
    return out


def _family_cost_plot(lb: Leaderboard, family: str, entries: Sequence[EntryKey]) -> list[str]:
    """Fit time vs average rank, for the entries ranked on every task of the family."""
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
    for setting in settings(lb, family):
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
                f"{family}: {setting.title}", ks, series, f"{rank_metric} ({direction_word(direction)})"
            )
        )
    return out


def _not_applicable_section(lb: Leaderboard, family: str, prefix: str) -> list[str]:
    """Methods on the board that do not take the family: shown as not applicable, with the reason."""
    status = ('<span class="muted">not applicable</span>', "text")
    rows = [
        [html_link(prefix + slug("method", name), name), status, (esc(reason), "text")]
        for name, reason in not_applicable(lb, family)
    ]
    if not rows:
        return []
    return [
        f"<h3>Not applicable to family {esc(family)}</h3>",
        how_to_read("methods on this board that do not declare this family, so they have no result here."),
        html_table(["Method", "Status", "Reason"], rows),
    ]


def _family_section(lb: Leaderboard, family: str) -> list[str]:
    """A family's tables, plots (where the records declare the metric's direction) and reported tasks."""
    rank_metric = RANK_METRIC[family]
    direction = lb.directions.get(rank_metric)
    entries = family_entries(lb, family)
    prefix = f"{PAGES}/"
    out = [f'<h2 id="family-{family}">Family {family}: {esc(FAMILY_TITLES[family])}</h2>']
    note = unit_note(family)
    out += [f'<p class="legend">{esc(note)}</p>'] if note else []
    if not direction:
        out.append(f"<p>No record reports the ranking metric <code>{esc(rank_metric)}</code>.</p>")
    out += _family_tables(lb, family, entries, prefix)
    out += _not_applicable_section(lb, family, prefix)
    if direction:
        out += _family_cost_plot(lb, family, entries)
        if family in CURVE_FAMILIES:
            out += _family_curves(lb, family, entries, direction)
    return out + _reported_section(lb, family, prefix)


def _link_list(prefix: str, kind: str, names: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{html_link(prefix + slug(kind, n), n)}</li>" for n in names) + "</ul>"


def _index_lists(lb: Leaderboard, prefix: str) -> list[str]:
    """Left-off runs, skipped records, and the links to every method and task page."""
    body = []
    left_off = [r for r in lb.runs if r.record.status != "ok"]
    if left_off:
        body += [
            '<h2 id="left-off">Runs left off the leaderboard</h2>',
            how_to_read(
                "runs that did not finish ok (failed, over budget, timed out); their seeds are in no mean."
            ),
            left_off_table(lb, left_off, prefix),
        ]
    if lb.skipped:
        body.append('<h2 id="skipped">Invalid records skipped (--skip-invalid)</h2>')
        body.append(how_to_read("record files that failed validation and were left out of every table."))
        rows = [[esc(s.path), (esc(s.reason), "text")] for s in lb.skipped]
        body.append(html_table(["File", "Reason"], rows))
    methods = sorted({r.record.method.name for r in lb.runs})
    if methods:
        body += ['<h2 id="methods">Methods</h2>', _link_list(prefix, "method", methods)]
    tasks = sorted(lb.tasks)
    if tasks:
        body += ['<h2 id="tasks">Tasks</h2>', _link_list(prefix, "task", tasks)]
    return body


def render_index(lb: Leaderboard) -> str:
    """The site's front page."""
    n_ok = sum(r.record.status == "ok" for r in lb.runs)
    body = [
        "<h1>ColdBench leaderboard</h1>",
        f"<p>Built from {len(lb.runs)} run records: {n_ok} ok, {len(lb.runs) - n_ok} left off the leaderboard"
        + (f", {len(lb.skipped)} invalid records skipped" if lb.skipped else "")
        + ".</p>",
        f'<p class="legend">{esc(LEGEND)}</p>',
    ]
    families = [f for f in FAMILY_TITLES if family_task_ids(lb, f) or reported_task_ids(lb, f)]
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
    return html_page("ColdBench leaderboard", body, "")

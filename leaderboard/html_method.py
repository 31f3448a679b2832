"""``pages/method-*.html``: a card per method: summary, package, paper, defaults, tuning, configs, records.

The card reads what the installed method says about itself (summary, TOML defaults) and the committed tuned
files (``leaderboard/tuned``); a method not installed where the site is built gets a note, so the page still
builds from its records alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from leaderboard.aggregate import Leaderboard
from leaderboard.formatting import esc, first_line, one_line, sig, slug
from leaderboard.html_base import HtmlCell, how_to_read, html_cell, html_link, html_page, html_table
from leaderboard.load import EntryKey, Run, run_order


def _paper(paper: str) -> str:
    """A link where the record gives a URL, plain text otherwise (never an unchecked href)."""
    if not paper:
        return '<span class="muted">not given</span>'
    if re.fullmatch(r"https?://[^\s\"'<>]+", paper):
        return html_link(paper, paper)
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
    deviations: tuple[str, ...] = ()  # from the paper and the official code (``cls.deviations``)


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
        return MethodInfo(package=entry.dist, problem=first_line(str(exc)))
    deviations = tuple(str(d) for d in getattr(cls, "deviations", ()))
    return MethodInfo(str(cls.summary), f"{entry.dist} {entry.dist_version}", defaults, "", deviations)


def _method_card(name: str, runs: Sequence[Run], info: MethodInfo) -> list[str]:
    """The card's definition list: what the method is and how many configs and records it has."""
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
    if info.deviations:
        items = "".join(f"<li>{esc(d)}</li>" for d in info.deviations)
        body.append(f"<dt>Deviations from the paper and the official code</dt><dd><ul>{items}</ul></dd>")
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
        f"<h2>Tuning: {esc(n)} configurations per task group, validation users or items, seed 0</h2>",
        how_to_read(
            "one row per task group (tasks sharing training data), scored on its smallest-K task; the "
            "default configuration is the first trial, and the best validation score (−user_mae in family R, "
            "ndcg@10 in L and C on validation cold users; −item_mae in IR, item_ndcg@10 in IL on validation "
            "cold items: higher is better) wins, the earlier trial on a tie. Test users and test cold items "
            "never enter."
        ),
        html_table([esc(h) for h in CARD_HEADER], [[esc(c) for c in row] for row in tuned]),
    ]


def _config_rows(lb: Leaderboard, key: EntryKey) -> list[list[HtmlCell]]:
    """One row per task the config ran on: its ranked metric, rank, seeds and cost."""
    rows: list[list[HtmlCell]] = []
    for task in lb.tasks.values():
        cell = task.cells.get(key) or task.others.get(key)
        if cell is None:
            continue
        iv = cell.metrics.get(task.rank_metric)
        rows.append(
            [
                html_link(slug("task", task.id), task.id),
                esc(task.rank_metric),
                html_cell(cell, task.rank_metric, True) if iv else "–",
                f"{len(cell.ok_runs)}/{len(cell.ok_runs) + len(cell.left_off)}",
                esc(sig(cell.fit_seconds)),
                esc(sig(cell.flops)),
            ]
        )
    return rows


def _entry_title(key: EntryKey) -> str:
    """How the card names an entry: the standard one is what the leaderboard ranks."""
    variant = key[1]
    if not variant:
        return "Standard configuration (ranked): the task group's tuned one where tuned, else the default"
    if variant == "reference":
        return "Configuration <code>reference</code>: as published (reported, not ranked)"
    return f"Configuration <code>{esc(variant)}</code> (reported, not ranked)"


def _entry_configs(runs: Sequence[Run], key: EntryKey) -> list[str]:
    """Each distinct configuration of the entry with the tasks it ran on (tuning may pick one per group)."""
    tasks: dict[str, set[str]] = {}
    configs: dict[str, dict] = {}
    for r in runs:
        if r.entry == key:
            tasks.setdefault(r.record.method.config_hash, set()).add(r.record.task.id)
            configs[r.record.method.config_hash] = r.record.method.config
    body = []
    for digest in sorted(tasks, key=lambda d: sorted(tasks[d])):
        where = esc(", ".join(sorted(tasks[digest])))
        body.append(f"<p>Config <code>{esc(digest[:12])}</code> on {where}:</p>")
        body.append(f"<pre>{esc(json.dumps(configs[digest], indent=2, sort_keys=True))}</pre>")
    return body


def _method_results(lb: Leaderboard, runs: Sequence[Run]) -> list[str]:
    """Per entry of the method: its configurations, then its results on every task."""
    body = []
    for key in sorted({r.entry for r in runs}):
        body.append(f"<h2>{_entry_title(key)}</h2>")
        body += _entry_configs(runs, key)
        rows = _config_rows(lb, key)
        if rows:
            body.append(
                how_to_read(
                    "each task's ranked metric (its direction is on the task page): mean over ok seeds ± "
                    "half-width of the 95% t-interval, then (rank on that task); highlighted: rank 1."
                )
            )
            body.append(
                html_table(["Task", "Metric", "Result (rank)", "Seeds ok", "Fit s", "Train FLOPs"], rows, 2)
            )
    return body


def _provenance_row(r: Run) -> list[HtmlCell]:
    """Where one record came from: code, environment, budget, time and command."""
    rec = r.record
    return [
        html_link(slug("task", rec.task.id), rec.task.id),
        str(rec.seed),
        esc(rec.status),
        f"<code>{esc(rec.method.config_hash[:12])}</code>",
        esc(f"{rec.code.version} {rec.code.commit[:12]}" + (" dirty" if rec.code.dirty else "")),
        esc(f"{rec.env.device}, {rec.env.threads} threads"),
        esc(
            f"python {rec.env.python}, torch {rec.env.torch}, numpy {rec.env.numpy}, pandas {rec.env.pandas}"
        ),
        esc(f"{rec.budget.train_examples_used}/{rec.budget.train_examples_limit}"),
        esc(f"{rec.started_at} → {rec.finished_at}"),
        (f"<code>{esc(one_line(rec.command, 300))}</code>", "text"),
        (esc(first_line(rec.error)) if rec.error else "", "text"),
    ]


def _method_provenance(runs: Sequence[Run]) -> list[str]:
    """Every record of the method with its provenance, then the platforms they ran on."""
    rows = [_provenance_row(r) for r in sorted(runs, key=run_order)]
    header = ["Task", "Seed", "Status", "Config", "Code", "Device", "Environment", "Train examples", "Run"]
    platforms = sorted({f"{r.record.env.platform}; {r.record.env.cpu}" for r in runs})
    return [
        "<h2>Records and provenance</h2>",
        how_to_read("one row per record, by task and seed: the code, environment and budget each run used."),
        html_table([*header, "Command", "Error"], rows),
        "<h3>Platforms</h3>",
        "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in platforms) + "</ul>",
    ]


def render_method(lb: Leaderboard, name: str) -> str:
    """A method's page, covering every config and record of that method name."""
    runs = [r for r in lb.runs if r.record.method.name == name]
    body = _method_card(name, runs, method_info(name))
    body += _method_tuning(name)
    body += _method_results(lb, runs)
    body += _method_provenance(runs)
    return html_page(f"ColdBench method {name}", body, "../")

"""Generate ``LEADERBOARD.md`` and a static results site from run records, and nothing else.

The entry points (``build``, ``load_runs``, ``summarize``, ``render``, ``render_text``) live here; the work is
split over small modules of the ``leaderboard`` package, one stage each:

- ``families``: per family, its title, ranked metric and shown metrics;
- ``load``: reading and validating records and per-user files (``RecordError`` names a refused file);
- ``aggregate``: per-task cells and ranks, per-family average ranks (rules in ``statistics``);
- ``formatting`` and ``views``: number and text formats, and the row orders and marks every renderer shares;
- ``markdown``, ``text``: ``LEADERBOARD.md`` and the terminal view (``coldbench leaderboard show``);
- ``svg``: the inline plots;
- ``html_base``, ``html_index``, ``html_task``, ``html_method``: the site.

A leaderboard entry is a method name with one config hash; a method seen with several configs gets one entry
per config, labelled ``name @hash``.

Output (``out`` folder): ``LEADERBOARD.md``, ``index.html``, ``pages/task-*.html`` (one per task: all metrics,
ranks with paired differences, cost), ``pages/method-*.html`` (a card per method: summary, package, paper,
defaults, equal-budget tuning, configs, records, provenance).

The output is a function of the records, plus what method cards read from the installed methods (summary,
TOML defaults; a method not installed gets a note) and the committed tuned files (``leaderboard/tuned``):
everything is sorted, floats are formatted with fixed digits, no build time or absolute path is written, so
the same inputs give byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leaderboard.aggregate import Leaderboard, summarize
from leaderboard.families import FAMILY_TITLES, RANK_METRIC, TABLE_METRICS
from leaderboard.formatting import md, slug
from leaderboard.html_base import INDEX, PAGES
from leaderboard.html_index import render_index
from leaderboard.html_method import method_info, render_method
from leaderboard.html_task import render_task
from leaderboard.load import BuildError, Run, Skipped, load_runs
from leaderboard.markdown import render_markdown
from leaderboard.text import render_text
from leaderboard.views import ranking_rows
from tasks.cache import write_text_atomic

__all__ = [
    "FAMILY_TITLES",
    "MARKDOWN",
    "RANK_METRIC",
    "TABLE_METRICS",
    "BuildError",
    "BuildResult",
    "Leaderboard",
    "Run",
    "Skipped",
    "build",
    "load_runs",
    "md",
    "method_info",
    "ranking_rows",
    "render",
    "render_text",
    "summarize",
]

MARKDOWN = "LEADERBOARD.md"


def render(lb: Leaderboard) -> dict[str, str]:
    """Every output file as ``relative path -> text``, in sorted order."""
    files = {MARKDOWN: render_markdown(lb), INDEX: render_index(lb)}
    for task in lb.tasks.values():
        files[f"{PAGES}/{slug('task', task.id)}"] = render_task(lb, task)
    for name in sorted({r.record.method.name for r in lb.runs}):
        files[f"{PAGES}/{slug('method', name)}"] = render_method(lb, name)
    return dict(sorted(files.items()))


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote and removed, for the command's one-line report."""

    written: tuple[str, ...]
    removed: tuple[str, ...]
    runs: int
    skipped: tuple[Skipped, ...]


def _stale_pages(out: Path, keep: set[str]) -> list[Path]:
    """Pages of tasks or methods no longer in the records, so a rebuilt site never shows a removed result."""
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

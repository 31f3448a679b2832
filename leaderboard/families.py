"""What the leaderboard knows about each task family: its title, ranked metric, shown metrics and unit.

Kept in one module so that the loader, the aggregation and every renderer read the same declaration.

Ranking metric per family (``RANK_METRIC``): a unit-averaged metric, so that the order of the means and the
paired per-unit tie test measure the same quantity (the record's value is the mean of its per-unit column,
which validation checks). R ranks by ``user_mae`` (MAE per cold user, averaged; lower is better), L and C by
``ndcg@10`` over the full ranking, IR by ``item_mae`` (per cold item) and IL by ``item_ndcg@10``. Pooled
metrics are not unit averages and cannot be paired, so they are shown, not ranked (``TABLE_METRICS``): R's
and IR's ``mae`` over all query ratings (the number papers report) and C's ``sampled_ndcg@10`` (CDRIB's
protocol, 999 stored negatives, averaged over test pairs). Directions always come from the records, never
from these constants.

The unit (``unit_column``, ``unit_noun``) is what a family holds out, its protocol's ``cold``: cold users in
R, L and C, cold items in IR and IL. The per-unit file names it in its ID column (``user`` or ``item``,
as ``benchmark.runner.UNIT_COLUMN`` writes it), the paired bootstrap resamples it, and the pages say it.
"""

from __future__ import annotations

# Declared once per family in ``tasks/protocols.py`` (with the split rule and the selection metric, which is
# the ranked one); these are live views of that registry, so a new family needs no edit here.
from benchmark.protocols import CURVE_FAMILIES, FAMILY_TITLES, RANK_METRIC, TABLE_METRICS, get

__all__ = ["CURVE_FAMILIES", "FAMILY_TITLES", "RANK_METRIC", "TABLE_METRICS", "unit_column", "unit_noun"]

# protocol ``cold`` -> (ID column of the per-unit file, the unit in words, singular and plural)
_UNITS = {"users": ("user", "user", "users"), "items": ("item", "cold item", "cold items")}


def unit_column(family: str) -> str:
    """The per-unit file's ID column of ``family``: ``user``, or ``item`` where it holds out cold items.

    The one place the leaderboard decides it: the loader reads this column, the bootstrap clusters by it.
    """
    return _UNITS[get(family).cold][0]


def unit_noun(family: str, plural: bool = True) -> str:
    """The unit of ``family`` in words (``users`` or ``cold items``), for the text that describes it."""
    names = _UNITS[get(family).cold]
    return names[2] if plural else names[1]

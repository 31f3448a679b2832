"""What the leaderboard knows about each task family: its title, ranked metric and shown metrics.

Kept in one module so that the loader, the aggregation and every renderer read the same declaration.

Ranking metric per family (``RANK_METRIC``): a user-averaged metric, so that the order of the means and the
paired per-user tie test measure the same quantity (the record's value is the mean of its per-user column,
which validation checks). R ranks by ``user_mae`` (MAE per cold user, averaged; lower is better), L and C by
``ndcg@10`` over the full ranking. Pooled metrics are not user averages and cannot be paired, so they are
shown, not ranked (``TABLE_METRICS``): R's ``mae`` over all query ratings (the number papers report) and C's
``sampled_ndcg@10`` (CDRIB's protocol, 999 stored negatives, averaged over test pairs). Directions always
come from the records, never from these constants.
"""

from __future__ import annotations

# Declared once per family in ``tasks/protocols.py`` (with the split rule and the selection metric, which is
# the ranked one); these are live views of that registry, so a new family needs no edit here.
from benchmark.protocols import CURVE_FAMILIES, FAMILY_TITLES, RANK_METRIC, TABLE_METRICS

__all__ = ["CURVE_FAMILIES", "FAMILY_TITLES", "RANK_METRIC", "TABLE_METRICS"]

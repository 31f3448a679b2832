"""Task families as declarations: one frozen ``FamilyProtocol`` per family, kept in one registry.

Why: what a family is (how its tables are cut, what a method predicts, which metric selects and ranks, which
spec fields it takes, what its data set must offer) used to be string compares spread over the builder, the
spec checks, the harness, tuning and the leaderboard. They all read the family's declaration now, so a new
family is one ``register(FamilyProtocol(...))`` plus its split rule, and no other module names a family.

The declarations live in ``tasks``, not ``benchmark``, because the builder (``tasks.artifact``) and the spec
checks (``tasks.spec``) read them and ``tasks`` imports nothing of ``benchmark``. Metric names are plain
strings here; ``benchmark.protocols`` re-exports this module and resolves them to ``benchmark.metrics``
(direction, what each consumes) for the harness, tuning, records and the leaderboard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import pandas as pd

from tasks import filters
from tasks.schema import DataError
from tasks.split import (
    split_item_earliest,
    split_item_ratings,
    split_leave_one_domain_out,
    split_published,
    split_rating_transfer,
)

if TYPE_CHECKING:
    from tasks.catalog import Dataset
    from tasks.spec import TaskSpec

__all__ = [
    "COLD_UNITS",
    "FAMILIES",
    "METHOD_DEFAULT_FAMILIES",
    "NEEDS",
    "PREDICTIONS",
    "PROTOCOLS",
    "READS",
    "FamilyProtocol",
    "Need",
    "SplitRule",
    "get",
    "register",
    "unregister",
]

PREDICTIONS = ("ratings", "ranking")  # what a method returns: ratings of query pairs, or candidate scores
READS = ("rows", "published")  # what a split rule cuts: the task's rows, or a data set's published files
COLD_UNITS = ("users", "items")  # what a family holds out: new users (R, L, C) or new products (IR, IL)


@dataclass(frozen=True)
class Need:
    """Something a family needs from its data set: a test, and the problem stated when it fails."""

    holds: Callable[[Dataset], bool]
    problem: Callable[[Dataset], str]


NEEDS: dict[str, Need] = {
    "explicit": Need(
        lambda d: d.ratings == "explicit", lambda d: f"explicit ratings; data set {d.name!r} is {d.ratings}"
    ),
    "timestamps": Need(lambda d: d.timestamps, lambda d: f"timestamps; data set {d.name!r} has none"),
    "published_split": Need(
        lambda d: d.has_published_split,
        lambda d: f"a published split; data set {d.name!r} (format {d.format!r}) has none",
    ),
}


@dataclass(frozen=True)
class SplitRule:
    """How a family's tables are cut (a function of ``tasks.split``) and what the builder adds around it.

    ``reads = "rows"``: ``cut(rows, spec)`` takes the task's deduplicated rows after its ``[filters]``;
    ``reads = "published"``: ``cut(target_files, source_files, spec)`` takes the data set's own files of
    the target and the (single) source domain, by name (``train``, ``valid``, ``test``). ``negatives``:
    after cleaning, the builder stores ``filters.negatives`` sampled target items per test query pair.
    """

    cut: Callable[..., dict[str, pd.DataFrame]]
    reads: str = "rows"
    negatives: bool = False


@dataclass(frozen=True)
class FamilyProtocol:
    """Everything ColdBench knows about one task family; every reader takes it from here.

    Evaluation: ``prediction`` is what a method returns (``ratings`` of the query pairs or scores of every
    ``ranking`` candidate); ``rank_metric`` ranks the family's leaderboard and is also the validation
    metric of model selection, so that early stopping and tuning optimize what is ranked;
    ``reported_metrics`` are the leaderboard's tables (the rank metric among them); ``curves``: tasks are
    run at several K, so accuracy-vs-K curves are drawn.

    Spec rules (``tasks.spec``): ``one_source`` (exactly one source domain), ``cold_fractions`` (``beta``
    and ``valid_fraction`` required; otherwise refused), the ``[filters]`` keys allowed and required, the
    ``[clean]`` rules allowed, what the data set must offer (``needs``, keys of ``NEEDS``), and ``check``,
    the split rule's own rule between fields (``check(spec, where)`` raises ``DataError``).

    ``cold``: what is held out (``COLD_UNITS``). ``users``: cold users, whose target rows leave train.
    ``items``: cold items (new products), whose every row leaves train; the builder then looks for duplicate
    products over all the task's rows (a cold item has no training row), drops emptied items rather than
    users, and audits cold items (``tasks.audit``). ``default_for_methods``: whether a method that does not
    list its families (``benchmark.api.Method.families``) supports this one; a family whose tasks need a
    method API the existing methods do not implement yet sets it to false (``METHOD_DEFAULT_FAMILIES``).
    """

    name: str
    title: str
    description: str
    split: SplitRule
    prediction: str
    rank_metric: str
    reported_metrics: tuple[str, ...]
    curves: bool = False
    one_source: bool = False
    cold_fractions: bool = True
    filters: tuple[str, ...] = ()
    required_filters: tuple[str, ...] = ()
    clean: tuple[str, ...] = ("duplicates",)
    needs: tuple[str, ...] = ()
    check: Callable[[TaskSpec, str], None] | None = None
    cold: str = "users"
    default_for_methods: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.cold not in COLD_UNITS:
            problems.append(f"cold {self.cold!r} is not one of {COLD_UNITS}")
        if self.prediction not in PREDICTIONS:
            problems.append(f"prediction {self.prediction!r} is not one of {PREDICTIONS}")
        if self.split.reads not in READS:
            problems.append(f"the split reads {self.split.reads!r}, not one of {READS}")
        if self.rank_metric not in self.reported_metrics:
            problems.append(f"the rank metric {self.rank_metric!r} is not among the reported metrics")
        if not set(self.required_filters) <= set(self.filters):
            problems.append(f"required filters {self.required_filters} are not all allowed ({self.filters})")
        if not set(self.needs) <= set(NEEDS):
            problems.append(f"needs {self.needs} are not all known ({sorted(NEEDS)})")
        if self.split.negatives and "negatives" not in self.required_filters:
            problems.append("a split that stores negatives must require filters.negatives")
        if not self.name:
            problems.append("a family needs a name")
        if problems:
            raise ValueError(f"family {self.name!r}: " + "; ".join(problems))

    @property
    def explicit(self) -> bool:
        """Whether methods learn from and predict star ratings (``TrainView.explicit``, the audit's rating
        agreement): the families that predict ratings, which need explicit data sets."""
        return self.prediction == "ratings"


PROTOCOLS: dict[str, FamilyProtocol] = {}


def register(protocol: FamilyProtocol) -> FamilyProtocol:
    """Add a family; a second family of the same name is refused (it would change the first's tasks)."""
    if protocol.name in PROTOCOLS:
        raise ValueError(f"family {protocol.name!r} is already registered")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def unregister(name: str) -> None:
    """Remove a family (a test or a plugin that declared one for a while); the built-in ones stay."""
    if name in _BUILT_IN:
        raise ValueError(f"family {name!r} is built in")
    PROTOCOLS.pop(name, None)


def get(family: str) -> FamilyProtocol:
    """The declaration of ``family``; an unknown name lists the registered ones."""
    try:
        return PROTOCOLS[family]
    except KeyError:
        raise KeyError(f"unknown task family {family!r}; registered: {tuple(PROTOCOLS)}") from None


class _Names(Sequence[str]):
    """The registered family names in registration order (those whose declaration passes ``keep``), read
    live (a family registered later is in it).

    Shown as a tuple, so messages read ``('R', 'L', 'C')``."""

    def __init__(self, keep: Callable[[FamilyProtocol], bool] | None = None) -> None:
        self._keep = keep

    def _names(self) -> tuple[str, ...]:
        if self._keep is None:
            return tuple(PROTOCOLS)
        return tuple(name for name, p in PROTOCOLS.items() if self._keep(p))

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: Any) -> Any:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __eq__(self, other: object) -> bool:
        return self._names() == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(self._names())

    def __repr__(self) -> str:
        return repr(self._names())


FAMILIES: Sequence[str] = _Names()  # the one list of families
# The families a method supports when it does not say (``benchmark.api.Method.families``): every registered
# family but those declared ``default_for_methods=False`` (the cold-item families, whose cold batches the
# existing methods cannot answer yet).
METHOD_DEFAULT_FAMILIES: Sequence[str] = _Names(lambda p: p.default_for_methods)


# ---------------------------------------------------------------- the split rules' own rules between fields


def _support_in_pool(spec: TaskSpec, where: str) -> None:
    """R: support = the first K of a per-user pool, query = the rows after it (K > pool takes query rows)."""
    if spec.k == 0:
        return
    pool = spec.filters.get("pool")
    if pool is None:
        raise DataError(
            f"{where}: missing field 'filters.pool' (family {spec.family} with k = {spec.k} needs a pool)"
        )
    if spec.k > pool:
        raise DataError(
            f"{where}: field 'k' ({spec.k}) must be <= [filters] pool ({pool}): support would take query rows"
        )


def _support_before_query(spec: TaskSpec, where: str) -> None:
    """L: support = the K earliest target rows, query = those from position ``min_target - 1`` on."""
    min_target = spec.filters["min_target"]
    if spec.k >= min_target:
        raise DataError(
            f"{where}: field 'k' ({spec.k}) must be < [filters] min_target ({min_target}): support and query"
            " would overlap"
        )


def _support_in_item_pool(spec: TaskSpec, where: str) -> None:
    """IR, IL: support = the first K of a per-item pool of ``pool`` rows, query = the rows after the pool."""
    pool = spec.filters["pool"]
    if spec.k > pool:
        raise DataError(
            f"{where}: field 'k' ({spec.k}) must be <= [filters] pool ({pool}): support would take query rows"
        )


# ---------------------------------------------------------------- the built-in families

register(
    FamilyProtocol(
        name="R",
        title="Explicit-rating cold-start transfer (repaired PTUPCDR protocol)",
        description=(
            "One source and one target domain with 1-5 star ratings. The overlapping users are shuffled "
            "once: the first beta are test cold users, the last valid_fraction validation users. K=0: the "
            "query is all of a cold user's target ratings; K>0: a seeded pool per user, support = its first "
            "K, query = the ratings after the pool (the same for every K). Ranked by user_mae, lower is "
            "better."
        ),
        split=SplitRule(split_rating_transfer),
        prediction="ratings",
        rank_metric="user_mae",
        reported_metrics=("mae", "user_mae"),
        curves=True,
        one_source=True,
        filters=("pool", *filters.KEYS),
        clean=("duplicates", "history"),
        needs=("explicit",),
        check=_support_in_pool,
    )
)
register(
    FamilyProtocol(
        name="L",
        title="Leave-one-domain-out, implicit feedback",
        description=(
            "One target domain, the others as sources, implicit feedback with timestamps. Users with "
            "min_target target and min_other other interactions are shuffled: the first beta are test cold "
            "users, the last valid_fraction validation users; support = the K earliest target interactions, "
            "query = those from the min_target-th on. Ranked by ndcg@10 over all target items, higher is "
            "better."
        ),
        split=SplitRule(split_leave_one_domain_out),
        prediction="ranking",
        rank_metric="ndcg@10",
        reported_metrics=("ndcg@10",),
        curves=True,
        filters=("min_target", "min_other", *filters.KEYS),
        required_filters=("min_target", "min_other"),
        clean=("duplicates", "history", "time_cut"),
        needs=("timestamps",),
        check=_support_before_query,
    )
)
register(
    FamilyProtocol(
        name="C",
        title="CDRIB's cold-start users (cloth/sport), cleaned, disjoint validation and test users",
        description=(
            "A data set's published split (CDRIB): training = both domains' train files, K=0, test users "
            "scored on their test pairs and validation users on their valid pairs, with negatives sampled "
            "per test pair. Ranked by ndcg@10 over all target items; sampled_ndcg@10 (CDRIB's protocol) is "
            "shown, not ranked."
        ),
        split=SplitRule(split_published, reads="published", negatives=True),
        prediction="ranking",
        rank_metric="ndcg@10",
        reported_metrics=("sampled_ndcg@10", "ndcg@10"),
        one_source=True,
        cold_fractions=False,
        filters=("negatives",),
        required_filters=("negatives",),
        clean=("duplicates", "users"),
        needs=("published_split",),
    )
)
register(
    FamilyProtocol(
        name="IR",
        title="Cold-start items (new products), explicit ratings, K-shot",
        description=(
            "One source and one target domain with 1-5 star ratings; the cold units are target items. Target "
            "items with more than pool ratings are shuffled once: the first beta are test cold items, the "
            "last valid_fraction validation cold items. A seeded pool of pool ratings per cold item; support "
            "= its first K, query = the item's ratings after the pool (the same for every K). Every row of a "
            "cold item leaves train; training = everything else, the source domain included. Ranked by "
            "item_mae (per cold item MAE, averaged over cold items), lower is better."
        ),
        split=SplitRule(split_item_ratings),
        prediction="ratings",
        rank_metric="item_mae",
        reported_metrics=("mae", "item_mae"),
        curves=True,
        one_source=True,
        filters=("pool",),
        required_filters=("pool",),
        needs=("explicit",),
        check=_support_in_item_pool,
        cold="items",
        default_for_methods=False,
    )
)
register(
    FamilyProtocol(
        name="IL",
        title="Cold-start items (new products), implicit feedback with timestamps, K-shot",
        description=(
            "One target domain, the others as sources, implicit feedback with timestamps; the cold units are "
            "target items. Target items with more than pool interactions are shuffled once: the first beta "
            "are test cold items, the last valid_fraction validation cold items. Support = the K earliest "
            "interactions of a cold item, query = its interactions after the pool earliest ones (the same "
            "for every K). Every row of a cold item leaves train. Scored per query pair: the rank of the "
            "cold item among all cold items of the task (test or validation), for the query user; ranked by "
            "item_ndcg@10 (per cold item mean over its query users, averaged over cold items), higher is "
            "better."
        ),
        split=SplitRule(split_item_earliest),
        prediction="ranking",
        rank_metric="item_ndcg@10",
        reported_metrics=("item_ndcg@10",),
        curves=True,
        filters=("pool",),
        required_filters=("pool",),
        needs=("timestamps",),
        check=_support_in_item_pool,
        cold="items",
        default_for_methods=False,
    )
)
_BUILT_IN = frozenset(PROTOCOLS)

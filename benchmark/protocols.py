"""The task families as the harness, tuning, records and the leaderboard read them.

The declarations are ``tasks.protocols`` (re-exported here): they sit in ``tasks`` because the builder and
the spec checks read them and ``tasks`` never imports ``benchmark``. This module adds what needs
``benchmark.metrics``: a family's rank metric as a ``Metric`` (its direction), the validation score (the
rank metric, signed so that higher is better), the inputs its evaluation consumes, the record field type,
and the leaderboard's per-family tables, all read live from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator

from benchmark import metrics
from tasks.protocols import (
    COLD_UNITS,
    FAMILIES,
    METHOD_DEFAULT_FAMILIES,
    NEEDS,
    PREDICTIONS,
    PROTOCOLS,
    READS,
    FamilyProtocol,
    Need,
    SplitRule,
    get,
    register,
    unregister,
)

if TYPE_CHECKING:
    from tasks.spec import TaskSpec

__all__ = [
    "COLD_UNITS",
    "CURVE_FAMILIES",
    "FAMILIES",
    "FAMILY_DESCRIPTIONS",
    "FAMILY_TITLES",
    "METHOD_DEFAULT_FAMILIES",
    "NEEDS",
    "PREDICTIONS",
    "PROTOCOLS",
    "RANK_METRIC",
    "READS",
    "TABLE_METRICS",
    "FamilyName",
    "FamilyProtocol",
    "Need",
    "SplitRule",
    "check",
    "consumed",
    "get",
    "rank_metric",
    "register",
    "selection_label",
    "selection_score",
    "unregister",
]

T = TypeVar("T")


def rank_metric(family: str) -> metrics.Metric:
    """The metric that ranks ``family`` and selects models on its validation users."""
    return metrics.METRICS[get(family).rank_metric]


def selection_score(family: str, pooled: Mapping[str, float]) -> float:
    """The validation score of ``TrainView.validate``: the rank metric, negated when lower is better, so
    that higher is always better (family R: ``-user_mae``; L and C: ``ndcg@10``)."""
    metric = rank_metric(family)
    value = pooled[metric.name]
    return -value if metric.direction == "lower" else value


def selection_label(family: str) -> str:
    """How tuning files name the validation score: the rank metric, with ``-`` when it is negated."""
    metric = rank_metric(family)
    return f"-{metric.name}" if metric.direction == "lower" else metric.name


def consumed(spec: TaskSpec) -> tuple[str, ...]:
    """What the evaluation of ``spec`` computes (``Metric.consumes`` of its metrics and of its family's rank
    metric), in ``metrics.CONSUMES`` order; a metric the family's predictions cannot feed is refused."""
    declared = get(spec.family)
    names = (*spec.metrics, declared.rank_metric)
    unknown = [m for m in names if m not in metrics.METRICS]
    if unknown:
        raise ValueError(f"task {spec.id}: unknown metric(s) {unknown}; known: {sorted(metrics.METRICS)}")
    wrong = [m for m in names if metrics.FED_BY[metrics.METRICS[m].consumes] != declared.prediction]
    if wrong:
        raise ValueError(
            f"task {spec.id}: metric(s) {wrong} cannot be computed from the {declared.prediction} that"
            f" family {spec.family} asks methods for"
        )
    kinds = {metrics.METRICS[m].consumes for m in names}
    return tuple(k for k in metrics.CONSUMES if k in kinds)


def check(protocol: FamilyProtocol) -> None:
    """A declaration's metrics against ``benchmark.metrics``: registered, and fed by its predictions."""
    for name in protocol.reported_metrics:
        if name not in metrics.METRICS:
            raise ValueError(f"family {protocol.name!r}: metric {name!r} is not registered")
        if metrics.FED_BY[metrics.METRICS[name].consumes] != protocol.prediction:
            raise ValueError(
                f"family {protocol.name!r}: {name!r} cannot be computed from {protocol.prediction}"
            )


def _registered(name: str) -> str:
    """Pydantic turns a ValueError (not a KeyError) into a validation error naming the field."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown task family {name!r}; registered: {tuple(PROTOCOLS)}")
    return name


FamilyName = Annotated[str, AfterValidator(_registered)]  # a record's ``task.family``


# ---------------------------------------------------------------- what the leaderboard reads, per family


class _Column(Mapping[str, T]):
    """One field of every registered family, by family name, in registration order; read live, so a
    family registered after import is in it."""

    def __init__(self, read: Callable[[FamilyProtocol], T]) -> None:
        self._read = read

    def __getitem__(self, family: str) -> T:
        return self._read(PROTOCOLS[family])

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(PROTOCOLS))

    def __len__(self) -> int:
        return len(PROTOCOLS)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Where(Sequence[str]):
    """The registered families for which a flag is set, in registration order, read live."""

    def __init__(self, flag: Callable[[FamilyProtocol], bool]) -> None:
        self._flag = flag

    def _names(self) -> tuple[str, ...]:
        return tuple(name for name, p in PROTOCOLS.items() if self._flag(p))

    def __getitem__(self, index: Any) -> Any:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


FAMILY_TITLES: Mapping[str, str] = _Column(lambda p: p.title)
FAMILY_DESCRIPTIONS: Mapping[str, str] = _Column(lambda p: p.description)
RANK_METRIC: Mapping[str, str] = _Column(lambda p: p.rank_metric)
TABLE_METRICS: Mapping[str, tuple[str, ...]] = _Column(lambda p: p.reported_metrics)
CURVE_FAMILIES: Sequence[str] = _Where(lambda p: p.curves)  # run at several K: accuracy-vs-K curves

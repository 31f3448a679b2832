"""Method lookup: the in-repo registry (``methods.REGISTRY``) plus the ``coldbench.methods`` entry points."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points

from methods import REGISTRY

ENTRY_POINT_GROUP = "coldbench.methods"


class RegistryError(LookupError):
    """An unknown, duplicate or broken method registration; the message names it."""


NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


def available() -> dict[str, str]:
    """Every registered method name -> ``module:Class``, sorted by name.

    Names are lower-case letters, digits and ``. _ + -``: they become folder names of run records.
    """
    found = dict(REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if not NAME.match(ep.name):
            raise RegistryError(
                f"entry point {ep.name!r} ({ep.value}): method names must match {NAME.pattern}"
            )
        if ep.name in found:
            raise RegistryError(
                f"method name {ep.name!r} is registered twice: {found[ep.name]} and entry point {ep.value}"
                f" (group {ENTRY_POINT_GROUP})"
            )
        found[ep.name] = ep.value
    return dict(sorted(found.items()))


def load_method(name: str) -> type:
    registry = available()
    if name not in registry:
        raise RegistryError(f"unknown method {name!r}; registered: {', '.join(registry)}")
    target = registry[name]
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"method {name!r}: cannot load {target} ({exc})") from exc
    from benchmark.api import Method  # imports torch: only when a method is actually loaded

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"method {name!r}: {target} is not a benchmark.api.Method subclass")
    return cls

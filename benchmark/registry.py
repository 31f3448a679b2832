"""Method lookup: the in-repo registry (``methods.REGISTRY``) plus the ``coldbench.methods`` entry points.

One bad registration never takes the others down: a duplicate name, a name that cannot be a folder, or a
plugin whose import fails (whatever it raises) is reported by ``methods list`` and by any command that names
it, while every other method keeps working.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path

from methods import REGISTRY

ENTRY_POINT_GROUP = "coldbench.methods"


class RegistryError(LookupError):
    """An unknown, duplicate or broken method registration; the message names it."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


@dataclass(frozen=True)
class Registration:
    """One registered name: where it points, which distribution ships it, and what is wrong with it."""

    name: str
    target: str
    dist: str
    dist_version: str
    problem: str = ""


def _own_version() -> str:
    try:
        return version("coldbench")
    except PackageNotFoundError:
        return "0+unknown"


def registrations() -> dict[str, Registration]:
    """Every registered name (sorted), each with the problem that makes it unusable, if any.

    Names are lower-case letters, digits and ``. _ + -``: they become folder names of run records. A name
    registered twice is unusable (neither registration wins), but only that name.
    """
    own = _own_version()
    found = {name: Registration(name, target, "coldbench", own) for name, target in REGISTRY.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        dist_version = ep.dist.version if ep.dist is not None else "unknown"
        entry = Registration(ep.name, ep.value, dist, dist_version)
        if not NAME.match(ep.name):
            problem = f"entry point {ep.name!r} ({ep.value}): method names must match {NAME.pattern}"
            entry = Registration(ep.name, ep.value, dist, dist_version, problem)
        if ep.name in found:
            first = found[ep.name]
            problem = (
                f"method name {ep.name!r} is registered twice: {first.target} ({first.dist}) and entry point"
                f" {ep.value} ({dist}, group {ENTRY_POINT_GROUP})"
            )
            entry = Registration(ep.name, first.target, first.dist, first.dist_version, problem)
        found[ep.name] = entry
    return dict(sorted(found.items()))


def available() -> dict[str, str]:
    """Every registered method name -> ``module:Class``, sorted by name (broken registrations included)."""
    return {name: entry.target for name, entry in registrations().items()}


def problems() -> dict[str, str]:
    """Registered names that cannot be used, with why (duplicates and bad names; imports are not tried)."""
    return {name: entry.problem for name, entry in registrations().items() if entry.problem}


def registration(name: str) -> Registration:
    """The usable registration of ``name``; a RegistryError naming it when unknown, duplicated or invalid."""
    entries = registrations()
    if name not in entries:
        raise RegistryError(f"unknown method {name!r}; registered: {', '.join(entries)}")
    if entries[name].problem:
        raise RegistryError(entries[name].problem)
    return entries[name]


def load_target(name: str, target: str) -> type:
    """Import ``module:Class``; any failure of the plugin's import becomes a RegistryError naming it."""
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # a plugin may raise anything at import: it costs only its own name
        raise RegistryError(f"method {name!r}: cannot load {target} ({type(exc).__name__}: {exc})") from exc
    from benchmark.api import Method  # imports torch: only when a method is actually loaded

    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise RegistryError(f"method {name!r}: {target} is not a benchmark.api.Method subclass")
    return cls


def load_method(name: str) -> type:
    return load_target(name, registration(name).target)


def package_modules(module: str) -> list[str]:
    """``module`` and the modules of its own top-level package that it imports, transitively, sorted.

    Read from the source (``ast``), so nothing is imported: ``methods.user_knn`` gives itself,
    ``methods.bias_transfer`` and ``methods.knn``. Imports from other packages (``benchmark.api``, torch)
    are not the method's code and are left out.
    """
    package = module.split(".")[0]
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo += [node.module] if node.module.split(".")[0] == package else []
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.split(".")[0] == package]
    return sorted(n for n in seen if _module_file(n) is not None)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


def source_sha256(cls: type) -> str:
    """sha256 over the source of ``cls``'s module and of the modules of its package that it imports
    (``package_modules``): a change to a shared helper (``methods/mf.py``) re-runs every method using it."""
    try:
        names = package_modules(cls.__module__)
        digest = hashlib.sha256()
        for name in names:
            path = _module_file(name)
            if path is None:
                continue
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    except (OSError, SyntaxError, ValueError):
        return "unknown"
    return digest.hexdigest()[:16] if names else "unknown"


@dataclass(frozen=True)
class Provenance:
    """What a run record stores about the method's code, and what bench compares to decide it is current."""

    dist: str
    dist_version: str
    source_sha256: str


def provenance(name: str, target: str, cls: type) -> Provenance:
    """The distribution shipping ``name`` (for ``target``) and the hash of ``cls``'s module source."""
    entry = registrations().get(name)
    if entry is None or entry.target != target:
        return Provenance("coldbench", _own_version(), source_sha256(cls))
    return Provenance(entry.dist, entry.dist_version, source_sha256(cls))

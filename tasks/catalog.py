"""The data sets ColdBench knows, each declared by one TOML file, and ``load``: from files to canonical rows.

A data-set TOML (``tasks/datasets/*.toml``, or ``datasets/*.toml`` of a folder on the search path, see
``tasks.search``) names its reader (``format``, see ``tasks.formats``), its ``folder`` under the data root,
its domains (Amazon category names, with optional aliases) and the files each domain is read from, its ID
rules, and its provenance. Adding a data set is adding such a file and the files' ``SHA256SUMS`` lines; no
Python changes. ``load`` verifies only the files of the domains asked for, so files added to a data root for
a new data set or domain never touch an existing task's checksums or split.

Top-level keys of a data-set TOML (all required unless marked):
  name          equal to the file name stem
  format        a reader of ``tasks.formats.FORMATS``
  folder        the data set's folder under the data root; domain files are relative to it
  ratings       ``explicit`` (1-5 stars) or ``implicit`` (every rating missing)
  timestamps    whether rows carry interaction times (family L needs them)
  raw_item_ids  whether items keep their Amazon IDs (the leak audit can then match them across domains)
  aliases       (optional) other names a task spec may use for the data set
  [ids]         (optional) ``users``: the user-ID rule of the format (``tasks.formats.Format.user_rules``)
  [provenance]  files from GitHub: ``repository`` (owner/name), ``commit`` (40 hex digits), ``path`` (the
                folder inside the repository that ``folder`` copies), optional ``[provenance.files]``
                (folder-relative file -> path in the repository, for files elsewhere in it); files from the
                hub: ``hub`` (repository) and optional ``revision`` (default ``main``). Optional: ``license``.
  [domains.<Category>]  the format's file roles (paths relative to ``folder``), its per-domain keys, and
                optional ``aliases``
  plus the format's own keys (e.g. ``edition`` for ``ratings_csv``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa

from tasks import filters, formats, search
from tasks.cache import cache_key, cached_table, default_cache_dir, store_table
from tasks.checksums import require_verified
from tasks.schema import DataError, canonical, deduplicate, read_toml
from tasks.sources import hub2023

READER_VERSION = 1
DATA_ENV = "COLDBENCH_DATA"
HINT = (
    "The files come with the ColdBench data root (../shared/data/amazon on the project's machines); see its "
    "README.md for provenance, run `coldbench data fetch` to download them, or use the hub reader "
    "(tasks.sources.hub2023) with internet access"
)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
CATEGORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
COMMIT = re.compile(r"[0-9a-f]{40}")
RATINGS = ("explicit", "implicit")
TOP_KEYS = ("name", "format", "folder", "ratings", "timestamps", "raw_item_ids", "aliases", "ids")
GITHUB_KEYS = ("repository", "commit", "path", "files", "license")
HUB_KEYS = ("hub", "revision", "license")


@dataclass(frozen=True)
class Dataset:
    """A data set: its domains, the files it reads (relative to the data root) and its reader.

    ``read(root)`` returns every domain's rows; a declared data set's reader also takes the domains wanted,
    ``read(root, domains)``, and then reads only their files (``files_of``).
    """

    name: str
    domains: tuple[str, ...]
    files: tuple[str, ...]
    read: Callable[..., pd.DataFrame | pa.Table]
    raw_item_ids: bool = True
    format: str = ""
    folder: str = ""
    domain_files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> domain
    ratings: str = "explicit"
    timestamps: bool = True
    provenance: dict[str, Any] = field(default_factory=dict)
    origin: str = ""  # the TOML file it was declared in
    declared: tuple[formats.Domain, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def files_of(self, domains: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """The files (relative to the data root) that ``domains`` are read from."""
        if not self.domain_files:
            return self.files
        return tuple(dict.fromkeys(f for d in domains for f in self.domain_files[d]))

    def domain(self, name: str) -> str | None:
        """The domain ``name`` or an alias of it stands for, or None."""
        return name if name in self.domains else self.aliases.get(name)

    @property
    def fmt(self) -> formats.Format | None:
        return formats.FORMATS.get(self.format)

    @property
    def remote(self) -> bool:
        return bool(self.fmt and self.fmt.remote)

    @property
    def has_published_split(self) -> bool:
        return bool(self.fmt and self.fmt.split)

    def domain_decl(self, name: str) -> formats.Domain:
        return next(d for d in self.declared if d.name == name)


# ---------------------------------------------------------------- declarations


def _need(table: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise DataError(f"{where}: missing field {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DataError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _unknown(table: dict, known: tuple[str, ...] | set[str], where: str) -> None:
    extra = sorted(set(table) - set(known))
    if extra:
        raise DataError(f"{where}: unknown field(s) {extra}; known: {sorted(known)}")


def _relative(value: Any, where: str, key: str) -> str:
    """A path that stays inside the folder it is relative to (never hash or fetch beyond the data root)."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty relative path")
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value:
        raise DataError(f"{where}: field {key!r} ({value!r}) must be a relative path without '..'")
    return pure.as_posix()


def _names(value: Any, where: str, key: str, pattern: re.Pattern) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
        raise DataError(f"{where}: field {key!r} must be a list of names ({pattern.pattern})")
    return tuple(value)


def _provenance(table: Any, fmt: formats.Format, where: str) -> dict[str, Any]:
    where = f"{where} [provenance]"
    if not isinstance(table, dict):
        raise DataError(f"{where}: must be a table")
    if fmt.remote:
        _unknown(table, HUB_KEYS, where)
        _need(table, "hub", str, where)
        out = {"revision": hub2023.DEFAULT_REVISION, **table}
        _need(out, "revision", str, where)
        return out
    _unknown(table, GITHUB_KEYS, where)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", _need(table, "repository", str, where)):
        raise DataError(f"{where}: field 'repository' must be owner/name")
    if not COMMIT.fullmatch(_need(table, "commit", str, where)):
        raise DataError(f"{where}: field 'commit' must be a full 40-digit commit hash")
    _relative(_need(table, "path", str, where), where, "path")
    files = table.get("files", {})
    if not isinstance(files, dict):
        raise DataError(f"{where}: [provenance.files] must be a table")
    for local, remote in files.items():
        _relative(local, where, "files")
        _relative(remote, where, f"files.{local}")
    return dict(table)


def _domain(name: str, table: Any, fmt: formats.Format, where: str) -> formats.Domain:
    where = f"{where} [domains.{name}]"
    if not CATEGORY.fullmatch(name):
        raise DataError(f"{where}: a domain is an Amazon category name (letters, digits, _)")
    if not isinstance(table, dict):
        raise DataError(f"{where}: must be a table")
    _unknown(table, {*fmt.roles, *fmt.domain_keys, "aliases"}, where)
    files = {role: _relative(_need(table, role, str, where), where, role) for role in fmt.roles}
    options = {key: _need(table, key, kind, where) for key, kind in fmt.domain_keys.items()}
    aliases = _names(table.get("aliases", []), where, "aliases", CATEGORY)
    return formats.Domain(name, files, options, aliases)


def _aliases(declared: list[formats.Domain], where: str) -> dict[str, str]:
    names = {d.name for d in declared}
    out: dict[str, str] = {}
    for d in declared:
        for alias in d.aliases:
            if alias in names or alias in out:
                raise DataError(f"{where}: alias {alias!r} of domain {d.name!r} names another domain too")
            out[alias] = d.name
    return out


def _check_format_rules(fmt_name: str, declared: list[formats.Domain], where: str) -> None:
    if fmt_name != "abxi":
        return
    seen: dict[tuple[str, int], str] = {}
    for d in declared:
        key = (d.files["sequences"], d.options["index"])
        if d.options["index"] < 0 or key in seen:
            raise DataError(f"{where}: domain {d.name!r} has index {d.options['index']} of {key[0]} twice")
        seen[key] = d.name


def parse_dataset(data: dict[str, Any], where: str) -> Dataset:
    """Validate a data-set declaration; every problem names the file and the field."""
    fmt_name = _need(data, "format", str, where)
    fmt = formats.get_format(fmt_name, where)
    _unknown(data, {*TOP_KEYS, "provenance", "domains", *fmt.dataset_keys}, where)
    name = _need(data, "name", str, where)
    if not NAME.fullmatch(name):
        raise DataError(f"{where}: field 'name' ({name!r}) may hold letters, digits, '.', '_', '-' only")
    folder = _relative(_need(data, "folder", str, where), where, "folder")
    ratings = _need(data, "ratings", str, where)
    if ratings not in RATINGS:
        raise DataError(f"{where}: field 'ratings' must be one of {RATINGS}, got {ratings!r}")
    options: dict[str, Any] = {}
    for key, allowed in fmt.dataset_keys.items():
        options[key] = _need(data, key, str, where)
        if options[key] not in allowed:
            raise DataError(f"{where}: field {key!r} must be one of {allowed}, got {options[key]!r}")
    ids = data.get("ids", {})
    if not isinstance(ids, dict):
        raise DataError(f"{where}: [ids] must be a table")
    _unknown(ids, ("users",), f"{where} [ids]")
    users = ids.get("users", fmt.user_rules[0])
    if users not in fmt.user_rules:
        raise DataError(f"{where}: [ids] users must be one of {fmt.user_rules} for format {fmt_name!r}")
    options["ids"] = {"users": users}
    options["aliases"] = _names(data.get("aliases", []), where, "aliases", NAME)
    domains = _need(data, "domains", dict, where)
    if not domains:
        raise DataError(f"{where}: [domains] declares no domain")
    declared = [_domain(n, t, fmt, where) for n, t in domains.items()]
    _check_format_rules(fmt_name, declared, where)
    domain_files = {d.name: tuple(f"{folder}/{p}" for p in d.files.values()) for d in declared}
    return Dataset(
        name=name,
        domains=tuple(d.name for d in declared),
        files=tuple(dict.fromkeys(f for fs in domain_files.values() for f in fs)),
        read=DeclaredReader(name, fmt_name, folder, tuple(declared), options),
        raw_item_ids=_need(data, "raw_item_ids", bool, where),
        format=fmt_name,
        folder=folder,
        domain_files=domain_files,
        aliases=_aliases(declared, where),
        ratings=ratings,
        timestamps=_need(data, "timestamps", bool, where),
        provenance=_provenance(_need(data, "provenance", dict, where), fmt, where),
        origin=where,
        declared=tuple(declared),
        options=options,
    )


@dataclass(frozen=True)
class DeclaredReader:
    """``read(root[, domains])`` of a declared data set: resolve its files under ``root``, run the format."""

    name: str
    format: str
    folder: str
    declared: tuple[formats.Domain, ...]
    options: dict[str, Any]

    def __call__(self, root: Path, domains: tuple[str, ...] | None = None) -> pd.DataFrame | pa.Table:
        wanted = [d for d in self.declared if domains is None or d.name in domains]
        paths = {d.name: {r: str(root / self.folder / p) for r, p in d.files.items()} for d in wanted}
        return formats.FORMATS[self.format].read(paths, wanted, list(self.declared), self.options)


def load_dataset_file(path: Path) -> Dataset:
    data = read_toml(path, "data-set declaration")
    dataset = parse_dataset(data, str(path))
    if dataset.name != path.stem:
        raise DataError(f"{path}: name {dataset.name!r} differs from the file name")
    return dataset


@dataclass(frozen=True)
class Found:
    """Every data set on the search path, by name, with the files that could not be used and why."""

    datasets: dict[str, Dataset]
    names: dict[str, str]  # name or alias -> name
    errors: dict[str, str]  # declaration file -> problem
    bad: dict[str, str]  # name (file stem) of a declaration that failed -> problem

    def get(self, name: str) -> Dataset:
        if name in self.names:
            return self.datasets[self.names[name]]
        if name in self.bad:
            raise DataError(self.bad[name])
        raise DataError(f"unknown data set {name!r}; known: {sorted(self.datasets)}")


def _scan(folder: Path) -> tuple[dict[str, Dataset], dict[str, str]]:
    found, errors = {}, {}
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            found[path.stem] = load_dataset_file(path)
        except DataError as exc:
            errors[str(path)] = str(exc)
    return found, errors


DATASETS, PACKAGE_ERRORS = _scan(search.PACKAGE_DATASETS)


def registry() -> Found:
    """The package's data sets (``DATASETS``, which tests may patch) and those of the search path."""
    datasets = dict(DATASETS)
    errors = dict(PACKAGE_ERRORS)
    names = {n: n for n in datasets}
    for d in datasets.values():
        names.update({a: d.name for a in d.options.get("aliases", ())})
    bad = {Path(p).stem: e for p, e in errors.items()}
    for entry in search.search_path()[1:]:
        scanned, failed = _scan(entry.datasets)
        errors.update(failed)
        bad.update({Path(p).stem: e for p, e in failed.items()})
        for stem, dataset in scanned.items():
            problem = _clash(dataset, names, datasets)
            if problem:
                errors[dataset.origin] = problem
                continue
            datasets[stem] = dataset
            names.update({n: stem for n in (stem, *dataset.options.get("aliases", ()))})
    return Found(datasets, names, errors, bad)


def _clash(dataset: Dataset, names: dict[str, str], datasets: dict[str, Dataset]) -> str:
    for name in (dataset.name, *dataset.options.get("aliases", ())):
        if name in names:
            other = datasets[names[name]].origin or "the package"
            return f"{dataset.origin}: data set name {name!r} is already declared by {other}"
    return ""


def get_dataset(name: str) -> Dataset:
    return registry().get(name)


# ---------------------------------------------------------------- data root and loading


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """``--data-dir``, else ``$COLDBENCH_DATA``; one clear error when neither is set."""
    chosen = data_dir or os.environ.get(DATA_ENV)
    if not chosen:
        raise DataError(f"no data root: pass --data-dir or set {DATA_ENV}. {HINT}")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: data root is not a directory. {HINT}")
    return path


@dataclass(frozen=True)
class Loaded:
    dataset: str
    table: pd.DataFrame
    checksums: dict[str, str]
    duplicate_rows_removed: dict[str, int]
    hub: dict[str, Any] | None = None  # hub data sets: where each file came from, the revision asked/resolved


def _wanted(dataset: Dataset, domains: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if domains is None:
        return dataset.domains
    unknown = [d for d in domains if d not in dataset.domains]
    if unknown:
        raise DataError(
            f"data set {dataset.name!r} has no domain(s) {unknown}; it has {list(dataset.domains)}"
        )
    return tuple(d for d in dataset.domains if d in domains)


def load(
    name: str,
    data_dir: Path,
    cache_dir: Path | None = None,
    domains: tuple[str, ...] | list[str] | None = None,
) -> Loaded:
    """Verified, deduplicated canonical interactions of data set ``name`` (its ``domains``, default all)."""
    dataset = get_dataset(name)
    if dataset.remote:
        wanted = _wanted(dataset, domains)
        raw, sums, record = read_hub(dataset, data_dir, wanted)
        table, removed, _ = filters.reduce(raw, wanted)
        return Loaded(dataset.name, deduplicate(canonical(table.to_pandas())).table, sums, removed, record)
    wanted = _wanted(dataset, domains)
    everything = wanted == dataset.domains
    sums = require_verified(data_dir, list(dataset.files_of(wanted)), HINT)
    cache_dir = cache_dir or default_cache_dir() / "tables"
    parts: dict[str, Any] = {"dataset": dataset.name, "files": sums, "reader_version": READER_VERSION}
    if not everything:
        parts["domains"] = list(wanted)
    key = cache_key(parts)
    hit = cached_table(cache_dir, key, "duplicate_rows_removed")
    if hit is not None:
        return Loaded(dataset.name, hit[0], sums, hit[1])
    raw = dataset.read(data_dir) if everything else dataset.read(data_dir, wanted)
    removed: dict[str, int] = {}
    tables = []
    for domain in wanted:
        dedup = deduplicate(raw[raw["domain"] == domain])
        removed[domain] = dedup.rows_removed
        tables.append(dedup.table)
    table = pd.concat(tables, ignore_index=True)
    store_table(cache_dir, key, table, "duplicate_rows_removed", removed)
    return Loaded(dataset.name, table, sums, removed)


def published_split(dataset: Dataset, data_dir: Path, domain: str) -> tuple[dict[str, pd.DataFrame], dict]:
    """A data set's own train/valid/test of one domain (family C) and the checksums of the files read."""
    fmt = dataset.fmt
    if fmt is None or fmt.split is None:
        raise DataError(f"data set {dataset.name!r} (format {dataset.format!r}) has no published split")
    decl = dataset.domain_decl(domain)
    rels = {role: f"{dataset.folder}/{decl.files[role]}" for role in fmt.split_roles}
    sums = require_verified(data_dir, list(rels.values()), HINT)
    files = {role: str(data_dir / rel) for role, rel in rels.items()}
    return fmt.split(files, decl, dataset.options.get("ids", {})), sums


# ---------------------------------------------------------------- the hub, column-wise


def hub_sources(
    dataset: Dataset, data_dir: Path | None, wanted: tuple[str, ...], revision: str | None = None
) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, Any]]:
    """Where each wanted domain's file is read from: the local mirror when present, else the hub.

    Returns (paths for the reader, checksums of the mirror files, the manifest's ``hub`` record). The hub's
    revision is resolved once, so that every category of a task comes from the one recorded commit.
    """
    repository = dataset.provenance["hub"]
    requested = revision or dataset.provenance.get("revision", hub2023.DEFAULT_REVISION)
    mirror, remote = {}, {}
    for d in dataset.declared:
        if d.name in wanted:
            rel = f"{dataset.folder}/{d.files['file']}"
            if data_dir is not None and (data_dir / rel).is_file():
                mirror[d.name] = rel
            else:
                remote[d.name] = d.files["file"]
    sums = require_verified(data_dir, list(mirror.values()), HINT) if mirror and data_dir else {}
    resolved = hub2023.resolve_revision(requested, repository) if remote else None
    paths = {d: {"file": str(data_dir / rel)} for d, rel in mirror.items()} if data_dir else {}
    for d, path in remote.items():
        paths[d] = {"file": hub2023.file_url(path, resolved or requested, repository)}
    record = {
        "repository": repository,
        "requested_revision": requested,
        "resolved_revision": resolved,
        "files": {d: ("mirror" if d in mirror else "hub") for d in wanted},
    }
    if resolved is None:
        record["note"] = (
            "no commit recorded: every file came from the local mirror"
            if not remote
            else "no commit recorded: the hub could not be asked (offline)"
        )
    return paths, sums, record


def read_hub(
    dataset: Dataset, data_dir: Path | None, wanted: tuple[str, ...], revision: str | None = None
) -> tuple[pa.Table, dict[str, str], dict[str, Any]]:
    """A hub data set's rows of ``wanted`` as one canonical Arrow table (duplicates kept, no pandas).

    Returns the rows, the checksums of the mirror files read, and the manifest's ``hub`` record.
    """
    paths, sums, record = hub_sources(dataset, data_dir, wanted, revision)
    decls = [dataset.domain_decl(d) for d in wanted]
    options = {**dataset.options, "hf_cache": default_cache_dir() / "datasets"}  # Arrow files of `datasets`
    table = formats.FORMATS[dataset.format].read(paths, decls, list(dataset.declared), options)
    return table, sums, record

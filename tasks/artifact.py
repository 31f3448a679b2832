"""Split artifacts: ``<out>/<task_id>/`` with Parquet tables and a ``manifest.json``, immutable and verified.

The manifest holds the spec, counts, source checksums, builder version, ``files`` (name -> sha256 of the
bytes, checked on every load) and ``content`` (name -> sha256 of the rows in a canonical serialization that
does not depend on the Parquet writer). ``split_hash`` is the sha256 over the task id and the content
digests: the same split gives the same hash on any machine and library version. Provenance beside them:
``dataset`` (the declaration: name, format, file, provenance), ``filters`` (rows, users and items before and
after a spec's hub-scale filters) and, for hub data, ``hub`` (the revision asked for and the commit the hub
resolved, null when it could not be asked, and whether each category came from the hub or a local mirror).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import audit, catalog, filters, protocols, search
from tasks.cache import default_cache_dir, write_json_atomic
from tasks.checksums import require_verified, sha256_file
from tasks.schema import ARROW_SCHEMA, COLUMNS, DataError, canonical
from tasks.spec import TaskSpec
from tasks.split import (
    POOL,
    TABLES,
    cut_global_time,
    cut_history_at_first_query,
    drop_duplicate_queries,
    sample_negatives,
    sort_rows,
)

BUILDER_VERSION = 4  # 4: the pool table (tasks.split.POOL) and its items in counts.target_items
MANIFEST = "manifest.json"
NEGATIVES_SCHEMA = pa.schema(
    [("user", pa.string()), ("item", pa.string()), ("negatives", pa.list_(pa.string()))]
)


def default_task_dir() -> Path:
    return default_cache_dir() / "tasks"


def content_digest(frame: pd.DataFrame) -> str:
    """sha256 of the rows, column by column, in a serialization fixed by this function alone."""
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(f"\x00{name}\x00".encode())
        if name == "negatives":
            digest.update("\n".join(" ".join(v) for v in column).encode())
        elif name in ("rating",):
            values = column.to_numpy(dtype=np.float64).copy()
            values[np.isnan(values)] = np.nan  # one NaN bit pattern
            digest.update(values.astype("<f8").tobytes())
        elif name == "ts":
            digest.update(column.fillna(-1).to_numpy(dtype=np.int64).astype("<i8").tobytes())
        else:
            digest.update("\n".join(column.astype(str).tolist()).encode())
    return digest.hexdigest()


def split_hash(task_id: str, content: dict[str, str]) -> str:
    text = json.dumps({"task": task_id, "content": content}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Built:
    """What the builder derives from the sources before writing: tables and the manifest's provenance."""

    tables: dict[str, pd.DataFrame]
    checksums: dict[str, str]
    duplicate_rows_removed: dict
    audit: dict
    cleaning: dict
    sources: dict = field(default_factory=dict)  # data set, filters, hub revision (manifest extras)


@dataclass(frozen=True)
class Rows:
    """The canonical rows a split reads, with where they came from."""

    table: pd.DataFrame
    checksums: dict[str, str]
    duplicate_rows_removed: dict
    sources: dict


def dataset_record(dataset: catalog.Dataset) -> dict:
    """The manifest's ``dataset``: the declaration a task was built from (name, format, provenance)."""
    return {
        "name": dataset.name,
        "format": dataset.format,
        "declared_in": _declared_in(dataset.origin),
        "provenance": dataset.provenance,
    }


def _declared_in(origin: str) -> str:
    path = Path(origin) if origin else None
    if path is not None and path.parent.resolve() == search.PACKAGE_DATASETS.resolve():
        return f"tasks/datasets/{path.name}"
    return origin


def task_rows(spec: TaskSpec, data_dir: Path, revision: str | None = None) -> Rows:
    """The deduplicated rows of the task's domains after its ``[filters]`` (split rules that read rows).

    Hub data stays in Arrow and integer codes through deduplication and filtering (``tasks.filters``), so
    only the rows the task keeps become a pandas table; local data sets come from the cached canonical table
    of their domains.
    """
    dataset = catalog.get_dataset(spec.dataset)
    sources: dict = {"dataset": dataset_record(dataset)}
    if dataset.remote:
        raw, sums, sources["hub"] = catalog.read_hub(dataset, data_dir, spec.domains(), revision)
        arrow, removed, report = filters.reduce(raw, spec.domains(), spec)
    else:
        loaded = catalog.load(dataset.name, data_dir, domains=spec.domains())
        if not filters.declared(spec):
            return Rows(loaded.table, loaded.checksums, loaded.duplicate_rows_removed, sources)
        table = pa.Table.from_pandas(loaded.table, schema=ARROW_SCHEMA, preserve_index=False)
        arrow, _, report = filters.reduce(table, spec.domains(), spec)
        sums, removed = loaded.checksums, loaded.duplicate_rows_removed
    if report is not None:
        sources["filters"] = report
    return Rows(canonical(arrow.to_pandas()), sums, removed, sources)


def _cut_rows(
    rule: protocols.SplitRule, spec: TaskSpec, data_dir: Path, revision: str | None
) -> tuple[dict[str, pd.DataFrame], Rows]:
    """A rule that reads rows: the task's rows after its ``[filters]``, cut by the rule."""
    rows = task_rows(spec, data_dir, revision)
    return rule.cut(rows.table, spec), rows


def _cut_published(
    rule: protocols.SplitRule, spec: TaskSpec, data_dir: Path, revision: str | None
) -> tuple[dict[str, pd.DataFrame], Rows]:
    """A rule that reads a published split: the target's and the source's own files; the rows recorded
    (and later searched for negatives' positives) are the target's files."""
    dataset = catalog.get_dataset(spec.dataset)
    target, sums = catalog.published_split(dataset, data_dir, spec.target)
    source, more = catalog.published_split(dataset, data_dir, spec.source[0])
    rows = Rows(pd.concat(list(target.values())), sums | more, {}, {"dataset": dataset_record(dataset)})
    return rule.cut(target, source, spec), rows


_READERS = {"rows": _cut_rows, "published": _cut_published}  # keyed by ``SplitRule.reads``


def _split(
    spec: TaskSpec, data_dir: Path, revision: str | None = None
) -> tuple[dict[str, pd.DataFrame], Rows]:
    """The family's split rule's tables and the rows they came from."""
    rule = protocols.get(spec.family).split
    return _READERS[rule.reads](rule, spec, data_dir, revision)


def clean(
    tables: dict[str, pd.DataFrame], spec: TaskSpec, raw_item_ids: bool, rows: pd.DataFrame | None = None
) -> tuple[dict[str, pd.DataFrame], dict, dict]:
    """Apply the spec's protocol v2 cleaning rules, then audit the result; returns (tables, audit, counts).

    Order: the time rules (L) first, since they change the training rows the duplicate detector reads; then
    the duplicate pairs are found on the final training rows and the query pairs they touch are dropped,
    then the cold units (users, or items) left with no query. In the cold-item families a cold item has no
    training row, so the pairs are found on ``rows``, every row of the task's domains that the split read
    (the same for every K: a pool row outside a K-shot support is still a review of the product).
    """
    counts: dict = {}
    if spec.rule("time_cut") == "global":
        tables, removed = cut_global_time(tables, spec.clean["time_quantile"])
        counts |= removed
    if spec.rule("history") == "before-first-query":
        tables, removed = cut_history_at_first_query(tables, spec)
        counts |= removed
    declared = protocols.get(spec.family)
    params = audit.AuditParams(spec.audit["jaccard"], int(spec.audit["min_co"]))
    if declared.cold == "items" and rows is not None:
        rows = rows[rows["domain"].isin(spec.domains())]
    rows = audit.detection_rows(tables, declared.cold, rows)
    pairs = audit.duplicate_pairs(rows, spec.source, spec.target, params, raw_item_ids)
    if spec.rule("duplicates") == "drop-query":
        touched = {
            name: audit.touched_rows(tables[name], tables["train"], pairs, spec.source)
            for name in audit.QUERY_TABLES
        }
        tables, removed = drop_duplicate_queries(tables, touched, audit.UNIT[declared.cold])
        counts |= removed
    tables = {name: sort_rows(t) for name, t in tables.items()}
    report = audit.audit(
        tables, spec.source, spec.target, params, raw_item_ids, declared.explicit, pairs, declared.cold, rows
    )
    return tables, report, counts


def make_tables(spec: TaskSpec, data_dir: Path, revision: str | None = None) -> Built:
    """The task's tables with their audit and provenance (no files written); a rule that stores negatives
    samples them last, from the cleaned query pairs."""
    tables, rows = _split(spec, data_dir, revision)
    tables, report, counts = clean(tables, spec, catalog.get_dataset(spec.dataset).raw_item_ids, rows.table)
    if protocols.get(spec.family).split.negatives:
        target_rows = rows.table[rows.table["domain"] == spec.target]
        items = pd.concat([t[t["domain"] == spec.target]["item"] for n, t in tables.items() if n in TABLES])
        tables["negatives"] = sample_negatives(tables["query"], items.unique(), target_rows, spec)
    return Built(tables, rows.checksums, rows.duplicate_rows_removed, report, counts, rows.sources)


def counts_of(tables: dict[str, pd.DataFrame], spec: TaskSpec) -> dict[str, int]:
    """Counts recorded in the manifest (a test re-derives them from the tables)."""
    train = tables["train"]
    target_items = pd.concat(  # the task's item universe, the pool's items included
        [t[t["domain"] == spec.target]["item"] for n, t in tables.items() if n in (*TABLES, POOL)]
    )
    out = {f"{name}_rows": len(tables[name]) for name in TABLES}
    out |= {
        "train_users": int(train["user"].nunique()),
        "test_users": int(pd.concat([tables["support"]["user"], tables["query"]["user"]]).nunique()),
        "valid_users": int(
            pd.concat([tables["valid_support"]["user"], tables["valid_query"]["user"]]).nunique()
        ),
        "target_items": int(target_items.nunique()),
    }
    if protocols.get(spec.family).cold == "items":
        for query, support in audit.QUERY_TABLES.items():
            items = pd.concat([tables[support]["item"], tables[query]["item"]])
            out[f"{'test' if query == 'query' else 'valid'}_cold_items"] = int(items.nunique())
    if POOL in tables:
        out["pool_rows"] = len(tables[POOL])
    if "negatives" in tables:
        out["negatives_rows"] = len(tables["negatives"])
    return out


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    schema = NEGATIVES_SCHEMA if "negatives" in frame.columns else ARROW_SCHEMA
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def source_state(spec: TaskSpec, data_dir: Path, revision: str | None = None) -> tuple[dict, dict | None]:
    """What the task's sources are now: checksums of the local files it reads, and the hub record if any.

    Only the files of the task's own domains are verified, so files added to the data root for other data
    sets or domains never change whether an existing artifact is current.
    """
    dataset = catalog.get_dataset(spec.dataset)
    if dataset.remote:
        _, sums, record = catalog.hub_sources(dataset, data_dir, spec.domains(), revision)
        return sums, record
    return require_verified(data_dir, list(dataset.files_of(spec.domains())), catalog.HINT), None


def _current(manifest: dict | None, spec: TaskSpec, data_dir: Path, revision: str | None) -> bool:
    """Whether an existing, verified artifact was built from this spec, builder and these sources."""
    if (
        manifest is None
        or manifest["spec"] != spec.to_dict()
        or manifest["builder_version"] != BUILDER_VERSION
    ):
        return False
    sums, hub = source_state(spec, data_dir, revision)
    if manifest["source_checksums"] != sums:
        return False
    if hub is None:
        return True
    built = manifest.get("hub") or {}
    if hub["resolved_revision"] is None:  # the hub cannot be asked now: trust what was asked for then
        return (
            built.get("requested_revision") == hub["requested_revision"]
            and built.get("files") == hub["files"]
        )
    return built.get("resolved_revision") == hub["resolved_revision"] and built.get("files") == hub["files"]


def build(
    spec: TaskSpec, data_dir: Path, out: Path, force: bool = False, revision: str | None = None
) -> dict:
    """Build (or reuse) the artifact of ``spec`` under ``out``; returns its manifest.

    An existing artifact is reused when it verifies and was built from the same spec, sources and builder
    version. Files are written to a temporary folder that is renamed into place at the end, so a killed
    build leaves no half-written artifact. ``revision`` pins the hub commit of a hub data set.
    """
    folder = out / spec.id
    if folder.exists() and not force:
        try:
            manifest = verify(folder)
        except DataError:
            manifest = None
        if _current(manifest, spec, data_dir, revision):
            return manifest  # type: ignore[return-value]
    built = make_tables(spec, data_dir, revision)
    tables = built.tables
    tmp = out / f".{spec.id}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files, content = {}, {}
    for name, frame in sorted(tables.items()):
        path = tmp / f"{name}.parquet"
        _write_table(frame, path)
        files[path.name] = sha256_file(path)
        content[name] = content_digest(frame)
    manifest = {
        "task_id": spec.id,
        "spec": spec.to_dict(),
        "builder_version": BUILDER_VERSION,
        "source_checksums": built.checksums,
        "duplicate_rows_removed": built.duplicate_rows_removed,
        "counts": counts_of(tables, spec),
        "cleaning": built.cleaning,
        "audit": built.audit,
        "files": files,
        "content": content,
        "split_hash": split_hash(spec.id, content),
        **built.sources,
    }
    write_json_atomic(manifest, tmp / MANIFEST)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return manifest


def verify(folder: Path) -> dict:
    """Check every file of an artifact against its manifest; return the manifest or raise DataError."""
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest; build the task with `coldbench tasks build`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable manifest ({exc}); rebuild with --force") from exc
    for name, expected in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise DataError(f"{file}: missing from the artifact; rebuild with --force")
        if sha256_file(file) != expected:
            raise DataError(
                f"{file}: sha256 differs from {path}; the artifact was modified, rebuild with --force"
            )
    if split_hash(manifest["task_id"], manifest["content"]) != manifest["split_hash"]:
        raise DataError(f"{path}: split_hash does not match its content digests; rebuild with --force")
    return manifest


@dataclass(frozen=True)
class TaskData:
    """A loaded, verified artifact."""

    manifest: dict
    tables: dict[str, pd.DataFrame]

    @property
    def split_hash(self) -> str:
        return self.manifest["split_hash"]


def load(folder: Path) -> TaskData:
    manifest = verify(folder)
    tables = {}
    for name in manifest["files"]:
        frame = pq.read_table(folder / name).to_pandas()
        key = name.removesuffix(".parquet")
        tables[key] = frame if key == "negatives" else canonical(frame[list(COLUMNS)])
    return TaskData(manifest, tables)

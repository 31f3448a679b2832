"""Download a data set's missing files from its declared provenance, verified before they are kept.

Each file's URL is built from the declaration alone: ``<base>/<repository>/<commit>/<path in repository>``
(``raw.githubusercontent.com`` by default). The expected checksum comes from the ``SHA256SUMS`` shipped next
to the declaration (``tasks/datasets/SHA256SUMS`` for the package), never from the download itself. A file
is written to a temporary name beside its place and renamed only once its sha256 matches, so a failed or
interrupted download leaves nothing behind; the data root's ``SHA256SUMS`` then gains the fetched files'
lines (rewritten atomically), so ``coldbench data verify`` and every build check them as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tasks.cache import tmp_name, write_text_atomic
from tasks.catalog import Dataset
from tasks.checksums import SUMS_FILE, read_sums, sha256_file
from tasks.schema import DataError

RAW_GITHUB = "https://raw.githubusercontent.com"
TIMEOUT_S = 60.0
BLOCK = 1 << 20


@dataclass(frozen=True)
class Planned:
    """One file to have: its path under the data root, where it comes from, and its expected sha256."""

    rel: str
    url: str
    sha256: str


@dataclass
class Fetched:
    """What a fetch did: files downloaded, files already present and verified, and failures by file."""

    downloaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def shipped_sums(dataset: Dataset) -> dict[str, str]:
    """The checksums shipped with the declaration for the files under the data set's folder."""
    folder = Path(dataset.origin).parent
    if not (folder / SUMS_FILE).is_file():
        raise DataError(
            f"{folder / SUMS_FILE}: file not found; a data set is fetched only with its checksums"
        )
    prefix = dataset.folder.rstrip("/") + "/"
    sums = {rel: digest for rel, digest in read_sums(folder).items() if rel.startswith(prefix)}
    if not sums:
        raise DataError(
            f"{folder / SUMS_FILE}: no checksum listed under {prefix} for data set {dataset.name!r}"
        )
    return sums


def plan(dataset: Dataset, base_url: str = RAW_GITHUB) -> list[Planned]:
    """Every file of the data set with its URL and checksum (the hub is read by ``tasks build`` instead)."""
    if dataset.remote:
        raise DataError(
            f"data set {dataset.name!r} is read from the hub {dataset.provenance.get('hub')} when a task is "
            f"built (or from a local mirror); there is nothing to fetch"
        )
    prov = dataset.provenance
    overrides = prov.get("files", {})
    out = []
    for rel, digest in sorted(shipped_sums(dataset).items()):
        inner = rel[len(dataset.folder.rstrip("/")) + 1 :]
        remote = overrides.get(inner, f"{prov['path'].rstrip('/')}/{inner}")
        out.append(
            Planned(rel, f"{base_url.rstrip('/')}/{prov['repository']}/{prov['commit']}/{remote}", digest)
        )
    return out


def download(item: Planned, root: Path, timeout: float = TIMEOUT_S) -> str:
    """Fetch one file into place, or return why not ('' on success); nothing is left on failure."""
    target = root / item.rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(target)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(item.url, timeout=timeout) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(BLOCK), b""):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != item.sha256:
            return f"checksum mismatch (got {digest.hexdigest()[:16]}..., expected {item.sha256[:16]}...)"
        os.replace(tmp, target)
        return ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"download failed ({exc})"
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def fetch(dataset: Dataset, root: Path, base_url: str = RAW_GITHUB, timeout: float = TIMEOUT_S) -> Fetched:
    """Download the data set's missing files into ``root`` and list them in its ``SHA256SUMS``."""
    result = Fetched()
    planned = plan(dataset, base_url)
    for item in planned:
        path = root / item.rel
        if path.is_file():
            if sha256_file(path) == item.sha256:
                result.present.append(item.rel)
            else:
                sums = Path(dataset.origin).parent / SUMS_FILE
                result.failed[item.rel] = f"{path}: differs from {sums}; remove it to fetch it again"
            continue
        problem = download(item, root, timeout)
        if problem:
            result.failed[item.rel] = f"{path}: {problem} from {item.url}"
        else:
            result.downloaded.append(item.rel)
    have = {i.rel: i.sha256 for i in planned if i.rel in result.downloaded or i.rel in result.present}
    record_sums(root, have)
    return result


def record_sums(root: Path, sums: dict[str, str]) -> None:
    """Add the lines of ``sums`` that the data root's ``SHA256SUMS`` lacks; a conflicting line is an error."""
    path = root / SUMS_FILE
    listed = read_sums(root) if path.is_file() else {}
    clash = [rel for rel, digest in sums.items() if rel in listed and listed[rel] != digest]
    if clash:
        raise DataError(f"{path}: lists other checksums for {clash} than the data set's shipped SHA256SUMS")
    new = [f"{digest}  ./{rel}" for rel, digest in sorted(sums.items()) if rel not in listed]
    if not new:
        return
    text = path.read_text() if path.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    write_text_atomic(path, text + "\n".join(new) + "\n")

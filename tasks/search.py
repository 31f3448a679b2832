"""Where task and data-set TOML files are found: the package, ``$COLDBENCH_SPECS`` and ``--specs`` folders.

Adding a task or a data set is adding a file, and the file need not live in the package: any folder on the
search path counts. A folder holds task TOMLs directly and data-set TOMLs (with an optional ``SHA256SUMS``)
in its ``datasets/`` subfolder; the package keeps its tasks in ``tasks/specs`` and its data sets in
``tasks/datasets``. The order is the package, then ``$COLDBENCH_SPECS`` (a path list, ``os.pathsep``
separated), then the folders added with ``use_spec_dirs``; a name defined twice is an error for the later
file, so an outside folder can never silently replace a task that committed results depend on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SPECS_ENV = "COLDBENCH_SPECS"
PACKAGE = "package"
PACKAGE_TASKS = Path(str(resources.files("tasks") / "specs"))
PACKAGE_DATASETS = Path(str(resources.files("tasks") / "datasets"))
DATASETS_SUBDIR = "datasets"


@dataclass(frozen=True)
class SpecDir:
    """One entry of the search path: its task folder, its data-set folder and how it got there."""

    tasks: Path
    datasets: Path
    origin: str  # "package", "$COLDBENCH_SPECS" or "--specs"

    def label(self) -> str:
        return PACKAGE if self.origin == PACKAGE else str(self.tasks)


def package_dir() -> SpecDir:
    return SpecDir(PACKAGE_TASKS, PACKAGE_DATASETS, PACKAGE)


def outside_dir(folder: str | Path, origin: str) -> SpecDir:
    path = Path(folder).expanduser()
    return SpecDir(path, path / DATASETS_SUBDIR, origin)


def env_dirs() -> list[SpecDir]:
    value = os.environ.get(SPECS_ENV, "")
    return [outside_dir(p, f"${SPECS_ENV}") for p in value.split(os.pathsep) if p.strip()]


def search_path() -> list[SpecDir]:
    """The package, then every folder of ``$COLDBENCH_SPECS`` (which ``use_spec_dirs`` extends)."""
    seen: set[Path] = set()
    out = []
    for entry in [package_dir(), *env_dirs()]:
        key = entry.tasks.resolve()
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


def use_spec_dirs(folders: list[str | Path] | None) -> None:
    """Add ``--specs`` folders to the search path of this process and of every worker it starts.

    They are appended to ``$COLDBENCH_SPECS`` (not kept in a module variable) so that worker processes,
    however they are started, read the same tasks as the command that planned them.
    """
    if not folders:
        return
    current = [p for p in os.environ.get(SPECS_ENV, "").split(os.pathsep) if p.strip()]
    added = [str(Path(f).expanduser().resolve()) for f in folders]
    os.environ[SPECS_ENV] = os.pathsep.join(dict.fromkeys([*current, *added]))


def missing_dirs() -> list[str]:
    """Search-path folders that do not exist (a typo in ``--specs`` should not pass silently)."""
    return [str(d.tasks) for d in env_dirs() if not d.tasks.is_dir()]

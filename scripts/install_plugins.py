"""Install the method packages listed in ``$COLDBENCH_PLUGINS`` into the running (tox) environment.

``COLDBENCH_PLUGINS="../my-method git+https://host/other.git" tox -e bench`` installs both before the suite
runs, so an out-of-tree method registered by entry point runs in the pinned environment. Why a script and
not tox ``deps``: tox 4.67 hands ``{env:COLDBENCH_PLUGINS:}`` to pip as one requirement line, so a list of
two fails to parse; here the list is split shell-style (quotes keep spaces) and an empty one installs
nothing. Paths are relative to the repository root (tox's working directory). ``$PIP_CONSTRAINT`` (set by
tox to ``constraints.txt``) still applies, so a plugin cannot move a pinned version.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

VARIABLE = "COLDBENCH_PLUGINS"


def requirements(value: str | None) -> list[str]:
    """The listed requirements or paths, split like a shell command line; none for an unset variable."""
    return shlex.split(value or "", comments=True)


def main() -> int:
    items = requirements(os.environ.get(VARIABLE))
    if not items:
        return 0
    print(f"{VARIABLE}: installing {' '.join(items)}", flush=True)
    return subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *items])


if __name__ == "__main__":
    sys.exit(main())

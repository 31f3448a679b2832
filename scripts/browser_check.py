"""Render the results site in headless Chromium and fail on what a reader would find broken.

Why a real browser: the page tests parse the HTML, but only a browser applies the Content-Security-Policy,
loads (or refuses) resources and lays the tables out. This script builds the site from a results folder
(the committed ``leaderboard/results``, or a small fixture set of records when that folder holds none),
renders ``index.html`` (every family's section, a cold-item family's among them in the fixture set), one
task page and one method page with ``chromium --headless --screenshot``, and fails when

- the browser logs any console message (the pages carry no script, so every message is an error: a CSP
  violation, a refused resource, a script that got in), or
- a screenshot shows no table: no pixel columns drawn in the table rule colour of ``style.css`` over the
  height of a few rows, or (on the index) no highlighted leader cell.

Screenshots are kept in ``--out`` (default ``$COLDBENCH_BROWSER_OUT``, else a temporary folder). PNGs are
decoded with ``zlib`` and numpy (Pillow is not a dependency). ``--ensure-chromium`` installs Debian's
``chromium`` with apt-get when none is found and the script runs as root (CI); otherwise it says what to
install. ``$CHROMIUM`` names another binary.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmark.records import RunRecord

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 2000)
RULE = (0xD6, 0xDB, 0xE1)  # --rule in leaderboard/assets/style.css: table cell borders
LEAD = (0xFF, 0xF4, 0xCC)  # --lead: the leader's cell in a ranked table
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")
MIN_COLUMN_RUN = 40  # rule-coloured pixels a vertical cell border spans at least (a few table rows)
MIN_TABLE_COLUMNS = 3
MIN_LEADER_PIXELS = 200  # a highlighted cell is about 150 x 20 pixels


# -- Chromium ------------------------------------------------------------------------------------------------
def find_chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"]) or os.environ["CHROMIUM"]
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def ensure_chromium() -> str:
    """A Chromium binary; installs Debian's package when missing and running as root (the CI machine)."""
    found = find_chromium()
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        subprocess.run(install, check=True, env=env)
        found = find_chromium()
    if not found:
        raise SystemExit(
            "browser_check: no Chromium found; install it (Debian: apt-get install chromium) or set CHROMIUM"
        )
    return found


def console_messages(stderr: str) -> list[str]:
    """Console messages in Chromium's ``--enable-logging=stderr`` output (CSP violations log there too)."""
    return [m.group(1).strip() for line in stderr.splitlines() if (m := CONSOLE.search(line))]


def render(
    chromium: str, page: Path, png: Path, window: tuple[int, int] = WINDOW, timeout: float = 90
) -> str:
    """Screenshot ``page`` into ``png``; returns Chromium's stderr (its log)."""
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="coldbench-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            f"--screenshot={png}",
            "--enable-logging=stderr",
            "--v=0",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(
            f"chromium exited {done.returncode} without a screenshot of {page}:\n{done.stderr}"
        )
    return done.stderr


# -- PNG -----------------------------------------------------------------------------------------------------
def _paeth_row(line: bytearray, up: bytes, bpp: int) -> None:
    """Undo the Paeth filter in place: sequential along the row, so plain Python (about 1 ms a row)."""
    for i in range(len(line)):
        a, c = (line[i - bpp], up[i - bpp]) if i >= bpp else (0, 0)
        b = up[i]
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        line[i] = (line[i] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 0xFF


def _average_row(line: bytearray, up: bytes, bpp: int) -> None:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        line[i] = (line[i] + ((left + up[i]) >> 1)) & 0xFF


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> np.ndarray:
    """The PNG scanline filters undone: (height, width * bpp) bytes."""
    stride = width * bpp
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            out[y] = line
        elif kind == 1:  # Sub: a running sum per channel
            out[y] = (np.cumsum(line.reshape(width, bpp), axis=0) & 0xFF).astype(np.uint8).ravel()
        elif kind == 2:  # Up
            out[y] = line + prior
        elif kind in (3, 4):
            current = bytearray(line.tobytes())
            (_average_row if kind == 3 else _paeth_row)(current, prior.tobytes(), bpp)
            out[y] = np.frombuffer(bytes(current), dtype=np.uint8)
        else:
            raise ValueError(f"PNG: unknown filter type {kind}")
        prior = out[y]
    return out


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced grey/RGB/RGBA PNG (what Chromium writes) as a (height, width, 3) array."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"PNG: bit depth {depth}, colour type {colour}, interlace {interlace} not supported")
    pixels = _unfilter(zlib.decompress(b"".join(chunks)), width, height, channels)
    pixels = pixels.reshape(height, width, channels)
    return np.repeat(pixels[:, :, :1], 3, axis=2) if channels < 3 else pixels[:, :, :3]


# -- what the screenshot shows -------------------------------------------------------------------------------
def _near(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=2)


def table_columns(image: np.ndarray, colour: tuple[int, int, int] = RULE, run: int = MIN_COLUMN_RUN) -> int:
    """Pixel columns holding a vertical run of ``colour`` at least ``run`` high: a table's cell borders.

    Horizontal rules (the page header, ``h2`` underlines) give no such runs, so a page without a rendered
    table scores 0 however much text it shows.
    """
    mask = _near(image, colour)
    if mask.shape[0] < run:
        return 0
    sums = np.cumsum(np.vstack([np.zeros((1, mask.shape[1]), dtype=np.int64), mask]), axis=0)
    windows = sums[run:] - sums[:-run]  # colour pixels in each run-high window of each column
    return int((windows == run).any(axis=0).sum())


def colour_pixels(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(_near(image, colour).sum())


@dataclass
class PageCheck:
    page: str
    screenshot: Path
    console: list[str] = field(default_factory=list)
    columns: int = 0
    leader_pixels: int | None = None
    problems: list[str] = field(default_factory=list)


def check_page(chromium: str, page: Path, png: Path, want_leader: bool = False) -> PageCheck:
    """Render ``page`` and list what is wrong with it (empty ``problems``: it passed)."""
    result = PageCheck(page.name, png)
    result.console = console_messages(render(chromium, page, png))
    result.problems += [f"console: {m}" for m in result.console]
    image = read_png(png.read_bytes())
    result.columns = table_columns(image)
    if result.columns < MIN_TABLE_COLUMNS:
        result.problems.append(
            f"no table visible: {result.columns} pixel columns of table borders (want {MIN_TABLE_COLUMNS}+)"
        )
    if want_leader:
        result.leader_pixels = colour_pixels(image, LEAD)
        if result.leader_pixels < MIN_LEADER_PIXELS:
            result.problems.append("no highlighted leader cell visible in the ranked table")
    return result


# -- the site ------------------------------------------------------------------------------------------------
def _fixture_record(
    task_id: str, family: str, method: str, offset: int, seed: int, metric: str, value: float
) -> RunRecord:
    from benchmark.records import BudgetUse, Code, Env, MethodRef, RunRecord, TaskRef, Timing

    return RunRecord(
        task=TaskRef(
            id=task_id, family=family, split_hash="sha256:" + "0" * 64, k=3, source=["Books"], target="Movies"
        ),
        method=MethodRef(name=method, config={"offset": offset}, config_hash=f"{offset:016x}"),
        seed=seed,
        status="ok",
        metrics={metric: value},
        metric_directions={metric: "lower" if family in ("R", "IR") else "higher"},
        n_eval_users=60,
        budget=BudgetUse(
            train_examples_limit=100,
            train_examples_used=90,
            adapt_steps_limit=0,
            adapt_steps_used=0,
            wall_seconds_limit=60.0,
            wall_seconds_used=1.0,
        ),
        timing=Timing(fit=1.0 + offset, adapt=0.0, eval=0.1),
        peak_rss_mb=100.0,
        n_params=10 * (offset + 1),
        train_flops_estimate=1e6 * (offset + 1),
        env=Env(
            python="3.11",
            torch="2.13.0",
            numpy="2",
            pandas="2",
            platform="Linux",
            cpu="x86_64",
            threads=1,
            device="cpu",
        ),
        code=Code(version="0.0.0", commit="0" * 40, dirty=False),
        command="fixture",
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:00:01Z",
        artifacts={"per_user": f"seed-{seed}.users.parquet"},
    )


def write_fixture_records(root: Path) -> None:
    """A handful of valid records (three ranked tasks, three methods, two seeds) for an empty results folder;
    the cold-item task's per-unit files name cold items (``item``), as the runner writes them."""
    import pandas as pd

    from benchmark.records import record_path, write_record

    users = [f"u{i:03d}" for i in range(60)]
    tasks = (
        ("R-fixture-k3", "R", "user_mae"),
        ("L-fixture-k3", "L", "ndcg@10"),
        ("I-fixture-k3", "IR", "item_mae"),
    )
    for index, (task_id, family, metric) in enumerate(tasks):
        sign = 1.0 if family in ("R", "IR") else -1.0  # b and c are worse than a in the metric's direction
        unit = "item" if family == "IR" else "user"
        for offset, method in enumerate(("fixture-a", "fixture-b", "fixture-c")):
            for seed in (0, 1):
                noise = np.random.default_rng([seed, offset, index]).normal(0.0, 0.05, len(users))
                values = 0.5 + sign * 0.1 * offset + noise
                record = _fixture_record(task_id, family, method, offset, seed, metric, float(values.mean()))
                path = record_path(root, task_id, method, seed)
                write_record(record, path)
                frame = pd.DataFrame({unit: users, metric: values})
                frame.to_parquet(path.with_name(f"seed-{seed}.users.parquet"))


def build_site(results: Path, out: Path) -> Path:
    """The site of ``results`` in ``out/site``, of fixture records (``out/fixture-results``) if none."""
    from benchmark.records import iter_records
    from leaderboard.build import build

    if not (results.is_dir() and iter_records(results)):
        results = out / "fixture-results"
        shutil.rmtree(results, ignore_errors=True)
        write_fixture_records(results)
        print(f"browser_check: no records in the results folder; using fixture records in {results}")
    site = out / "site"
    build(results, site)
    return site


def pages(site: Path) -> list[tuple[Path, bool]]:
    """index.html (its ranked table must show a leader), the first task page and the first method page."""
    chosen = [(site / "index.html", True)]
    for kind in ("task", "method"):
        found = sorted((site / "pages").glob(f"{kind}-*.html"))
        if not found:
            raise SystemExit(f"browser_check: the site has no {kind} page")
        chosen.append((found[0], False))
    return chosen


def check_site(chromium: str, site: Path, out: Path) -> list[PageCheck]:
    out.mkdir(parents=True, exist_ok=True)
    return [check_page(chromium, page, out / f"{page.stem}.png", leader) for page, leader in pages(site)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "leaderboard" / "results")
    parser.add_argument("--site", type=Path, default=None, help="check this built site instead of building")
    parser.add_argument("--out", type=Path, default=None, help="screenshots (default $COLDBENCH_BROWSER_OUT)")
    parser.add_argument("--ensure-chromium", action="store_true", help="install chromium if missing (root)")
    args = parser.parse_args(argv)
    chromium = ensure_chromium() if args.ensure_chromium else find_chromium()
    if chromium is None:
        print("browser_check: no Chromium found (--ensure-chromium installs it as root)", file=sys.stderr)
        return 2
    out = args.out or Path(
        os.environ.get("COLDBENCH_BROWSER_OUT") or tempfile.mkdtemp(prefix="coldbench-browser-")
    )
    out.mkdir(parents=True, exist_ok=True)
    site = args.site or build_site(args.results, out)
    checks = check_site(chromium, site, out / "screenshots")
    for c in checks:
        verdict = "FAIL" if c.problems else "ok"
        print(f"{verdict:4} {c.page}: {c.columns} table border columns, screenshot {c.screenshot}")
        for problem in c.problems:
            print(f"     {problem}")
    return 1 if any(c.problems for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())

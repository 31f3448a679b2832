"""The site in a real browser (``scripts/browser_check.py``, ``tox -e browser``), and the check's own parts.

The decoder, log parser and table detector are tested everywhere; the tests that start Chromium run where
one is installed (``tox -e browser`` installs Debian's ``chromium`` as root) and are skipped elsewhere.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
import zlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


check = _script("browser_check")
needs_chromium = pytest.mark.skipif(check.find_chromium() is None, reason="no Chromium (tox -e browser)")

# a line of chromium 156's --enable-logging=stderr output for a page with an inline <script>
CSP_LINE = (
    '[30288:30288:1130/144211.545378:INFO:CONSOLE:1] "Executing inline script violates the following '
    "Content Security Policy directive 'default-src 'none''. The action has been blocked.\", "
    "source: file:///x.html (1)"
)
NOISE = "[30114:30143:1130/144208.023280:ERROR:dbus/bus.cc:405] Failed to connect to the bus: No such file"


def _filter(kind: int, line: bytes, prior: bytes, bpp: int) -> bytes:
    """The PNG encoder's side of each filter, to produce test images the decoder must invert."""
    out = bytearray()
    for i, value in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        p = a + b - c
        paeth = min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]
        predictor = [0, a, b, (a + b) >> 1, paeth][kind]
        out.append((value - predictor) & 0xFF)
    return bytes(out)


def encode_png(pixels: np.ndarray, colour_type: int = 2) -> bytes:
    """A PNG of ``pixels`` (height, width, channels) cycling through all five filter types row by row."""
    height, width, channels = pixels.shape
    stride = width * channels
    prior = bytes(stride)
    raw = bytearray()
    for y in range(height):
        line = pixels[y].astype(np.uint8).tobytes()
        raw += bytes([y % 5]) + _filter(y % 5, line, prior, channels)
        prior = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("colour_type", "channels"), [(2, 3), (6, 4), (0, 1)])
def test_png_decoder_inverts_every_filter(colour_type: int, channels: int) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(11, 7, channels), dtype=np.uint8)
    decoded = check.read_png(encode_png(pixels, colour_type))
    expected = np.repeat(pixels, 3, axis=2) if channels == 1 else pixels[:, :, :3]
    np.testing.assert_array_equal(decoded, expected)


def test_console_messages_are_found_among_chromium_noise() -> None:
    messages = check.console_messages("\n".join([NOISE, CSP_LINE, NOISE]))
    assert len(messages) == 1 and "Content Security Policy" in messages[0]
    assert check.console_messages(NOISE) == []


def test_a_table_is_vertical_border_runs_not_horizontal_rules() -> None:
    page = np.full((300, 200, 3), 255, dtype=np.uint8)
    page[10, :] = check.RULE  # a header's bottom border: horizontal, no table
    page[50, :] = check.RULE
    assert check.table_columns(page) == 0
    for x in (20, 80, 140, 190):  # four cell borders 100 px high
        page[100:200, x] = check.RULE
    page[100:120, 60] = check.RULE  # too short to be a border
    assert check.table_columns(page) == 4


def test_install_plugins_splits_the_list_shell_style() -> None:
    plugins = _script("install_plugins")
    assert plugins.requirements(None) == [] and plugins.requirements("  ") == []
    assert plugins.requirements('../my-method "git+https://h/x.git#egg=x" pkg==1.0') == [
        "../my-method",
        "git+https://h/x.git#egg=x",
        "pkg==1.0",
    ]


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    return check.build_site(out / "no-records-here", out)


def test_an_empty_results_folder_builds_the_fixture_site(fixture_site: Path) -> None:
    pages = check.pages(fixture_site)
    assert pages[0][0].name == "index.html" and len(pages) == 3
    assert "fixture-a" in (fixture_site / "index.html").read_text()


@needs_chromium
def test_the_site_renders_without_console_errors_and_shows_its_tables(
    fixture_site: Path, tmp_path: Path
) -> None:
    results = check.check_site(check.find_chromium(), fixture_site, tmp_path)
    assert [r.problems for r in results] == [[], [], []]
    assert all(r.columns >= check.MIN_TABLE_COLUMNS and r.screenshot.stat().st_size > 0 for r in results)
    assert results[0].leader_pixels >= check.MIN_LEADER_PIXELS


@needs_chromium
def test_an_inline_script_is_a_csp_violation_and_fails(fixture_site: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(fixture_site, site)
    index = site / "index.html"
    index.write_text(index.read_text().replace("<main>", "<main><script>document.title = 'x'</script>", 1))
    result = check.check_page(check.find_chromium(), index, tmp_path / "index.png", want_leader=True)
    assert any("Content Security Policy" in p for p in result.problems), result.problems
    assert check.main(["--site", str(site), "--out", str(tmp_path / "shots")]) == 1


@needs_chromium
def test_a_page_whose_table_is_not_drawn_fails(fixture_site: Path, tmp_path: Path) -> None:
    page = tmp_path / "index.html"
    text = (fixture_site / "index.html").read_text()
    page.write_text(text.replace("</style>", "table { display: none; }\n</style>", 1))
    result = check.check_page(check.find_chromium(), page, tmp_path / "index.png", want_leader=True)
    assert result.console == []
    assert any("no table visible" in p for p in result.problems)
    assert any("leader" in p for p in result.problems)

"""Number and text formatting shared by every renderer, so a value reads the same in every output.

Floats get fixed digits and no negative zero, text is escaped for its target (Markdown or HTML), and file
names come from a hash of the name: the output is a function of the records, byte for byte.
"""

from __future__ import annotations

import html
import math
import re
from hashlib import sha256

from leaderboard.statistics import Direction, Interval


def fixed(x: float, digits: int = 4) -> str:
    """``x`` with fixed decimals; ``-0.0000`` prints as ``0.0000`` so signs never flicker between builds."""
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def sig(x: float) -> str:
    """``x`` with three significant digits, for costs that span orders of magnitude."""
    if not math.isfinite(x):
        return "n/a"
    text = f"{x:.3g}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def signed(x: float) -> str:
    """A difference with an explicit sign, so better and worse read apart at a glance."""
    text = fixed(x)
    return text if text.startswith("-") or text == "n/a" else f"+{text}"


def estimate(iv: Interval) -> str:
    """Mean ± half-width, or the mean alone where one seed gives no interval."""
    return f"{fixed(iv.mean)} ± {fixed(iv.half_width)}" if iv.has_interval else fixed(iv.mean)


def one_line(text: str, limit: int = 200) -> str:
    """Whitespace collapsed and cut at ``limit``, so free text from a record cannot break a table row."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def first_line(error: str) -> str:
    """The runner stores ``Type: message`` then a traceback; the page shows the message only."""
    lines = [line for line in error.splitlines() if line.strip()]
    return one_line(lines[0] if lines else "")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&$])")


def md(text: object) -> str:
    """Markdown-safe text: one line, every character with Markdown or HTML meaning backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(str(text), 10_000))


def esc(text: object) -> str:
    """HTML-safe text, quotes included, since names from records also land in attributes."""
    return html.escape(str(text), quote=True)


def slug(kind: str, name: str) -> str:
    """A file name that is safe on every file system and unique per name (hash suffix)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:60] or "x"
    return f"{kind}-{safe}-{sha256(name.encode()).hexdigest()[:8]}.html"


def direction_word(direction: Direction) -> str:
    return "higher is better" if direction == "higher" else "lower is better"


def arrow(direction: Direction) -> str:
    return "↑" if direction == "higher" else "↓"

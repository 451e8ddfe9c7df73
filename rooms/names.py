"""Names that cannot lie: invisible and direction-changing characters are removed.

A visitor named ``Budi \\u202e)nairarbil( iraS`` would otherwise show in Element as
"Budi (librarian) Sari…": the right-to-left override reverses what follows it, including the
" (visitor)" marker the desk appends. Names (and the other short form fields) lose every control
and format character before they are stored; the marker is kept outside the name's own text
direction, so a name in Arabic script cannot move it either.
"""

from __future__ import annotations

import re
import unicodedata

# Controls, format characters (bidi overrides and isolates, zero-width characters, the BOM,
# tag characters), private-use and surrogate code points.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs"})
_SEPARATORS = frozenset({"Zl", "Zp"})
_MAX_MARKS = 3  # combining marks on one letter ("zalgo" text piles up dozens)
_RTL_CLASSES = frozenset({"R", "AL", "AN"})
DISPLAY_NAME_MAX = 40
VISITOR_MARKER = "(visitor)"
_FSI, _PDI = "\u2068", "\u2069"  # first-strong isolate, pop directional isolate


def clean_text(value: str) -> str:
    """``value`` without invisible or direction-changing characters, whitespace collapsed."""
    out: list[str] = []
    marks = 0
    for char in unicodedata.normalize("NFC", value):
        category = unicodedata.category(char)
        if category in _REMOVED_CATEGORIES:
            continue
        if category in _SEPARATORS:
            char = " "
        if category.startswith("M"):
            marks += 1
            if marks > _MAX_MARKS:
                continue
        else:
            marks = 0
        out.append(char)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def isolate(name: str) -> str:
    """The name as a directional isolate when it holds right-to-left text, so the text around
    it (the visitor marker, a topic) keeps its place."""
    if any(unicodedata.bidirectional(c) in _RTL_CLASSES for c in name):
        return f"{_FSI}{name}{_PDI}"
    return name


def display_name_with_marker(name: str) -> str:
    """The visitor's name as librarians see it: short enough that the marker always shows."""
    cleaned = clean_text(name) or "?"
    if len(cleaned) > DISPLAY_NAME_MAX:
        cleaned = cleaned[: DISPLAY_NAME_MAX - 1].rstrip() + "…"
    return f"{isolate(cleaned)} {VISITOR_MARKER}"

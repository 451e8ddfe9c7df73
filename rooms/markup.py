"""Formatted message text: the HTML a librarian's formatting may carry, and how it reads as text.

The chat-network adapter keeps a message's formatting only through :func:`sanitize_html`; what
the desk shows or sends elsewhere (a transcript, an email) passes it again, and its plain-text
reading comes from that HTML (:func:`plain_text`), not from the sender's Markdown source.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser

import nh3

# What a librarian's formatting may carry to the visitor. Everything else is dropped.
ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "s", "del", "code", "pre", "blockquote",
    "p", "br", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
_BLOCKS = {"p", "pre", "blockquote", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}


def sanitize_html(value: str) -> str:
    """Keep harmless formatting only; reply fallbacks (<mx-reply>) go with their content."""
    return nh3.clean(
        value,
        tags=ALLOWED_TAGS,
        clean_content_tags={"mx-reply", "script", "style"},
        attributes={"a": {"href"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    ).strip()


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.lists: list[list[int]] = []  # per open list: [next number] (ol) or [] (ul)
        self.links: list[tuple[str | None, int]] = []

    def _break(self) -> None:
        if self.out and not "".join(self.out[-2:]).endswith("\n"):
            self.out.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.out.append("\n")
        elif tag in _BLOCKS:
            self._break()
            if tag in ("ul", "ol"):
                self.lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            self._break()
            current = self.lists[-1] if self.lists else []
            indent = "  " * max(0, len(self.lists) - 1)
            if current:
                self.out.append(f"{indent}{current[0]}. ")
                current[0] += 1
            else:
                self.out.append(f"{indent}• ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            if tag in ("ul", "ol") and self.lists:
                self.lists.pop()
            self._break()
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            if href and href.removeprefix("mailto:") != label:
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        self.out.append(data)


def plain_text(value: str) -> str:
    """How sanitized HTML reads as plain text: paragraphs and line breaks kept, list items
    bulleted or numbered, a link's address after its words; no markers."""
    reader = _Reader()
    reader.feed(value)
    reader.close()
    lines = "".join(reader.out).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def escape_text(value: str) -> str:
    """Plain text as HTML, its line breaks kept."""
    return html.escape(value).replace("\n", "<br>")

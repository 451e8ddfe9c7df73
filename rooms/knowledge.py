"""One knowledge base: the widget's FAQ search and the librarians' canned answers (`!c key`)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    key: str
    answer: dict[str, str]
    question: dict[str, str]
    public: bool = False  # offered to visitors in the FAQ search

    def text(self, language: str, **values: str) -> str:
        template = self.answer.get(language) or self.answer.get("en") or ""
        return template.format_map(_Blank(values))

    def title(self, language: str) -> str:
        return self.question.get(language) or self.question.get("en") or self.key


class _Blank(dict[str, str]):
    """Unknown placeholders stay empty instead of failing."""

    def __missing__(self, key: str) -> str:
        return ""


_WORD = re.compile(r"[a-z0-9]+")
_STOP = {
    "yang", "dan", "di", "ke", "dari", "untuk", "apa", "apakah", "bagaimana", "cara", "saya",
    "the", "a", "an", "to", "of", "how", "do", "i", "is", "what", "can", "my", "and", "in",
}  # fmt: skip


def _words(value: str) -> set[str]:
    folded = unicodedata.normalize("NFKD", value.lower())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return {w for w in _WORD.findall(plain) if w not in _STOP and len(w) > 1}


class KnowledgeBase:
    def __init__(self, entries: list[Entry]) -> None:
        self.entries = {e.key: e for e in entries}

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def keys(self) -> list[str]:
        return sorted(self.entries)

    def search(self, query: str, language: str, limit: int = 5) -> list[Entry]:
        """Public entries ranked by shared words (question counts double); empty query: all."""
        public = [e for e in self.entries.values() if e.public]
        wanted = _words(query)
        if not wanted:
            return sorted(public, key=lambda e: e.title(language))[:limit]
        scored = []
        for entry in public:
            title = _words(entry.title(language))
            body = _words(entry.text(language))
            score = 2 * len(wanted & title) + len(wanted & body)
            prefix = sum(1 for w in wanted for t in title | body if t.startswith(w) and t != w)
            if score or prefix:
                scored.append((score + 0.5 * prefix, entry))
        scored.sort(key=lambda pair: (-pair[0], pair[1].title(language)))
        return [entry for _, entry in scored[:limit]]

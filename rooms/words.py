"""Words for search: a text cut into words, and each word's stems in Indonesian and English.

Both store engines index and query the stems made here, so a chat is found by the same words on
SQLite and on PostgreSQL. A word is a run of letters and digits (``_`` and ``-`` separate words,
as they do for FTS5 and PostgreSQL), lowercased, without accents. Each word stands for its
Indonesian stem (PySastrawi: a dictionary of root words and the ECS rules, so "memperpanjang",
"diperpanjang" and "perpanjangan" all give "panjang"; a word not built on a known root is left
as it is, English words included) and its English stem (Snowball's Porter2: "renewing",
"renewed" and "renewal" give "renew"). A chat mixes both languages, so its words are indexed
with both stems and a query's words are looked for by both.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import cache, lru_cache

import snowballstemmer
from Sastrawi.Dictionary.ArrayDictionary import ArrayDictionary
from Sastrawi.Stemmer.Stemmer import Stemmer
from Sastrawi.Stemmer.StemmerFactory import StemmerFactory

_WORD = re.compile(r"[^\W_]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
MAX_WORD = 40  # longer "words" (links, codes) are indexed as they are, cut to this length
_local = threading.local()  # a Snowball stemmer keeps state while it works: one per thread


def fold(text: str) -> str:
    """Lowercase, without accents ("Café" → "cafe")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[tuple[int, int, str]]:
    """The words of ``text``: (start, end, folded word), positions in ``text`` itself."""
    return [(m.start(), m.end(), fold(m.group())[:MAX_WORD]) for m in _WORD.finditer(text)]


@cache
def _indonesian() -> Stemmer:
    # Not the factory's stemmer: its cache keeps every word it ever saw (ours is bounded).
    return Stemmer(ArrayDictionary(StemmerFactory().get_words()))


def _english(word: str) -> str:
    stemmer = getattr(_local, "english", None)
    if stemmer is None:
        stemmer = _local.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


@lru_cache(maxsize=50_000)
def stems(word: str) -> tuple[str, ...]:
    """A folded word's stems, Indonesian first, each once."""
    indonesian = word
    if _ASCII_WORD.fullmatch(word):  # the Indonesian dictionary is of plain Latin letters
        indonesian = _indonesian().stem_word(word) or word
    english = _english(word) or word
    return (indonesian,) if english == indonesian else (indonesian, english)


def stemmed(text: str) -> list[tuple[str, ...]]:
    """The stems of each word of ``text``, in order."""
    return [stems(word) for _, _, word in words(text)]

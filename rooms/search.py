"""Past-chat search: librarians find how a question was answered before (``!search``).

A closed chat is indexed (again) in the unit of work that changes it: when it closes, when a
note is added later, when one of its messages is edited or deleted afterwards; a purge or an
erasure removes its entry with its messages (rooms/store/privacy.py). What a chat is found by is
gathered in one place, :func:`gather`: the topic (its label in each of the desk's languages), what
the visitor and the librarians wrote, and the notes. Another change that should be findable
calls :meth:`Search.reindex` in its own unit of work.

Words are matched by their stems (rooms/words.py), so "perpanjang" finds "memperpanjang" and
"renewing" finds "renew". A query finds the chats that have every word; if none has, those with
any. Each answer carries a snippet of the message or note that matches best.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from rooms.session import Session
from rooms.store import Database, Tx, notes, sessions
from rooms.store import reports as report_facts
from rooms.store import search as rows
from rooms.words import stemmed, stems, words

log = logging.getLogger("refdesk.rooms.search")

BATCH = 20  # chats indexed per transaction when catching up
MAX_QUERY_WORDS = 10
SNIPPET = 160  # characters of a snippet, about


@dataclass(frozen=True)
class Passage:
    """One text a chat is found by."""

    kind: str  # "visitor", "librarian", "note", "topic"
    who: str | None  # the librarian, or the note's author
    text: str


@dataclass(frozen=True)
class Found:
    """A chat that matches, with the passage that matches best, shortened around the match."""

    session: Session
    librarians: tuple[str, ...]  # who answered, in order (or who served it)
    snippet: str
    snippet_from: Passage


@dataclass(frozen=True)
class Results:
    found: list[Found]
    every_word: bool  # False: no chat has all the words; these have some


def query_words(query: str) -> list[tuple[str, ...]]:
    """A query's words, each as the stems it may be found by (each word once, at most
    ``MAX_QUERY_WORDS``)."""
    groups = dict.fromkeys(stems(word) for _, _, word in words(query))
    return list(groups)[:MAX_QUERY_WORDS]


async def gather(
    tx: Tx, session: Session, topic_labels: Mapping[str, Mapping[str, str]]
) -> list[Passage]:
    """Everything a chat is found by, in one place: add new kinds of text here (and reindex
    when they change)."""
    labels = topic_labels.get(session.form.topic, {})
    topic = " · ".join(dict.fromkeys((*labels.values(), session.form.topic)))
    passages = [Passage("topic", None, topic)]
    for origin, name, body in await rows.texts(tx, session.id):
        passages.append(Passage(origin, name if origin == "librarian" else None, body))
    for author, body, _ in await notes.of_session(tx, session.id):
        passages.append(Passage("note", author, body))
    tags, _ = await report_facts.tags_of(tx, session.id)
    if tags:
        passages.append(Passage("tag", None, " ".join(tags)))
    return passages


def _best(passages: list[Passage], groups: list[tuple[str, ...]]) -> tuple[Passage, int, int]:
    """The passage that matches the most query words (then the most often; a message before a
    note before the topic), and where its first match is."""
    wanted = {stem: index for index, group in enumerate(groups) for stem in group}
    best: tuple[tuple[int, int, int], Passage, int, int] | None = None
    priority = {"librarian": 3, "visitor": 3, "note": 2}
    for passage in passages:
        matched: set[int] = set()
        hits = 0
        first: tuple[int, int] | None = None
        for start, end, word in words(passage.text):
            found = [wanted[s] for s in stems(word) if s in wanted]
            if found:
                matched.update(found)
                hits += 1
                first = first or (start, end)
        score = (len(matched), hits, priority.get(passage.kind, 1))
        if first is not None and (best is None or score > best[0]):
            best = (score, passage, *first)
    if best is None:  # matched by the index but not here (cannot happen; be safe)
        return passages[0], 0, 0
    return best[1], best[2], best[3]


_SPACE = re.compile(r"\s")


def shorten(text: str, start: int, end: int, width: int = SNIPPET) -> str:
    """About ``width`` characters of ``text`` around ``text[start:end]``, on one line, cut at
    spaces, with "…" where it was cut."""
    begin = max(0, min(start - width // 3, len(text) - width))
    finish = min(len(text), begin + width)
    if begin > 0:
        space = _SPACE.search(text, begin, start)
        begin = space.end() if space else begin
    if finish < len(text):
        spaces = [m.start() for m in _SPACE.finditer(text, end, finish)]
        finish = spaces[-1] if spaces else finish
    piece = " ".join(text[begin:finish].split())
    return ("…" if begin > 0 else "") + piece + ("…" if finish < len(text) else "")


class Search:
    """The index of past chats, and the search librarians run on it."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime],
        topic_labels: Mapping[str, Mapping[str, str]],
    ) -> None:
        self.db = db
        self.clock = clock
        self.topic_labels = topic_labels
        self._caught_up = False

    async def reindex(self, tx: Tx, session_id: str) -> bool:
        """The chat's entry, as it is now, in the caller's unit of work: made or replaced for a
        closed chat, removed for a purged one (an open chat waits for its close). True if it
        is indexed."""
        session = await sessions.get(tx, session_id)
        if session is not None and session.is_open:
            return False  # indexed when it closes
        if session is None or not await rows.indexable(tx, session_id):
            await rows.forget(tx, session_id)
            return False
        passages = await gather(tx, session, self.topic_labels)
        indexed = [stems for passage in passages for stems in stemmed(passage.text)]
        await rows.put(tx, session_id, indexed, self.clock())
        return True

    async def find(self, query: str, limit: int = 5) -> Results:
        """The closed chats that match ``query`` best, each with a snippet."""
        groups = query_words(query)

        async def unit(tx: Tx) -> Results:
            every = True
            ids = await rows.find(tx, groups, every=True, limit=limit)
            if not ids and len(groups) > 1:
                every = False
                ids = await rows.find(tx, groups, every=False, limit=limit)
            found = []
            for session_id in ids:
                session = await sessions.get(tx, session_id)
                if session is None:
                    continue
                passages = await gather(tx, session, self.topic_labels)
                passage, start, end = _best(passages, groups)
                librarians = [p.who for p in passages if p.kind == "librarian" and p.who]
                if not librarians and session.owner_name:
                    librarians = [session.owner_name]
                snippet = shorten(passage.text, start, end)
                found.append(Found(session, tuple(dict.fromkeys(librarians)), snippet, passage))
            return Results(found, every)

        return await self.db.read(unit)

    async def backfill(self) -> int:
        """Index the chats kept from before the index existed, in short transactions; once
        none is left this costs nothing (the desk's clock calls it). Returns how many."""
        if self._caught_up:
            return 0
        done = 0
        while True:

            async def batch(tx: Tx) -> int:
                waiting = await rows.backlog(tx, BATCH)
                for session_id in waiting:
                    await self.reindex(tx, session_id)
                return len(waiting)

            indexed = await self.db.write(batch)
            done += indexed
            if indexed < BATCH:
                break
        self._caught_up = True
        if done:
            log.info("search: indexed %d earlier chats", done)
        return done

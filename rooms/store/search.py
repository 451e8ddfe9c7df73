"""The search index of past chats (v12): one entry per closed chat, its words already stemmed.

SQLite keeps the stems in an FTS5 table (``search_index``, one row per chat, found through
``search_docs``) and ranks with bm25; PostgreSQL keeps them as a ``tsvector`` (``search_docs.body``,
GIN index) and ranks with ts_rank. Both are written and queried with the stems that
``rooms.words`` makes, never with the engine's own parser, so they match the same chats.
``search_backlog`` lists chats to index later (those kept before v12).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rooms.store.database import SQLITE, Tx

MAX_POSITIONS = 256  # PostgreSQL keeps at most this many positions of one lexeme
_LAST_POSITION = 16383  # and none beyond this one


async def indexable(tx: Tx, session_id: str) -> bool:
    """Whether the chat belongs in the index: closed and not purged."""
    found = await tx.fetchval(
        "SELECT 1 FROM sessions WHERE id = :id AND state = 'closed' AND purged_at IS NULL",
        {"id": session_id},
    )
    return found is not None


async def texts(tx: Tx, session_id: str) -> list[tuple[str, str | None, str]]:
    """What the visitor and the librarians wrote (not deleted), in order: (origin, sender's
    name, text)."""
    rows = await tx.fetchall(
        """
        SELECT origin, sender_name, body FROM messages
        WHERE session_id = :s AND origin IN ('visitor', 'librarian') AND deleted_at IS NULL
          AND body <> ''
        ORDER BY id
        """,
        {"s": session_id},
    )
    return [(row["origin"], row["sender_name"], row["body"]) for row in rows]


def _lexeme(stem: str) -> str:
    return "'" + stem.replace("\\", "\\\\").replace("'", "''") + "'"


def _tsvector(words: Sequence[Sequence[str]]) -> str:
    """The words as a ``tsvector`` literal with their positions (PostgreSQL's input syntax: no
    parser, no dictionary, so exactly these lexemes)."""
    positions: dict[str, list[int]] = {}
    for position, stems in enumerate(words, start=1):
        for stem in stems:
            found = positions.setdefault(stem, [])
            if len(found) < MAX_POSITIONS:
                found.append(min(position, _LAST_POSITION))
    return " ".join(
        f"{_lexeme(stem)}:{','.join(map(str, dict.fromkeys(at)))}" for stem, at in positions.items()
    )


async def put(tx: Tx, session_id: str, words: Sequence[Sequence[str]], at: datetime) -> None:
    """The chat's entry, made or replaced: ``words`` are the stems of each of its words."""
    if tx.dialect == SQLITE:
        doc = await tx.fetchval(
            "SELECT id FROM search_docs WHERE session_id = :s", {"s": session_id}
        )
        if doc is None:
            doc = await tx.fetchval(
                "INSERT INTO search_docs (session_id, indexed_at) VALUES (:s, :at) RETURNING id",
                {"s": session_id, "at": at},
            )
        else:
            await tx.execute("DELETE FROM search_index WHERE rowid = :doc", {"doc": doc})
            await tx.execute(
                "UPDATE search_docs SET indexed_at = :at WHERE id = :doc", {"doc": doc, "at": at}
            )
        body = " ".join(stem for stems in words for stem in stems)
        await tx.execute(
            "INSERT INTO search_index (rowid, body) VALUES (:doc, :body)",
            {"doc": doc, "body": body},
        )
    else:
        await tx.execute(
            """
            INSERT INTO search_docs (session_id, body, indexed_at)
            VALUES (:s, CAST(CAST(:body AS text) AS tsvector), :at)
            ON CONFLICT (session_id)
                DO UPDATE SET body = EXCLUDED.body, indexed_at = EXCLUDED.indexed_at
            """,
            {"s": session_id, "body": _tsvector(words), "at": at},
        )
    await tx.execute("DELETE FROM search_backlog WHERE session_id = :s", {"s": session_id})


async def forget(tx: Tx, session_id: str) -> int:
    """The chat's entry removed (purge, erasure); 1 if it had one."""
    params = {"s": session_id}
    await tx.execute("DELETE FROM search_backlog WHERE session_id = :s", params)
    if tx.dialect == SQLITE:
        await tx.execute(
            "DELETE FROM search_index WHERE rowid IN "
            "(SELECT id FROM search_docs WHERE session_id = :s)",
            params,
        )
    return await tx.execute("DELETE FROM search_docs WHERE session_id = :s", params)


def _fts5_string(stem: str) -> str:
    return '"' + stem.replace('"', '""') + '"'


def _fts5_query(groups: Sequence[Sequence[str]], every: bool) -> str:
    terms = [
        "(" + " OR ".join(f'"{s.replace(chr(34), chr(34) * 2)}"' for s in g) + ")" for g in groups
    ]
    return (" AND " if every else " OR ").join(terms)


def _tsquery(groups: Sequence[Sequence[str]], every: bool) -> str:
    terms = ["(" + " | ".join(_lexeme(s) for s in g) + ")" for g in groups]
    return (" & " if every else " | ").join(terms)


async def find(tx: Tx, groups: Sequence[Sequence[str]], *, every: bool, limit: int) -> list[str]:
    """Chats whose entry has a stem of every group (``every``) or of any, best first (ties:
    the latest closed first)."""
    if not groups:
        return []
    if tx.dialect == SQLITE:
        rows = await tx.fetchall(
            """
            SELECT d.session_id FROM search_index
            JOIN search_docs d ON d.id = search_index.rowid
            JOIN sessions s ON s.id = d.session_id
            WHERE search_index MATCH :q AND s.purged_at IS NULL
            ORDER BY bm25(search_index), s.closed_at DESC, s.id
            LIMIT :limit
            """,
            {"q": _fts5_query(groups, every), "limit": limit},
        )
    else:
        rows = await tx.fetchall(
            """
            SELECT d.session_id
            FROM search_docs d JOIN sessions s ON s.id = d.session_id,
                 (SELECT CAST(CAST(:q AS text) AS tsquery) AS q) AS query
            WHERE d.body @@ query.q AND s.purged_at IS NULL
            ORDER BY ts_rank(d.body, query.q, 1) DESC, s.closed_at DESC, s.id
            LIMIT :limit
            """,
            {"q": _tsquery(groups, every), "limit": limit},
        )
    return [row["session_id"] for row in rows]


async def backlog(tx: Tx, limit: int) -> list[str]:
    """Chats waiting to be indexed (kept from before the index existed)."""
    rows = await tx.fetchall(
        "SELECT session_id FROM search_backlog ORDER BY session_id LIMIT :limit", {"limit": limit}
    )
    return [row["session_id"] for row in rows]


async def count(tx: Tx) -> int:
    """How many chats the index holds."""
    return int(await tx.fetchval("SELECT COUNT(*) FROM search_docs"))

"""The ``notes`` table: librarians' internal notes on a chat (never shown to the visitor)."""

from __future__ import annotations

from datetime import datetime

from rooms.store.database import Tx
from rooms.store.values import required_moment


async def add(tx: Tx, session_id: str, author: str, body: str, at: datetime) -> None:
    await tx.execute(
        "INSERT INTO notes (session_id, author, body, created_at) VALUES (:s, :a, :b, :at)",
        {"s": session_id, "a": author, "b": body, "at": at},
    )


async def of_session(tx: Tx, session_id: str) -> list[tuple[str, str, datetime]]:
    rows = await tx.fetchall(
        "SELECT author, body, created_at FROM notes WHERE session_id = :s ORDER BY id",
        {"s": session_id},
    )
    return [(r["author"], r["body"], required_moment(r["created_at"])) for r in rows]

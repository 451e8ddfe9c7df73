"""The ``messages`` table: what either side wrote, and the desk's notices to the visitor.

``seq`` orders every change (a new message, an edit, a deletion) across the desk: it is the
visitor API's cursor. ``id`` orders messages as they were written.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from rooms.ids import MessageID, SessionID, UserID
from rooms.session import Attachment, Message, Origin
from rooms.store.database import Row, Tx
from rooms.store.values import moment, next_seq, required_moment


def from_row(row: Row) -> Message:
    return Message(
        id=MessageID(row["id"]),
        session_id=SessionID(row["session_id"]),
        origin=Origin(row["origin"]),
        body=row["body"],
        created_at=required_moment(row["created_at"]),
        sender_name=row["sender_name"],
        sender_id=UserID(row["sender_id"]) if row["sender_id"] else None,
        client_id=row["client_id"],
        remote_id=row["remote_id"],
        needs_delivery=bool(row["needs_delivery"]),
        delivered_at=moment(row["delivered_at"]),
        seq=row["seq"],
        html=row["html"],
        edited_at=moment(row["edited_at"]),
        deleted_at=moment(row["deleted_at"]),
        attachment=_attachment(row["attachment"]),
    )


def _attachment(raw: str | None) -> Attachment | None:
    return Attachment(**json.loads(raw)) if raw else None


def _many(rows: list[Row]) -> list[Message]:
    return [from_row(row) for row in rows]


async def insert(tx: Tx, message: Message) -> Message:
    stored = await _insert(tx, message, "")
    assert stored is not None
    return stored


async def insert_new(tx: Tx, message: Message) -> Message | None:
    """Insert unless the chat already has a message with this ``client_id`` (a visitor's
    retry): then None, in the same statement."""
    return await _insert(tx, message, "ON CONFLICT (session_id, client_id) DO NOTHING")


async def _insert(tx: Tx, message: Message, on_conflict: str) -> Message | None:
    row = await tx.fetchone(
        f"""
        INSERT INTO messages (session_id, origin, body, html, sender_name, sender_id, client_id,
                              remote_id, needs_delivery, created_at, attachment, seq)
        VALUES (:session_id, :origin, :body, :html, :sender_name, :sender_id, :client_id,
                :remote_id, :needs_delivery, :created_at, :attachment, {next_seq(tx.dialect)})
        {on_conflict}
        RETURNING *
        """,
        {
            "session_id": message.session_id,
            "origin": message.origin.value,
            "body": message.body,
            "html": message.html,
            "sender_name": message.sender_name,
            "sender_id": message.sender_id,
            "client_id": message.client_id,
            "remote_id": message.remote_id,
            "needs_delivery": message.needs_delivery,
            "created_at": message.created_at,
            "attachment": (
                json.dumps(dataclasses.asdict(message.attachment), separators=(",", ":"))
                if message.attachment
                else None
            ),
        },
    )
    return from_row(row) if row else None


async def get(tx: Tx, message_id: int) -> Message | None:
    row = await tx.fetchone("SELECT * FROM messages WHERE id = :id", {"id": message_id})
    return from_row(row) if row else None


async def by_client_id(tx: Tx, session_id: str, client_id: str) -> Message | None:
    row = await tx.fetchone(
        "SELECT * FROM messages WHERE session_id = :s AND client_id = :k",
        {"s": session_id, "k": client_id},
    )
    return from_row(row) if row else None


async def by_remote_id(tx: Tx, remote_id: str) -> Message | None:
    row = await tx.fetchone("SELECT * FROM messages WHERE remote_id = :r", {"r": remote_id})
    return from_row(row) if row else None


async def after(tx: Tx, session_id: str, seq: int, limit: int) -> list[Message]:
    return _many(
        await tx.fetchall(
            """
            SELECT * FROM messages WHERE session_id = :s AND seq > :after
            ORDER BY seq LIMIT :limit
            """,
            {"s": session_id, "after": seq, "limit": limit},
        )
    )


async def pending_deliveries(tx: Tx, limit: int) -> list[Message]:
    return _many(
        await tx.fetchall(
            """
            SELECT * FROM messages WHERE needs_delivery AND delivered_at IS NULL
            ORDER BY id LIMIT :limit
            """,
            {"limit": limit},
        )
    )


async def mark_delivered(tx: Tx, message_id: int, remote_id: str | None, at: datetime) -> None:
    await tx.execute(
        """
        UPDATE messages SET delivered_at = :at, remote_id = COALESCE(:remote_id, remote_id)
        WHERE id = :id
        """,
        {"id": message_id, "remote_id": remote_id, "at": at},
    )


async def edit(tx: Tx, remote_id: str, body: str, html: str | None, at: datetime) -> Message | None:
    """Edit a message found by its remote id; it moves to the end of the stream (new seq)."""
    return await _rewrite(tx, "remote_id = :key", remote_id, body, html, at)


async def delete(tx: Tx, remote_id: str, at: datetime) -> Message | None:
    """Blank a deleted message (its place stays, its text goes); new seq."""
    return await _rewrite(tx, "remote_id = :key", remote_id, "", None, at, deleting=True)


async def edit_by_id(tx: Tx, message_id: int, body: str, at: datetime) -> Message | None:
    """The visitor's own edit (plain text): as :func:`edit`, the message found by its id."""
    return await _rewrite(tx, "id = :key", message_id, body, None, at)


async def delete_by_id(tx: Tx, message_id: int, at: datetime) -> Message | None:
    return await _rewrite(tx, "id = :key", message_id, "", None, at, deleting=True)


async def _rewrite(
    tx: Tx,
    where: str,
    key: str | int,
    body: str,
    html: str | None,
    at: datetime,
    *,
    deleting: bool = False,
) -> Message | None:
    """New text (or none, deleted) for a message not deleted yet; it gets a new seq."""
    stamp = "deleted_at = :at" if deleting else "edited_at = :at"
    row = await tx.fetchone(
        f"""
        UPDATE messages SET body = :body, html = :html, {stamp},
               seq = {next_seq(tx.dialect)}
        WHERE {where} AND deleted_at IS NULL
        RETURNING *
        """,
        {"key": key, "body": body, "html": html, "at": at},
    )
    return from_row(row) if row else None


async def replies_after(tx: Tx, session_id: str, floor: int) -> list[Message]:
    """Librarian replies after message ``floor`` that were not deleted, oldest first."""
    return _many(
        await tx.fetchall(
            """
            SELECT * FROM messages
            WHERE session_id = :s AND origin = 'librarian' AND id > :floor AND deleted_at IS NULL
            ORDER BY id
            """,
            {"s": session_id, "floor": floor},
        )
    )


async def first_from_visitor(tx: Tx, session_id: str) -> Message | None:
    row = await tx.fetchone(
        "SELECT * FROM messages WHERE session_id = :s AND origin = 'visitor' ORDER BY id LIMIT 1",
        {"s": session_id},
    )
    return from_row(row) if row else None


async def unanswered_since(tx: Tx, session_id: str) -> datetime | None:
    """When the visitor's first message was written, if no librarian has answered yet; None
    once one has (or before the visitor wrote)."""
    row = await tx.fetchone(
        """
        SELECT MIN(CASE WHEN origin = 'visitor' THEN created_at END) AS asked,
               COUNT(CASE WHEN origin = 'librarian' THEN 1 END) AS answers
        FROM messages WHERE session_id = :s
        """,
        {"s": session_id},
    )
    if row is None or row["answers"]:
        return None
    return moment(row["asked"])

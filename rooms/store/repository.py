"""The desk's queries. Named parameters, short statements, one transaction per change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiosqlite

from rooms.ids import MessageID, RoomID, SessionID, UserID
from rooms.session import Message, Origin, Session, SessionState, VisitorForm
from rooms.store.database import Database


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="milliseconds") if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _session(row: aiosqlite.Row) -> Session:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return Session(
        id=SessionID(row["id"]),
        state=SessionState(row["state"]),
        form=VisitorForm(
            name=row["visitor_name"],
            email=row["email"],
            topic=row["topic"],
            member_number=row["member_number"],
            language=row["language"],
            page_url=row["page_url"],
            user_agent=row["user_agent"],
        ),
        created_at=created_at,
        closed_at=_dt(row["closed_at"]),
        closed_by=row["closed_by"],
        room_id=RoomID(row["room_id"]) if row["room_id"] else None,
    )


def _message(row: aiosqlite.Row) -> Message:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return Message(
        id=MessageID(row["id"]),
        session_id=SessionID(row["session_id"]),
        origin=Origin(row["origin"]),
        body=row["body"],
        created_at=created_at,
        sender_name=row["sender_name"],
        sender_id=UserID(row["sender_id"]) if row["sender_id"] else None,
        client_id=row["client_id"],
        remote_id=row["remote_id"],
        needs_delivery=bool(row["needs_delivery"]),
        delivered_at=_dt(row["delivered_at"]),
    )


_MESSAGE_INSERT = """
    INSERT INTO messages (session_id, origin, body, sender_name, sender_id, client_id,
                          remote_id, needs_delivery, created_at)
    VALUES (:session_id, :origin, :body, :sender_name, :sender_id, :client_id,
            :remote_id, :needs_delivery, :created_at)
"""


class Store:
    """Sessions, messages and inbound dedup records."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # sessions

    async def insert_session(self, session: Session, token_hash: str) -> None:
        form = session.form
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                INSERT INTO sessions (id, token_hash, state, visitor_name, email, member_number,
                                      topic, language, page_url, user_agent, created_at)
                VALUES (:id, :token_hash, :state, :name, :email, :member_number,
                        :topic, :language, :page_url, :user_agent, :created_at)
                """,
                {
                    "id": session.id,
                    "token_hash": token_hash,
                    "state": session.state.value,
                    "name": form.name,
                    "email": form.email,
                    "member_number": form.member_number,
                    "topic": form.topic,
                    "language": form.language,
                    "page_url": form.page_url,
                    "user_agent": form.user_agent,
                    "created_at": _ts(session.created_at),
                },
            )

    async def get_session(self, session_id: str) -> tuple[Session, str] | None:
        """The session and its token hash, or None."""
        row = await self.db.fetchone("SELECT * FROM sessions WHERE id = :id", {"id": session_id})
        return (_session(row), row["token_hash"]) if row else None

    async def session_by_room(self, room_id: str) -> Session | None:
        row = await self.db.fetchone(
            "SELECT * FROM sessions WHERE room_id = :room_id", {"room_id": room_id}
        )
        return _session(row) if row else None

    async def open_sessions_with_rooms(self) -> list[Session]:
        rows = await self.db.fetchall(
            """
            SELECT * FROM sessions WHERE state = 'open' AND room_id IS NOT NULL
            ORDER BY created_at
            """
        )
        return [_session(row) for row in rows]

    async def attach_room(self, session_id: SessionID, room_id: RoomID) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE sessions SET room_id = :room_id WHERE id = :id AND room_id IS NULL",
                {"room_id": room_id, "id": session_id},
            )

    async def close_session(
        self, session_id: SessionID, closed_at: datetime, closed_by: str, notice: Message | None
    ) -> Message | None:
        """Close an open session and store its closing notice in one transaction.

        Returns the stored notice, or None when the session was already closed.
        """
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                """
                UPDATE sessions SET state = 'closed', closed_at = :closed_at, closed_by = :closed_by
                WHERE id = :id AND state = 'open'
                """,
                {"id": session_id, "closed_at": _ts(closed_at), "closed_by": closed_by},
            )
            if cur.rowcount == 0 or notice is None:
                return None
            return await self._insert_message(conn, notice)

    # messages

    async def _insert_message(self, conn: aiosqlite.Connection, message: Message) -> Message:
        cur = await conn.execute(_MESSAGE_INSERT, self._message_params(message))
        assert cur.lastrowid is not None
        return Message(**{**message.__dict__, "id": MessageID(cur.lastrowid)})

    @staticmethod
    def _message_params(message: Message) -> dict[str, Any]:
        return {
            "session_id": message.session_id,
            "origin": message.origin.value,
            "body": message.body,
            "sender_name": message.sender_name,
            "sender_id": message.sender_id,
            "client_id": message.client_id,
            "remote_id": message.remote_id,
            "needs_delivery": int(message.needs_delivery),
            "created_at": _ts(message.created_at),
        }

    async def insert_message(self, message: Message) -> tuple[Message, bool]:
        """Store a message; a repeated client_id or remote_id returns the stored one.

        Returns ``(message, created)``.
        """
        async with self.db.transaction() as conn:
            existing = await self._find_duplicate(conn, message)
            if existing is not None:
                return existing, False
            return await self._insert_message(conn, message), True

    async def _find_duplicate(self, conn: aiosqlite.Connection, message: Message) -> Message | None:
        if message.client_id is not None:
            sql = "SELECT * FROM messages WHERE session_id = :s AND client_id = :k"
            params = {"s": message.session_id, "k": message.client_id}
        elif message.remote_id is not None:
            sql = "SELECT * FROM messages WHERE remote_id = :k"
            params = {"k": message.remote_id}
        else:
            return None
        async with conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return _message(row) if row else None

    async def message_by_client_id(self, session_id: SessionID, client_id: str) -> Message | None:
        row = await self.db.fetchone(
            "SELECT * FROM messages WHERE session_id = :s AND client_id = :k",
            {"s": session_id, "k": client_id},
        )
        return _message(row) if row else None

    async def messages_after(self, session_id: SessionID, after: int, limit: int) -> list[Message]:
        rows = await self.db.fetchall(
            """
            SELECT * FROM messages WHERE session_id = :s AND id > :after ORDER BY id LIMIT :limit
            """,
            {"s": session_id, "after": after, "limit": limit},
        )
        return [_message(row) for row in rows]

    async def pending_deliveries(self, limit: int) -> list[Message]:
        rows = await self.db.fetchall(
            """
            SELECT * FROM messages WHERE needs_delivery = 1 AND delivered_at IS NULL
            ORDER BY id LIMIT :limit
            """,
            {"limit": limit},
        )
        return [_message(row) for row in rows]

    async def mark_delivered(
        self, message_id: MessageID, remote_id: str | None, at: datetime
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                UPDATE messages SET delivered_at = :at, remote_id = COALESCE(:remote_id, remote_id)
                WHERE id = :id
                """,
                {"id": message_id, "remote_id": remote_id, "at": _ts(at)},
            )

    async def is_remote_known(self, remote_id: str) -> bool:
        row = await self.db.fetchone(
            """
            SELECT 1 FROM messages WHERE remote_id = :id
            UNION ALL SELECT 1 FROM inbound_events WHERE event_id = :id
            """,
            {"id": remote_id},
        )
        return row is not None

    # inbound dedup

    async def batch_seen(self, batch_id: str) -> bool:
        row = await self.db.fetchone(
            "SELECT 1 FROM inbound_batches WHERE batch_id = :id", {"id": batch_id}
        )
        return row is not None

    async def record_batch(self, batch_id: str, at: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO inbound_batches (batch_id, received_at) VALUES (:id, :at)",
                {"id": batch_id, "at": _ts(at)},
            )

    async def record_event(self, event_id: str, at: datetime) -> bool:
        """Remember an inbound event; False if it was handled before."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO inbound_events (event_id, handled_at) VALUES (:id, :at)",
                {"id": event_id, "at": _ts(at)},
            )
            return cur.rowcount == 1

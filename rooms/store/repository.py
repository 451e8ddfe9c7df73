"""The desk's queries. Named parameters, short statements, one transaction per change."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from rooms.feedback import Feedback
from rooms.ids import MessageID, RoomID, SessionID, UserID
from rooms.intents import Intent, IntentKind
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
        owner=UserID(row["owner"]) if row["owner"] else None,
        owner_name=row["owner_name"],
        claimed_at=_dt(row["claimed_at"]),
        queued_at=_dt(row["queued_at"]),
        escalated_at=_dt(row["escalated_at"]),
        read_up_to=row["read_up_to"],
        verification=row["verification"],
        offline=bool(row["offline"]),
        visitor_seen_up_to=row["visitor_seen_up_to"],
        emailed_up_to=row["emailed_up_to"],
        client_key=row["client_key"],
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
        seq=row["seq"],
        html=row["html"],
        edited_at=_dt(row["edited_at"]),
        deleted_at=_dt(row["deleted_at"]),
    )


def _intent(row: aiosqlite.Row) -> Intent:
    created_at = _dt(row["created_at"])
    assert created_at is not None
    return Intent(
        id=int(row["id"]),
        lane=row["lane"],
        kind=IntentKind(row["kind"]),
        payload=json.loads(row["payload"]),
        created_at=created_at,
        attempts=int(row["attempts"]),
    )


_MESSAGE_INSERT = """
    INSERT INTO messages (session_id, origin, body, html, sender_name, sender_id, client_id,
                          remote_id, needs_delivery, created_at, seq)
    VALUES (:session_id, :origin, :body, :html, :sender_name, :sender_id, :client_id,
            :remote_id, :needs_delivery, :created_at,
            (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages))
"""
_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM messages)"


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
                                      topic, language, page_url, user_agent, created_at, offline,
                                      client_key)
                VALUES (:id, :token_hash, :state, :name, :email, :member_number,
                        :topic, :language, :page_url, :user_agent, :created_at, :offline,
                        :client_key)
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
                    "offline": int(session.offline),
                    "client_key": session.client_key,
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
        async with conn.execute("SELECT * FROM messages WHERE id = ?", (cur.lastrowid,)) as c:
            row = await c.fetchone()
        assert row is not None
        return _message(row)

    @staticmethod
    def _message_params(message: Message) -> dict[str, Any]:
        return {
            "session_id": message.session_id,
            "origin": message.origin.value,
            "body": message.body,
            "html": message.html,
            "sender_name": message.sender_name,
            "sender_id": message.sender_id,
            "client_id": message.client_id,
            "remote_id": message.remote_id,
            "needs_delivery": int(message.needs_delivery),
            "created_at": _ts(message.created_at),
        }

    async def insert_message(
        self, message: Message, *, enqueue_at: datetime | None = None
    ) -> tuple[Message, bool]:
        """Store a message; a repeated client_id or remote_id returns the stored one.

        ``enqueue_at`` puts a session that is not in the queue yet into it (first message).
        Returns ``(message, created)``.
        """
        async with self.db.transaction() as conn:
            existing = await self._find_duplicate(conn, message)
            if existing is not None:
                return existing, False
            if enqueue_at is not None:
                await conn.execute(
                    """
                    UPDATE sessions SET queued_at = :at
                    WHERE id = :id AND queued_at IS NULL AND owner IS NULL
                    """,
                    {"id": message.session_id, "at": _ts(enqueue_at)},
                )
            return await self._insert_message(conn, message), True

    async def update_message(
        self,
        remote_id: str,
        *,
        body: str | None = None,
        html: str | None = None,
        edited_at: datetime | None = None,
        deleted_at: datetime | None = None,
    ) -> Message | None:
        """Edit or delete a message found by its remote id; it moves to the end of the stream."""
        async with self.db.transaction() as conn:
            if deleted_at is not None:
                sql = f"""
                    UPDATE messages SET body = '', html = NULL, deleted_at = :deleted_at,
                           seq = {_NEXT_SEQ}
                    WHERE remote_id = :remote_id AND deleted_at IS NULL
                """
            else:
                sql = f"""
                    UPDATE messages SET body = :body, html = :html, edited_at = :edited_at,
                           seq = {_NEXT_SEQ}
                    WHERE remote_id = :remote_id AND deleted_at IS NULL
                """
            params = {
                "remote_id": remote_id,
                "body": body,
                "html": html,
                "edited_at": _ts(edited_at),
                "deleted_at": _ts(deleted_at),
            }
            cur = await conn.execute(sql, params)
            if cur.rowcount == 0:
                return None
            async with conn.execute(
                "SELECT * FROM messages WHERE remote_id = ?", (remote_id,)
            ) as c:
                row = await c.fetchone()
        return _message(row) if row else None

    async def message_by_remote_id(self, remote_id: str) -> Message | None:
        row = await self.db.fetchone(
            "SELECT * FROM messages WHERE remote_id = :r", {"r": remote_id}
        )
        return _message(row) if row else None

    async def message(self, message_id: int) -> Message | None:
        row = await self.db.fetchone("SELECT * FROM messages WHERE id = :id", {"id": message_id})
        return _message(row) if row else None

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
            SELECT * FROM messages WHERE session_id = :s AND seq > :after
            ORDER BY seq LIMIT :limit
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
        """The message is in its room (``remote_id``: its event there) or needs no room."""
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                UPDATE messages SET delivered_at = :at, remote_id = COALESCE(:remote_id, remote_id)
                WHERE id = :id
                """,
                {"id": message_id, "remote_id": remote_id, "at": _ts(at)},
            )

    # inbound dedup: event ids are unique forever (transaction ids are not)

    async def event_known(self, event_id: str) -> bool:
        """Whether an inbound event was handled (or refused as poison) before."""
        row = await self.db.fetchone(
            """
            SELECT 1 FROM inbound_events WHERE event_id = :id
            UNION ALL SELECT 1 FROM messages WHERE remote_id = :id
            """,
            {"id": event_id},
        )
        return row is not None

    async def record_event(self, event_id: str, at: datetime) -> bool:
        """Claim an inbound event; False if it was handled before.

        Called inside the unit of work that carries out the event's effect, so the effect and
        the claim commit (or roll back) together.
        """
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO inbound_events (event_id, handled_at) VALUES (:id, :at)",
                {"id": event_id, "at": _ts(at)},
            )
            return cur.rowcount == 1

    async def record_poison(
        self, event_id: str, room_id: str | None, event_type: str | None, reason: str, at: datetime
    ) -> None:
        """An event that cannot be handled: keep why, and never try it again."""
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                INSERT OR IGNORE INTO inbound_failures (event_id, room_id, event_type, reason,
                                                        failed_at)
                VALUES (:id, :room, :type, :reason, :at)
                """,
                {
                    "id": event_id,
                    "room": room_id,
                    "type": event_type,
                    "reason": reason,
                    "at": _ts(at),
                },
            )
            await conn.execute(
                "INSERT OR IGNORE INTO inbound_events (event_id, handled_at) VALUES (:id, :at)",
                {"id": event_id, "at": _ts(at)},
            )

    # intents: what the desk decided to tell the chat network, performed from here

    async def add_intent(
        self, lane: str, kind: IntentKind, payload: dict[str, Any], at: datetime
    ) -> int:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                """
                INSERT INTO intents (lane, kind, payload, created_at)
                VALUES (:lane, :kind, :payload, :at)
                """,
                {
                    "lane": lane,
                    "kind": kind.value,
                    "payload": json.dumps(payload, separators=(",", ":")),
                    "at": _ts(at),
                },
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def pending_lanes(self) -> list[str]:
        """Lanes with intents to perform, the longest waiting first."""
        rows = await self.db.fetchall(
            """
            SELECT lane FROM intents WHERE done_at IS NULL AND failed_at IS NULL
            GROUP BY lane ORDER BY MIN(id)
            """
        )
        return [row["lane"] for row in rows]

    async def next_intent(self, lane: str) -> Intent | None:
        row = await self.db.fetchone(
            """
            SELECT * FROM intents WHERE lane = :lane AND done_at IS NULL AND failed_at IS NULL
            ORDER BY id LIMIT 1
            """,
            {"lane": lane},
        )
        return _intent(row) if row else None

    async def pending_intents(self, lane: str | None = None) -> list[Intent]:
        rows = await self.db.fetchall(
            """
            SELECT * FROM intents WHERE done_at IS NULL AND failed_at IS NULL
              AND (:lane IS NULL OR lane = :lane)
            ORDER BY id
            """,
            {"lane": lane},
        )
        return [_intent(row) for row in rows]

    async def last_intent_id(self) -> int:
        row = await self.db.fetchone("SELECT COALESCE(MAX(id), 0) FROM intents")
        return int(row[0]) if row else 0

    async def intent_done(self, intent_id: int, at: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE intents SET done_at = :at WHERE id = :id",
                {"id": intent_id, "at": _ts(at)},
            )

    async def intent_failed(
        self, intent_id: int, error: str, at: datetime, *, give_up: bool
    ) -> int:
        """Count a refused attempt; ``give_up`` sets it aside for good. Returns attempts."""
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                UPDATE intents SET attempts = attempts + 1, last_error = :error,
                       failed_at = CASE WHEN :give_up THEN :at ELSE NULL END
                WHERE id = :id
                """,
                {"id": intent_id, "error": error[:500], "at": _ts(at), "give_up": give_up},
            )
            async with conn.execute("SELECT attempts FROM intents WHERE id = ?", (intent_id,)) as c:
                row = await c.fetchone()
        return int(row[0]) if row else 0

    # queue and owner

    def unit(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """One transaction around several store calls (they join it): all or nothing."""
        return self.db.transaction()

    async def _update_session(self, sql: str, params: dict[str, Any]) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute(sql, params)
            return cur.rowcount > 0

    async def claim(self, session_id: SessionID, owner: str, owner_name: str, at: datetime) -> bool:
        """Make ``owner`` the owner if nobody is; True for exactly one caller."""
        return await self._update_session(
            """
            UPDATE sessions SET owner = :owner, owner_name = :name, claimed_at = :at,
                   queued_at = COALESCE(queued_at, :at)
            WHERE id = :id AND state = 'open' AND owner IS NULL
            """,
            {"id": session_id, "owner": owner, "name": owner_name, "at": _ts(at)},
        )

    async def transfer(
        self, session_id: SessionID, from_owner: str, to: str, to_name: str, at: datetime
    ) -> bool:
        return await self._update_session(
            """
            UPDATE sessions SET owner = :to, owner_name = :name, claimed_at = :at
            WHERE id = :id AND state = 'open' AND owner = :from_owner
            """,
            {"id": session_id, "from_owner": from_owner, "to": to, "name": to_name, "at": _ts(at)},
        )

    async def requeue(self, session_id: SessionID, owner: str, at: datetime) -> bool:
        return await self._update_session(
            """
            UPDATE sessions SET owner = NULL, owner_name = NULL, claimed_at = NULL,
                   queued_at = :at, escalated_at = NULL
            WHERE id = :id AND state = 'open' AND owner = :owner
            """,
            {"id": session_id, "owner": owner, "at": _ts(at)},
        )

    async def mark_escalated(self, session_id: SessionID, at: datetime) -> bool:
        return await self._update_session(
            """
            UPDATE sessions SET escalated_at = :at
            WHERE id = :id AND state = 'open' AND owner IS NULL AND escalated_at IS NULL
            """,
            {"id": session_id, "at": _ts(at)},
        )

    async def set_read_up_to(self, session_id: SessionID, message_id: int) -> bool:
        return await self._update_session(
            "UPDATE sessions SET read_up_to = :m WHERE id = :id AND read_up_to < :m",
            {"id": session_id, "m": message_id},
        )

    async def waiting_sessions(self) -> list[Session]:
        rows = await self.db.fetchall(
            """
            SELECT * FROM sessions
            WHERE state = 'open' AND owner IS NULL AND queued_at IS NOT NULL
            ORDER BY queued_at, rowid
            """
        )
        return [_session(row) for row in rows]

    async def open_sessions(self) -> list[Session]:
        rows = await self.db.fetchall(
            "SELECT * FROM sessions WHERE state = 'open' AND queued_at IS NOT NULL "
            "ORDER BY queued_at, rowid"
        )
        return [_session(row) for row in rows]

    async def sessions_owned_by(self, owner: str) -> list[Session]:
        rows = await self.db.fetchall(
            "SELECT * FROM sessions WHERE state = 'open' AND owner = :o ORDER BY claimed_at",
            {"o": owner},
        )
        return [_session(row) for row in rows]

    async def queue_position(self, session: Session) -> int | None:
        if session.owner is not None or session.queued_at is None or not session.is_open:
            return None
        row = await self.db.fetchone(
            """
            SELECT COUNT(*) FROM sessions
            WHERE state = 'open' AND owner IS NULL AND queued_at IS NOT NULL
              AND (queued_at < :at OR (queued_at = :at
                   AND rowid <= (SELECT rowid FROM sessions WHERE id = :id)))
            """,
            {"at": _ts(session.queued_at), "id": session.id},
        )
        return int(row[0]) if row else None

    # roster

    async def duty(self) -> dict[str, bool]:
        rows = await self.db.fetchall("SELECT user_id, on_duty FROM roster")
        return {row["user_id"]: bool(row["on_duty"]) for row in rows}

    async def set_duty(self, user_id: str, on_duty: bool, at: datetime) -> bool:
        """Record a duty change; False when nothing changed."""
        async with self.db.transaction() as conn:
            async with conn.execute(
                "SELECT on_duty FROM roster WHERE user_id = ?", (user_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None and bool(row["on_duty"]) == on_duty:
                return False
            await conn.execute(
                """
                INSERT INTO roster (user_id, on_duty, changed_at) VALUES (:u, :d, :at)
                ON CONFLICT (user_id) DO UPDATE SET on_duty = :d, changed_at = :at
                """,
                {"u": user_id, "d": int(on_duty), "at": _ts(at)},
            )
            return True

    # notes and adapter state

    async def add_note(self, session_id: SessionID, author: str, body: str, at: datetime) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO notes (session_id, author, body, created_at) VALUES (:s, :a, :b, :at)",
                {"s": session_id, "a": author, "b": body, "at": _ts(at)},
            )

    async def notes(self, session_id: SessionID) -> list[tuple[str, str, datetime]]:
        rows = await self.db.fetchall(
            "SELECT author, body, created_at FROM notes WHERE session_id = :s ORDER BY id",
            {"s": session_id},
        )
        return [(r["author"], r["body"], _dt(r["created_at"]) or datetime.min) for r in rows]

    async def get_state(self, key: str) -> str | None:
        row = await self.db.fetchone("SELECT value FROM adapter_state WHERE key = :k", {"k": key})
        return str(row["value"]) if row else None

    async def set_state(self, key: str, value: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO adapter_state (key, value) VALUES (:k, :v) "
                "ON CONFLICT (key) DO UPDATE SET value = :v",
                {"k": key, "v": value},
            )

    # feedback

    async def upsert_feedback(
        self,
        session_id: SessionID,
        rating: int,
        comment: str | None,
        librarian: str | None,
        at: datetime,
    ) -> Feedback:
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                INSERT INTO feedback (session_id, rating, comment, librarian, created_at,
                                      updated_at)
                VALUES (:s, :r, :c, :l, :at, :at)
                ON CONFLICT (session_id) DO UPDATE
                SET rating = :r, comment = COALESCE(:c, comment), updated_at = :at
                """,
                {"s": session_id, "r": rating, "c": comment, "l": librarian, "at": _ts(at)},
            )
        found = await self.feedback(session_id)
        assert found is not None
        return found

    async def feedback(self, session_id: SessionID) -> Feedback | None:
        row = await self.db.fetchone(
            "SELECT * FROM feedback WHERE session_id = :s", {"s": session_id}
        )
        if row is None:
            return None
        created, updated = _dt(row["created_at"]), _dt(row["updated_at"])
        assert created is not None and updated is not None
        return Feedback(
            SessionID(row["session_id"]),
            row["rating"],
            row["comment"],
            row["librarian"],
            created,
            updated,
        )

    async def ratings_by_librarian(self) -> list[tuple[str, int, float]]:
        """Per-librarian report: (librarian, number of ratings, average rating)."""
        rows = await self.db.fetchall(
            """
            SELECT librarian, COUNT(*) AS n, AVG(rating) AS average FROM feedback
            WHERE librarian IS NOT NULL GROUP BY librarian ORDER BY librarian
            """
        )
        return [(r["librarian"], r["n"], float(r["average"])) for r in rows]

    # outgoing mail

    async def enqueue_mail(
        self,
        *,
        session_id: SessionID | None,
        kind: str,
        recipient: str,
        subject: str,
        text_body: str,
        html_body: str | None,
        at: datetime,
        dedup_key: str | None = None,
    ) -> int:
        async with self.db.transaction() as conn:
            if dedup_key is not None:
                async with conn.execute(
                    "SELECT id FROM mail_outbox WHERE dedup_key = ?", (dedup_key,)
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:
                    return int(row[0])
            cur = await conn.execute(
                """
                INSERT INTO mail_outbox (session_id, kind, dedup_key, recipient, subject,
                                         text_body, html_body, created_at)
                VALUES (:s, :k, :d, :to, :subject, :text, :html, :at)
                """,
                {
                    "s": session_id,
                    "k": kind,
                    "d": dedup_key,
                    "to": recipient,
                    "subject": subject,
                    "text": text_body,
                    "html": html_body,
                    "at": _ts(at),
                },
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    async def pending_mail(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT * FROM mail_outbox WHERE sent_at IS NULL ORDER BY id LIMIT :n", {"n": limit}
        )
        return [dict(row) for row in rows]

    async def mark_mail(self, mail_id: int, *, sent_at: datetime | None, error: str | None) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                UPDATE mail_outbox SET sent_at = :sent, last_error = :error,
                       attempts = attempts + 1
                WHERE id = :id
                """,
                {"id": mail_id, "sent": _ts(sent_at), "error": error},
            )

    async def last_mail_at(self, session_id: SessionID, kind: str) -> datetime | None:
        row = await self.db.fetchone(
            "SELECT MAX(created_at) FROM mail_outbox WHERE session_id = :s AND kind = :k",
            {"s": session_id, "k": kind},
        )
        return _dt(row[0]) if row and row[0] else None

    # verification

    async def set_verification(self, session_id: SessionID, state: str) -> None:
        await self._update_session(
            "UPDATE sessions SET verification = :v WHERE id = :id", {"id": session_id, "v": state}
        )

    async def audit_verification(
        self,
        session_id: SessionID,
        client_key: str,
        requested_by: str | None,
        outcome: str,
        at: datetime,
    ) -> None:
        """Who tried, when, with what outcome: never what was typed."""
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                INSERT INTO verification_audit (session_id, client_key, requested_by, outcome,
                                                created_at)
                VALUES (:s, :c, :r, :o, :at)
                """,
                {"s": session_id, "c": client_key, "r": requested_by, "o": outcome, "at": _ts(at)},
            )

    async def verification_attempts(self, session_id: SessionID) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM verification_audit WHERE session_id = :s AND outcome != 'locked'",
            {"s": session_id},
        )
        return int(row[0]) if row else 0

    # what the visitor has seen, what went by email

    async def set_visitor_seen(self, session_id: SessionID, message_id: int) -> bool:
        return await self._update_session(
            "UPDATE sessions SET visitor_seen_up_to = :m "
            "WHERE id = :id AND visitor_seen_up_to < :m",
            {"id": session_id, "m": message_id},
        )

    async def set_token_hash(self, session_id: SessionID, token_hash: str) -> None:
        await self._update_session(
            "UPDATE sessions SET token_hash = :h WHERE id = :id",
            {"id": session_id, "h": token_hash},
        )

    async def unseen_replies(self, before: datetime) -> list[tuple[Session, list[Message]]]:
        """Sessions with librarian replies the visitor has not seen nor been emailed, the
        newest of them older than ``before``."""
        rows = await self.db.fetchall(
            """
            SELECT s.id FROM sessions s JOIN messages m ON m.session_id = s.id
            WHERE m.origin = 'librarian' AND m.deleted_at IS NULL
              AND m.id > s.visitor_seen_up_to AND m.id > s.emailed_up_to
            GROUP BY s.id HAVING MAX(m.created_at) <= :before
            """,
            {"before": _ts(before)},
        )
        found = []
        for row in rows:
            got = await self.get_session(row["id"])
            if got is None:
                continue
            session = got[0]
            floor = max(session.visitor_seen_up_to, session.emailed_up_to)
            replies = [
                m
                for m in await self.messages_after(session.id, 0, 100_000)
                if m.origin is Origin.LIBRARIAN and m.id > floor and m.deleted_at is None
            ]
            if replies:
                found.append((session, replies))
        return found

    async def mark_emailed(self, session_id: SessionID, message_id: int) -> None:
        await self._update_session(
            "UPDATE sessions SET emailed_up_to = :m WHERE id = :id AND emailed_up_to < :m",
            {"id": session_id, "m": message_id},
        )

    async def offline_waiting(self) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM sessions WHERE state = 'open' AND offline = 1 "
            "AND owner IS NULL AND queued_at IS NOT NULL"
        )
        return int(row[0]) if row else 0

    # bans

    async def ban(
        self,
        client_key: str,
        *,
        until: datetime,
        banned_by: str,
        reason: str | None,
        session_id: SessionID | None,
        at: datetime,
    ) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                """
                INSERT INTO bans (client_key, reason, banned_by, session_id, until, created_at)
                VALUES (:k, :r, :b, :s, :until, :at)
                ON CONFLICT (client_key) DO UPDATE
                SET reason = :r, banned_by = :b, session_id = :s, until = :until
                """,
                {
                    "k": client_key,
                    "r": reason,
                    "b": banned_by,
                    "s": session_id,
                    "until": _ts(until),
                    "at": _ts(at),
                },
            )

    async def banned_until(self, client_key: str, now: datetime) -> datetime | None:
        row = await self.db.fetchone(
            "SELECT until FROM bans WHERE client_key = :k AND until > :now",
            {"k": client_key, "now": _ts(now)},
        )
        return _dt(row["until"]) if row else None

    async def unban(self, client_key: str) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute("DELETE FROM bans WHERE client_key = ?", (client_key,))
            return cur.rowcount > 0

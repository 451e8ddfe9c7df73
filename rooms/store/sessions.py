"""The ``sessions`` table: one row per visitor conversation (rooms/session.py)."""

from __future__ import annotations

from datetime import datetime

from rooms.ids import RoomID, SessionID, UserID
from rooms.session import Session, SessionState, VisitorForm
from rooms.store.database import POSTGRES, Row, Tx
from rooms.store.values import moment, required_moment


def from_row(row: Row) -> Session:
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
        created_at=required_moment(row["created_at"]),
        closed_at=moment(row["closed_at"]),
        closed_by=row["closed_by"],
        room_id=RoomID(row["room_id"]) if row["room_id"] else None,
        owner=UserID(row["owner"]) if row["owner"] else None,
        owner_name=row["owner_name"],
        claimed_at=moment(row["claimed_at"]),
        queued_at=moment(row["queued_at"]),
        escalated_at=moment(row["escalated_at"]),
        read_up_to=row["read_up_to"],
        verification=row["verification"],
        offline=bool(row["offline"]),
        visitor_seen_up_to=row["visitor_seen_up_to"],
        emailed_up_to=row["emailed_up_to"],
        client_key=row["client_key"],
        first_reply_at=moment(row["first_reply_at"]),
        team=row["team"],
        overflowed_at=moment(row["overflowed_at"]),
    )


def _many(rows: list[Row]) -> list[Session]:
    return [from_row(row) for row in rows]


async def insert(tx: Tx, session: Session, token_hash: str) -> None:
    form = session.form
    arrival = (
        "" if tx.dialect == "postgres" else ", (SELECT COALESCE(MAX(arrival), 0) + 1 FROM sessions)"
    )
    await tx.execute(
        f"""
        INSERT INTO sessions (id, token_hash, state, visitor_name, email, member_number, topic,
                              language, page_url, user_agent, created_at, offline, client_key
                              {", arrival" if arrival else ""})
        VALUES (:id, :token_hash, :state, :name, :email, :member_number, :topic, :language,
                :page_url, :user_agent, :created_at, :offline, :client_key{arrival})
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
            "created_at": session.created_at,
            "offline": session.offline,
            "client_key": session.client_key,
        },
    )


async def get(tx: Tx, session_id: str) -> Session | None:
    row = await tx.fetchone("SELECT * FROM sessions WHERE id = :id", {"id": session_id})
    return from_row(row) if row else None


async def get_locked(tx: Tx, session_id: str) -> Session | None:
    """``Tx.lock_session`` and ``get`` in one statement: the session, with the writers of its
    chat serialised from here to the end of the unit (a row lock on PostgreSQL)."""
    lock = " FOR UPDATE" if tx.dialect == POSTGRES else ""
    row = await tx.fetchone(f"SELECT * FROM sessions WHERE id = :id{lock}", {"id": session_id})
    return from_row(row) if row else None


async def get_with_token(tx: Tx, session_id: str) -> tuple[Session, str] | None:
    row = await tx.fetchone("SELECT * FROM sessions WHERE id = :id", {"id": session_id})
    return (from_row(row), row["token_hash"]) if row else None


async def by_room(tx: Tx, room_id: str) -> Session | None:
    row = await tx.fetchone("SELECT * FROM sessions WHERE room_id = :r", {"r": room_id})
    return from_row(row) if row else None


async def _update(tx: Tx, sql: str, params: dict[str, object]) -> Session | None:
    """An ``UPDATE … RETURNING *``: the session as changed, or None when nothing matched."""
    row = await tx.fetchone(sql + " RETURNING *", params)
    return from_row(row) if row else None


async def attach_room(tx: Tx, session_id: str, room_id: str) -> Session | None:
    return await _update(
        tx,
        "UPDATE sessions SET room_id = :room_id WHERE id = :id AND room_id IS NULL",
        {"room_id": room_id, "id": session_id},
    )


async def close(tx: Tx, session_id: str, at: datetime, by: str) -> Session | None:
    """Close an open session; None if it was closed already."""
    return await _update(
        tx,
        """
        UPDATE sessions SET state = 'closed', closed_at = :at, closed_by = :by
        WHERE id = :id AND state = 'open'
        """,
        {"id": session_id, "at": at, "by": by},
    )


async def enqueue(tx: Tx, session_id: str, at: datetime) -> Session | None:
    """Put a session in the queue (its first message); None if it was there already."""
    return await _update(
        tx,
        """
        UPDATE sessions SET queued_at = :at
        WHERE id = :id AND queued_at IS NULL AND owner IS NULL
        """,
        {"id": session_id, "at": at},
    )


async def claim(tx: Tx, session_id: str, owner: str, name: str, at: datetime) -> Session | None:
    """Make ``owner`` the owner if nobody is: exactly one of several claims wins."""
    return await _update(
        tx,
        """
        UPDATE sessions SET owner = :owner, owner_name = :name, claimed_at = :at,
               queued_at = COALESCE(queued_at, :at)
        WHERE id = :id AND state = 'open' AND owner IS NULL
        """,
        {"id": session_id, "owner": owner, "name": name, "at": at},
    )


async def transfer(
    tx: Tx, session_id: str, from_owner: str, to: str, to_name: str, at: datetime
) -> Session | None:
    return await _update(
        tx,
        """
        UPDATE sessions SET owner = :to, owner_name = :name, claimed_at = :at
        WHERE id = :id AND state = 'open' AND owner = :from_owner
        """,
        {"id": session_id, "from_owner": from_owner, "to": to, "name": to_name, "at": at},
    )


async def requeue(tx: Tx, session_id: str, owner: str, at: datetime) -> Session | None:
    return await _update(
        tx,
        """
        UPDATE sessions SET owner = NULL, owner_name = NULL, claimed_at = NULL,
               queued_at = :at, escalated_at = NULL, overflowed_at = NULL
        WHERE id = :id AND state = 'open' AND owner = :owner
        """,
        {"id": session_id, "owner": owner, "at": at},
    )


async def mark_escalated(tx: Tx, session_id: str, at: datetime) -> Session | None:
    return await _update(
        tx,
        """
        UPDATE sessions SET escalated_at = :at
        WHERE id = :id AND state = 'open' AND owner IS NULL AND escalated_at IS NULL
        """,
        {"id": session_id, "at": at},
    )


async def set_team(tx: Tx, session_id: str, team: str | None) -> Session | None:
    """The team the chat is routed to (None: the whole desk)."""
    return await _update(
        tx, "UPDATE sessions SET team = :t WHERE id = :id", {"id": session_id, "t": team}
    )


async def to_team(tx: Tx, session_id: str, team: str, at: datetime) -> Session | None:
    """Back to waiting, for ``team`` (a transfer to a team): its clocks start again."""
    return await _update(
        tx,
        """
        UPDATE sessions SET owner = NULL, owner_name = NULL, claimed_at = NULL, team = :t,
               queued_at = :at, escalated_at = NULL, overflowed_at = NULL
        WHERE id = :id AND state = 'open'
        """,
        {"id": session_id, "t": team, "at": at},
    )


async def mark_overflowed(tx: Tx, session_id: str, at: datetime) -> Session | None:
    """The team's time ran out (or it has nobody on duty): the whole desk is rung."""
    return await _update(
        tx,
        """
        UPDATE sessions SET overflowed_at = :at
        WHERE id = :id AND state = 'open' AND owner IS NULL AND overflowed_at IS NULL
        """,
        {"id": session_id, "at": at},
    )


async def active_chats(tx: Tx) -> dict[str, int]:
    """Open chats per owner."""
    rows = await tx.fetchall(
        """
        SELECT owner, COUNT(*) AS n FROM sessions
        WHERE state = 'open' AND owner IS NOT NULL GROUP BY owner
        """
    )
    return {row["owner"]: int(row["n"]) for row in rows}


async def raise_mark(tx: Tx, session_id: str, column: str, message_id: int) -> bool:
    """Move a high-water mark (``read_up_to``, ``visitor_seen_up_to``, ``emailed_up_to``)
    forward; False if it was there already."""
    assert column in ("read_up_to", "visitor_seen_up_to", "emailed_up_to")
    changed = await tx.execute(
        f"UPDATE sessions SET {column} = :m WHERE id = :id AND {column} < :m",
        {"id": session_id, "m": message_id},
    )
    return changed > 0


async def set_token_hash(tx: Tx, session_id: str, token_hash: str) -> None:
    await tx.execute(
        "UPDATE sessions SET token_hash = :h WHERE id = :id", {"id": session_id, "h": token_hash}
    )


async def set_verification(tx: Tx, session_id: str, state: str) -> Session | None:
    return await _update(
        tx, "UPDATE sessions SET verification = :v WHERE id = :id", {"id": session_id, "v": state}
    )


async def set_language(tx: Tx, session_id: str, language: str) -> Session | None:
    return await _update(
        tx, "UPDATE sessions SET language = :l WHERE id = :id", {"id": session_id, "l": language}
    )


async def open_with_rooms(tx: Tx) -> list[Session]:
    return _many(
        await tx.fetchall(
            """
            SELECT * FROM sessions WHERE state = 'open' AND room_id IS NOT NULL
            ORDER BY created_at, arrival
            """
        )
    )


async def waiting(tx: Tx) -> list[Session]:
    return _many(
        await tx.fetchall(
            """
            SELECT * FROM sessions
            WHERE state = 'open' AND owner IS NULL AND queued_at IS NOT NULL
            ORDER BY queued_at, arrival
            """
        )
    )


async def in_queue_or_served(tx: Tx) -> list[Session]:
    return _many(
        await tx.fetchall(
            """
            SELECT * FROM sessions WHERE state = 'open' AND queued_at IS NOT NULL
            ORDER BY queued_at, arrival
            """
        )
    )


async def owned_by(tx: Tx, owner: str) -> list[Session]:
    return _many(
        await tx.fetchall(
            "SELECT * FROM sessions WHERE state = 'open' AND owner = :o ORDER BY claimed_at",
            {"o": owner},
        )
    )


async def queue_position(tx: Tx, session: Session) -> int | None:
    if session.owner is not None or session.queued_at is None or not session.is_open:
        return None
    found = await tx.fetchval(
        """
        SELECT COUNT(*) FROM sessions
        WHERE state = 'open' AND owner IS NULL AND queued_at IS NOT NULL
          AND (queued_at < :at OR (queued_at = :at
               AND arrival <= (SELECT arrival FROM sessions WHERE id = :id)))
        """,
        {"at": session.queued_at, "id": session.id},
    )
    return int(found) if found is not None else None


async def offline_waiting(tx: Tx) -> int:
    found = await tx.fetchval(
        """
        SELECT COUNT(*) FROM sessions
        WHERE state = 'open' AND offline AND owner IS NULL AND queued_at IS NOT NULL
        """
    )
    return int(found or 0)


async def with_unseen_replies(tx: Tx, before: datetime) -> list[Session]:
    """Sessions with librarian replies the visitor has neither seen nor been emailed, the
    newest of them older than ``before``."""
    rows = await tx.fetchall(
        """
        SELECT s.* FROM sessions s
        WHERE s.id IN (
            SELECT m.session_id FROM messages m JOIN sessions t ON t.id = m.session_id
            WHERE m.origin = 'librarian' AND m.deleted_at IS NULL
              AND m.id > t.visitor_seen_up_to AND m.id > t.emailed_up_to
            GROUP BY m.session_id HAVING MAX(m.created_at) <= :before
        )
        ORDER BY s.arrival
        """,
        {"before": before},
    )
    return _many(rows)

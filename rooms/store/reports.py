"""What the reports read, and the facts kept for them: the first librarian reply of a chat, its
tags and READ-scale effort, and its transfers (rooms/reports.py computes the figures)."""

from __future__ import annotations

from datetime import datetime

from rooms.ids import SessionID, UserID
from rooms.reports import ChatFacts
from rooms.store.database import Tx
from rooms.store.values import moment, required_moment


async def first_reply(tx: Tx, session_id: str, by: str, at: datetime) -> None:
    """Note the chat's first librarian reply (later replies change nothing)."""
    await tx.execute(
        """
        UPDATE sessions SET first_reply_at = :at, first_reply_by = :by
        WHERE id = :id AND first_reply_at IS NULL
        """,
        {"id": session_id, "by": by, "at": at},
    )


async def record_transfer(
    tx: Tx, session_id: str, from_owner: str | None, to_owner: str, at: datetime
) -> None:
    await tx.execute(
        """
        INSERT INTO transfers (session_id, from_owner, to_owner, at)
        VALUES (:id, :from_owner, :to_owner, :at)
        """,
        {"id": session_id, "from_owner": from_owner, "to_owner": to_owner, "at": at},
    )


async def set_tags(
    tx: Tx, session_id: str, tags: list[str], read_scale: int | None, by: str, at: datetime
) -> None:
    """Add ``tags`` to the chat (kept ones stay) and set its READ scale when given."""
    for tag in tags:
        await tx.execute(
            """
            INSERT INTO session_tags (session_id, tag, tagged_by, tagged_at)
            VALUES (:id, :tag, :by, :at) ON CONFLICT (session_id, tag) DO NOTHING
            """,
            {"id": session_id, "tag": tag, "by": by, "at": at},
        )
    if read_scale is not None:
        await tx.execute(
            "UPDATE sessions SET read_scale = :scale WHERE id = :id",
            {"id": session_id, "scale": read_scale},
        )


async def remove_tag(tx: Tx, session_id: str, tag: str) -> bool:
    removed = await tx.execute(
        "DELETE FROM session_tags WHERE session_id = :id AND tag = :tag",
        {"id": session_id, "tag": tag},
    )
    return removed > 0


async def tags_of(tx: Tx, session_id: str) -> tuple[list[str], int | None]:
    rows = await tx.fetchall(
        "SELECT tag FROM session_tags WHERE session_id = :id ORDER BY tag", {"id": session_id}
    )
    scale = await tx.fetchval("SELECT read_scale FROM sessions WHERE id = :id", {"id": session_id})
    return [row["tag"] for row in rows], (int(scale) if scale is not None else None)


async def facts(tx: Tx, start: datetime, end: datetime) -> list[ChatFacts]:
    """Every chat started in [start, end), in order of arrival, with what the reports count."""
    return await _facts(
        tx, "created_at >= :start AND created_at < :end", {"start": start, "end": end}
    )


async def facts_of(tx: Tx, session_id: str) -> ChatFacts | None:
    found = await _facts(tx, "id = :id", {"id": session_id})
    return found[0] if found else None


async def _facts(tx: Tx, where: str, params: dict[str, object]) -> list[ChatFacts]:
    rows = await tx.fetchall(
        f"""
        SELECT s.id, s.created_at, s.closed_at, s.closed_by, s.offline, s.topic, s.language,
               s.page_url, s.owner, s.owner_name, s.first_reply_at, s.first_reply_by,
               s.read_scale, s.verification, s.purged_at, s.room_id, s.team,
               f.rating, f.comment, f.librarian AS rated_librarian
        FROM sessions s LEFT JOIN feedback f ON f.session_id = s.id
        WHERE s.{where.replace(" AND ", " AND s.")}
        ORDER BY s.created_at, s.id
        """,
        params,
    )
    in_period = f"(SELECT id FROM sessions WHERE {where})"
    tags: dict[str, list[str]] = {}
    for row in await tx.fetchall(
        f"SELECT session_id, tag FROM session_tags WHERE session_id IN {in_period} "
        "ORDER BY session_id, tag",
        params,
    ):
        tags.setdefault(row["session_id"], []).append(row["tag"])
    transfers: dict[str, list[tuple[str | None, str]]] = {}
    for row in await tx.fetchall(
        f"SELECT session_id, from_owner, to_owner FROM transfers WHERE session_id IN {in_period} "
        "ORDER BY id",
        params,
    ):
        transfers.setdefault(row["session_id"], []).append((row["from_owner"], row["to_owner"]))
    return [
        ChatFacts(
            session_id=SessionID(row["id"]),
            created_at=required_moment(row["created_at"]),
            closed_at=moment(row["closed_at"]),
            closed_by=row["closed_by"],
            offline=bool(row["offline"]),
            topic=row["topic"],
            language=row["language"],
            page_url=row["page_url"],
            owner=UserID(row["owner"]) if row["owner"] else None,
            owner_name=row["owner_name"],
            first_reply_at=moment(row["first_reply_at"]),
            first_reply_by=UserID(row["first_reply_by"]) if row["first_reply_by"] else None,
            rating=row["rating"],
            comment=row["comment"],
            rated_librarian=row["rated_librarian"],
            tags=tuple(tags.get(row["id"], ())),
            read_scale=row["read_scale"],
            verification=row["verification"],
            transfers=tuple(transfers.get(row["id"], ())),
            purged=row["purged_at"] is not None,
            room_id=row["room_id"],
            team=row["team"],
        )
        for row in rows
    ]


async def last_served(tx: Tx, user_id: str, since: datetime) -> str | None:
    """The chat ``user_id`` served most recently (closed since ``since``, or still open)."""
    found = await tx.fetchval(
        """
        SELECT id FROM sessions
        WHERE owner = :user AND purged_at IS NULL AND (closed_at IS NULL OR closed_at >= :since)
        ORDER BY COALESCE(closed_at, claimed_at, created_at) DESC, id LIMIT 1
        """,
        {"user": user_id, "since": since},
    )
    return str(found) if found is not None else None

"""Retention in the store: finding chats whose time ran out, and removing what they hold.

A purged chat keeps its row for the reports (when, how long, topic, language, who served,
the rating) without anything that names or quotes the visitor: name, email, member number,
page, browser, the token, its messages, notes, search index entry, mail and performed intents
are gone. Feedback comments and the verification audit have their own retention.
"""

from __future__ import annotations

from datetime import datetime

from rooms.store import cooperative, search
from rooms.store.database import Tx
from rooms.store.values import moment, required_moment

# Chats whose time ran out, not yet purged, with nothing of theirs still to perform (a chat
# whose last notices wait for the homeserver is taken on a later run).
_EXPIRED = """
    FROM sessions s
    WHERE s.state = 'closed' AND s.purged_at IS NULL AND s.closed_at < :before
      AND NOT EXISTS (
        SELECT 1 FROM intents i
        WHERE i.lane = s.id AND i.done_at IS NULL AND i.failed_at IS NULL
      )
"""


async def expired(tx: Tx, before: datetime, limit: int) -> list[tuple[str, str | None]]:
    """Up to ``limit`` chats to purge, the oldest first: (session id, room id)."""
    rows = await tx.fetchall(
        f"SELECT s.id, s.room_id {_EXPIRED} ORDER BY s.closed_at, s.id LIMIT :limit",
        {"before": before, "limit": limit},
    )
    return [(row["id"], row["room_id"]) for row in rows]


async def count_expired(tx: Tx, before: datetime) -> tuple[int, int]:
    """(chats, their messages) that a purge would remove now."""
    chats = await tx.fetchval(f"SELECT COUNT(*) {_EXPIRED}", {"before": before})
    messages = await tx.fetchval(
        f"SELECT COUNT(*) FROM messages WHERE session_id IN (SELECT s.id {_EXPIRED})",
        {"before": before},
    )
    return int(chats), int(messages)


async def media_of(tx: Tx, session_id: str) -> list[str]:
    """The chat's files in the homeserver's media repository (``mxc://`` URIs)."""
    rows = await tx.fetchall(
        "SELECT mxc, thumb_mxc FROM attachments WHERE session_id = :id ORDER BY id",
        {"id": session_id},
    )
    return [uri for row in rows for uri in (row["mxc"], row["thumb_mxc"]) if uri]


async def expired_files(tx: Tx, before: datetime, limit: int) -> list[str]:
    """Closed chats, not purged, with files kept since before ``before`` (the files' own
    retention, when shorter than the chats')."""
    rows = await tx.fetchall(
        """
        SELECT DISTINCT s.id, s.closed_at FROM sessions s JOIN attachments a ON a.session_id = s.id
        WHERE s.state = 'closed' AND s.purged_at IS NULL AND s.closed_at < :before
        ORDER BY s.closed_at, s.id LIMIT :limit
        """,
        {"before": before, "limit": limit},
    )
    return [row["id"] for row in rows]


async def count_files(tx: Tx, before: datetime) -> int:
    found = await tx.fetchval(
        """
        SELECT COUNT(*) FROM attachments a JOIN sessions s ON s.id = a.session_id
        WHERE s.state = 'closed' AND s.purged_at IS NULL AND s.closed_at < :before
        """,
        {"before": before},
    )
    return int(found)


async def drop_files(tx: Tx, session_id: str) -> int:
    """A chat's files (its messages stay, naming no file any more)."""
    await tx.execute(
        "UPDATE messages SET attachment = NULL WHERE session_id = :id AND attachment IS NOT NULL",
        {"id": session_id},
    )
    return await tx.execute("DELETE FROM attachments WHERE session_id = :id", {"id": session_id})


async def purge_chat(tx: Tx, session_id: str, at: datetime) -> int:
    """Remove a closed chat's personal data and contents; the number of messages removed."""
    params = {"id": session_id}
    removed = await tx.execute("DELETE FROM messages WHERE session_id = :id", params)
    await tx.execute("DELETE FROM attachments WHERE session_id = :id", params)
    await tx.execute("DELETE FROM notes WHERE session_id = :id", params)
    await search.forget(tx, session_id)  # the chat's words, stemmed, in the search index
    await cooperative.forget(tx, session_id)  # partner libraries rung, policy notes posted
    await tx.execute("DELETE FROM mail_outbox WHERE session_id = :id", params)
    await tx.execute(
        "DELETE FROM intents WHERE lane = :id AND (done_at IS NOT NULL OR failed_at IS NOT NULL)",
        params,
    )
    await tx.execute(
        """
        UPDATE sessions SET visitor_name = '', email = '', member_number = NULL, page_url = NULL,
               user_agent = NULL, token_hash = '', client_key = NULL, purged_at = :at
        WHERE id = :id AND state = 'closed'
        """,
        {"id": session_id, "at": at},
    )
    return removed


async def forget_desk_intents(tx: Tx, before: datetime) -> int:
    """The desk lane's performed intents older than ``before`` (an export request names the
    address it was for): the chats' own go with their chats."""
    return await tx.execute(
        """
        DELETE FROM intents WHERE lane = 'desk' AND created_at < :before
          AND (done_at IS NOT NULL OR failed_at IS NOT NULL)
        """,
        {"before": before},
    )


async def count_comments(tx: Tx, before: datetime) -> int:
    found = await tx.fetchval(
        "SELECT COUNT(*) FROM feedback WHERE comment IS NOT NULL AND updated_at < :before",
        {"before": before},
    )
    return int(found)


async def clear_comments(tx: Tx, before: datetime) -> int:
    """Feedback comments older than ``before`` (the ratings stay)."""
    return await tx.execute(
        "UPDATE feedback SET comment = NULL WHERE comment IS NOT NULL AND updated_at < :before",
        {"before": before},
    )


async def count_audit(tx: Tx, before: datetime) -> int:
    found = await tx.fetchval(
        "SELECT COUNT(*) FROM verification_audit WHERE created_at < :before", {"before": before}
    )
    return int(found)


async def delete_audit(tx: Tx, before: datetime) -> int:
    """Verification records older than ``before``."""
    return await tx.execute(
        "DELETE FROM verification_audit WHERE created_at < :before", {"before": before}
    )


# A visitor's rights: their chats found by address or id, exported, erased.


async def sessions_of(tx: Tx, email: str | None, session_id: str | None) -> list[str]:
    """The chats (not yet purged) of an email address (any case) or with an id, oldest first."""
    rows = await tx.fetchall(
        """
        SELECT id FROM sessions
        WHERE purged_at IS NULL AND (lower(email) = lower(:email) OR id = :id)
        ORDER BY created_at, arrival
        """,
        {"email": email or "", "id": session_id or ""},
    )
    return [row["id"] for row in rows]


async def audit_of(tx: Tx, session_id: str) -> list[tuple[str, datetime]]:
    rows = await tx.fetchall(
        "SELECT outcome, created_at FROM verification_audit WHERE session_id = :id ORDER BY id",
        {"id": session_id},
    )
    return [(row["outcome"], required_moment(row["created_at"])) for row in rows]


async def mail_of(tx: Tx, session_id: str) -> list[tuple[str, str, datetime, datetime | None]]:
    """(kind, subject, queued, sent) of the emails sent to the visitor about a chat."""
    rows = await tx.fetchall(
        """
        SELECT kind, subject, created_at, sent_at FROM mail_outbox
        WHERE session_id = :id ORDER BY id
        """,
        {"id": session_id},
    )
    return [
        (row["kind"], row["subject"], required_moment(row["created_at"]), moment(row["sent_at"]))
        for row in rows
    ]


async def erase_chat(tx: Tx, session_id: str, at: datetime) -> int:
    """Everything about a closed chat, as a purge removes it and its feedback and verification
    records too; what was still to be performed for it is dropped. Returns the items removed."""
    params = {"id": session_id, "at": at}
    dropped = await tx.execute(
        """
        UPDATE intents SET done_at = :at, last_error = 'erased'
        WHERE lane = :id AND done_at IS NULL AND failed_at IS NULL
        """,
        params,
    )
    items = await tx.execute("DELETE FROM feedback WHERE session_id = :id", {"id": session_id})
    items += await tx.execute(
        "DELETE FROM verification_audit WHERE session_id = :id", {"id": session_id}
    )
    items += await purge_chat(tx, session_id, at)
    return items + dropped


async def log(tx: Tx, action: str, actor: str, sessions: int, items: int, at: datetime) -> None:
    """One line of the privacy log: what was done, by whom, to how many (never to whom)."""
    await tx.execute(
        """
        INSERT INTO privacy_log (action, actor, sessions, items, created_at)
        VALUES (:action, :actor, :sessions, :items, :at)
        """,
        {"action": action, "actor": actor, "sessions": sessions, "items": items, "at": at},
    )

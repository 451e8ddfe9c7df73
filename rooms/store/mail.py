"""The ``mail_outbox`` table: email waiting for the relay (mailer/smtp.py sends it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rooms.store.database import Row, Tx
from rooms.store.values import moment


@dataclass(frozen=True)
class Mail:
    id: int
    session_id: str | None
    kind: str
    recipient: str
    subject: str
    text_body: str
    html_body: str | None
    attempts: int
    last_error: str | None = None
    sent_at: datetime | None = None


def from_row(row: Row) -> Mail:
    return Mail(
        id=int(row["id"]),
        session_id=row["session_id"],
        kind=row["kind"],
        recipient=row["recipient"],
        subject=row["subject"],
        text_body=row["text_body"],
        html_body=row["html_body"],
        attempts=int(row["attempts"]),
        last_error=row["last_error"],
        sent_at=moment(row["sent_at"]),
    )


async def enqueue(
    tx: Tx,
    *,
    session_id: str | None,
    kind: str,
    recipient: str,
    subject: str,
    text_body: str,
    html_body: str | None,
    at: datetime,
    dedup_key: str | None = None,
) -> int:
    """Queue a mail; a repeated ``dedup_key`` returns the mail queued before."""
    if dedup_key is not None:
        found = await tx.fetchval(
            "SELECT id FROM mail_outbox WHERE dedup_key = :d", {"d": dedup_key}
        )
        if found is not None:
            return int(found)
    found = await tx.fetchval(
        """
        INSERT INTO mail_outbox (session_id, kind, dedup_key, recipient, subject, text_body,
                                 html_body, created_at)
        VALUES (:s, :k, :d, :to, :subject, :text, :html, :at)
        RETURNING id
        """,
        {
            "s": session_id,
            "k": kind,
            "d": dedup_key,
            "to": recipient,
            "subject": subject,
            "text": text_body,
            "html": html_body,
            "at": at,
        },
    )
    return int(found)


async def pending(tx: Tx, limit: int = 50) -> list[Mail]:
    rows = await tx.fetchall(
        "SELECT * FROM mail_outbox WHERE sent_at IS NULL ORDER BY id LIMIT :n", {"n": limit}
    )
    return [from_row(row) for row in rows]


async def mark(tx: Tx, mail_id: int, *, sent_at: datetime | None, error: str | None) -> None:
    await tx.execute(
        """
        UPDATE mail_outbox SET sent_at = :sent, last_error = :error, attempts = attempts + 1
        WHERE id = :id
        """,
        {"id": mail_id, "sent": sent_at, "error": error},
    )


async def last_at(tx: Tx, session_id: str, kind: str) -> datetime | None:
    return moment(
        await tx.fetchval(
            "SELECT MAX(created_at) FROM mail_outbox WHERE session_id = :s AND kind = :k",
            {"s": session_id, "k": kind},
        )
    )

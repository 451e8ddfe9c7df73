"""The ``bans`` table: connections (salted address hashes) blocked until a time."""

from __future__ import annotations

from datetime import datetime

from rooms.store.database import Tx
from rooms.store.values import moment


async def ban(
    tx: Tx,
    client_key: str,
    *,
    until: datetime,
    banned_by: str,
    reason: str | None,
    session_id: str | None,
    at: datetime,
) -> None:
    await tx.execute(
        """
        INSERT INTO bans (client_key, reason, banned_by, session_id, until, created_at)
        VALUES (:k, :r, :b, :s, :until, :at)
        ON CONFLICT (client_key) DO UPDATE
        SET reason = :r, banned_by = :b, session_id = :s, until = :until
        """,
        {"k": client_key, "r": reason, "b": banned_by, "s": session_id, "until": until, "at": at},
    )


async def banned_until(tx: Tx, client_key: str, now: datetime) -> datetime | None:
    return moment(
        await tx.fetchval(
            "SELECT until FROM bans WHERE client_key = :k AND until > :now",
            {"k": client_key, "now": now},
        )
    )


async def unban(tx: Tx, client_key: str) -> bool:
    return await tx.execute("DELETE FROM bans WHERE client_key = :k", {"k": client_key}) > 0

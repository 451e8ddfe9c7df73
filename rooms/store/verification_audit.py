"""The ``verification_audit`` table: who tried to verify, when, with what outcome — never what
was typed."""

from __future__ import annotations

from datetime import datetime

from rooms.store.database import Tx


async def add(
    tx: Tx, session_id: str, client_key: str, requested_by: str | None, outcome: str, at: datetime
) -> None:
    await tx.execute(
        """
        INSERT INTO verification_audit (session_id, client_key, requested_by, outcome, created_at)
        VALUES (:s, :c, :r, :o, :at)
        """,
        {"s": session_id, "c": client_key, "r": requested_by, "o": outcome, "at": at},
    )


async def attempts(tx: Tx, session_id: str) -> int:
    found = await tx.fetchval(
        "SELECT COUNT(*) FROM verification_audit WHERE session_id = :s AND outcome != 'locked'",
        {"s": session_id},
    )
    return int(found or 0)

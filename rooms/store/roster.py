"""The ``roster`` table: who has said they are on or off duty (the default is on)."""

from __future__ import annotations

from datetime import datetime

from rooms.store.database import Tx


async def duty(tx: Tx) -> dict[str, bool]:
    rows = await tx.fetchall("SELECT user_id, on_duty FROM roster")
    return {row["user_id"]: bool(row["on_duty"]) for row in rows}


async def set_duty(tx: Tx, user_id: str, on_duty: bool, at: datetime) -> None:
    await tx.execute(
        """
        INSERT INTO roster (user_id, on_duty, changed_at) VALUES (:u, :d, :at)
        ON CONFLICT (user_id) DO UPDATE SET on_duty = :d, changed_at = :at
        """,
        {"u": user_id, "d": on_duty, "at": at},
    )

"""The ``intents`` table: the desk's outbox to the chat network (rooms/intents.py)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rooms.intents import Intent, IntentKind
from rooms.store.database import Row, Tx
from rooms.store.values import required_moment


def from_row(row: Row) -> Intent:
    return Intent(
        id=int(row["id"]),
        lane=row["lane"],
        kind=IntentKind(row["kind"]),
        payload=json.loads(row["payload"]),
        created_at=required_moment(row["created_at"]),
        attempts=int(row["attempts"]),
    )


async def add(tx: Tx, lane: str, kind: IntentKind, payload: dict[str, Any], at: datetime) -> int:
    found = await tx.fetchval(
        """
        INSERT INTO intents (lane, kind, payload, created_at)
        VALUES (:lane, :kind, :payload, :at)
        RETURNING id
        """,
        {
            "lane": lane,
            "kind": kind.value,
            "payload": json.dumps(payload, separators=(",", ":")),
            "at": at,
        },
    )
    return int(found)


async def lanes(tx: Tx) -> list[str]:
    """Lanes with intents to perform, the longest waiting first."""
    rows = await tx.fetchall(
        """
        SELECT lane FROM intents WHERE done_at IS NULL AND failed_at IS NULL
        GROUP BY lane ORDER BY MIN(id)
        """
    )
    return [row["lane"] for row in rows]


async def next_in(tx: Tx, lane: str) -> Intent | None:
    row = await tx.fetchone(
        """
        SELECT * FROM intents WHERE lane = :lane AND done_at IS NULL AND failed_at IS NULL
        ORDER BY id LIMIT 1
        """,
        {"lane": lane},
    )
    return from_row(row) if row else None


async def pending(tx: Tx, lane: str | None = None) -> list[Intent]:
    rows = await tx.fetchall(
        """
        SELECT * FROM intents WHERE done_at IS NULL AND failed_at IS NULL
          AND (CAST(:lane AS TEXT) IS NULL OR lane = :lane)
        ORDER BY id
        """,
        {"lane": lane},
    )
    return [from_row(row) for row in rows]


async def last_id(tx: Tx) -> int:
    return int(await tx.fetchval("SELECT COALESCE(MAX(id), 0) FROM intents") or 0)


async def done(tx: Tx, intent_id: int, at: datetime) -> None:
    await tx.execute("UPDATE intents SET done_at = :at WHERE id = :id", {"id": intent_id, "at": at})


async def refused(tx: Tx, intent_id: int, error: str, at: datetime, give_up: bool) -> int:
    """Count a refused try; ``give_up`` sets the intent aside for good. Returns the count."""
    found = await tx.fetchval(
        """
        UPDATE intents SET attempts = attempts + 1, last_error = :error, failed_at = :failed_at
        WHERE id = :id
        RETURNING attempts
        """,
        {"id": intent_id, "error": error[:500], "failed_at": at if give_up else None},
    )
    return int(found or 0)

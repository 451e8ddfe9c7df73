"""What only the Matrix adapter keeps: the incoming events it has acted on (deduplication by
event id), the ones it could not handle, and its own state (its rooms, the queue notices).

The queries run inside the desk's units of work (``Desk.transaction``), so the claim of an event
commits together with the desk change it causes.
"""

from __future__ import annotations

from datetime import datetime

from rooms.store import Tx


async def claim_event(tx: Tx, event_id: str, at: datetime) -> bool:
    """Claim an incoming event; False if it was acted on (or set aside) before."""
    changed = await tx.execute(
        """
        INSERT INTO bridge_inbound_events (event_id, handled_at) VALUES (:id, :at)
        ON CONFLICT (event_id) DO NOTHING
        """,
        {"id": event_id, "at": at},
    )
    return changed == 1


async def event_claimed(tx: Tx, event_id: str) -> bool:
    found = await tx.fetchval(
        "SELECT 1 FROM bridge_inbound_events WHERE event_id = :id", {"id": event_id}
    )
    return found is not None


async def claimed_among(tx: Tx, event_ids: list[str]) -> set[str]:
    """Which of ``event_ids`` the desk has acted on (one statement)."""
    if not event_ids:
        return set()
    names = {f"e{i}": event_id for i, event_id in enumerate(event_ids)}
    marks = ", ".join(f":{name}" for name in names)
    rows = await tx.fetchall(
        f"SELECT event_id FROM bridge_inbound_events WHERE event_id IN ({marks})", names
    )
    return {row["event_id"] for row in rows}


async def set_aside(
    tx: Tx, event_id: str, room_id: str | None, event_type: str | None, reason: str, at: datetime
) -> None:
    """An event that cannot be handled: keep why (never its content), and never try it again."""
    await tx.execute(
        """
        INSERT INTO bridge_inbound_failures (event_id, room_id, event_type, reason, failed_at)
        VALUES (:id, :room, :type, :reason, :at)
        ON CONFLICT (event_id) DO NOTHING
        """,
        {"id": event_id, "room": room_id, "type": event_type, "reason": reason, "at": at},
    )
    await claim_event(tx, event_id, at)


async def get_state(tx: Tx, key: str) -> str | None:
    found = await tx.fetchval("SELECT value FROM bridge_state WHERE key = :k", {"k": key})
    return str(found) if found is not None else None


async def set_state(tx: Tx, key: str, value: str) -> None:
    await tx.execute(
        """
        INSERT INTO bridge_state (key, value) VALUES (:k, :v)
        ON CONFLICT (key) DO UPDATE SET value = :v
        """,
        {"k": key, "v": value},
    )


async def delete_state(tx: Tx, keys: list[str]) -> None:
    for key in keys:
        await tx.execute("DELETE FROM bridge_state WHERE key = :k", {"k": key})

"""What the desk has on its hands right now, in one read: for the operations metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rooms.intents import IntentKind
from rooms.store.database import Tx
from rooms.store.values import moment

# A chat waiting for a librarian: open, in the queue, nobody serving it (``sessions_queue``).
_WAITING = "state = 'open' AND owner IS NULL AND queued_at IS NOT NULL"
# An intent not yet performed nor set aside (``intents_pending``).
_PENDING = "done_at IS NULL AND failed_at IS NULL"


@dataclass(frozen=True)
class Workload:
    waiting: int
    """Live chats in the queue (a visitor wrote while the desk was staffed), nobody serving."""
    oldest_queued_at: datetime | None
    """When the longest-waiting of those entered the queue."""
    offline_waiting: int
    """Offline messages (written while nobody was on duty) that nobody has taken yet."""
    active: int
    """Open chats a librarian serves."""
    pending_deliveries: int
    """Messages stored but not yet delivered to the chat network."""
    pending_actions: int
    """The desk's other intents (ringing, notices, invitations, …) not yet performed."""


async def read(tx: Tx) -> Workload:
    row = await tx.fetchone(
        f"""
        SELECT
          (SELECT COUNT(*) FROM sessions WHERE {_WAITING} AND NOT offline) AS waiting,
          (SELECT MIN(queued_at) FROM sessions WHERE {_WAITING} AND NOT offline) AS oldest,
          (SELECT COUNT(*) FROM sessions WHERE {_WAITING} AND offline) AS offline_waiting,
          (SELECT COUNT(*) FROM sessions WHERE state = 'open' AND owner IS NOT NULL) AS active,
          (SELECT COUNT(*) FROM intents WHERE {_PENDING} AND kind = :message) AS deliveries,
          (SELECT COUNT(*) FROM intents WHERE {_PENDING} AND kind <> :message) AS actions
        """,
        {"message": IntentKind.MESSAGE.value},
    )
    assert row is not None
    return Workload(
        waiting=int(row["waiting"]),
        oldest_queued_at=moment(row["oldest"]),
        offline_waiting=int(row["offline_waiting"]),
        active=int(row["active"]),
        pending_deliveries=int(row["deliveries"]),
        pending_actions=int(row["actions"]),
    )

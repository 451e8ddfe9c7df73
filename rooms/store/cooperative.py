"""What the cooperative coverage (rooms/cooperative.py) remembers of one chat, in ``desk_state``.

One row per chat that was rolled over to partner libraries, keyed ``cooperative:<session>``: when
the partners were last rung (compared with the chat's ``queued_at``, so a chat back in the queue
can roll over again) and the libraries whose policy note the room has had. Nothing personal;
removed with the chat's other contents when it is purged (rooms/store/privacy.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.store import desk_state
from rooms.store.database import Tx
from rooms.store.values import moment

PREFIX = "cooperative:"


@dataclass(frozen=True)
class Coverage:
    rung_at: datetime | None = None  # partners last rung (None: never)
    policies: tuple[str, ...] = ()  # libraries whose policy note was posted in the room


def _key(session_id: str) -> str:
    return PREFIX + session_id


async def get(tx: Tx, session_id: str) -> Coverage:
    raw = await desk_state.get(tx, _key(session_id))
    if raw is None:
        return Coverage()
    data: dict[str, Any] = json.loads(raw)
    return Coverage(moment(data.get("rung_at")), tuple(data.get("policies", ())))


async def _put(tx: Tx, session_id: str, coverage: Coverage) -> None:
    data = {
        "rung_at": coverage.rung_at.isoformat() if coverage.rung_at else None,
        "policies": list(coverage.policies),
    }
    await desk_state.put(tx, _key(session_id), json.dumps(data, separators=(",", ":")))


async def rung(tx: Tx, session_id: str, at: datetime) -> None:
    current = await get(tx, session_id)
    await _put(tx, session_id, Coverage(at, current.policies))


async def policy_posted(tx: Tx, session_id: str, library: str) -> bool:
    """Note that ``library``'s policy note goes to the room; False if it went already."""
    current = await get(tx, session_id)
    if library in current.policies:
        return False
    await _put(tx, session_id, Coverage(current.rung_at, (*current.policies, library)))
    return True


async def forget(tx: Tx, session_id: str) -> None:
    await tx.execute("DELETE FROM desk_state WHERE key = :k", {"k": _key(session_id)})

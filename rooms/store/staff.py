"""The ``team_duty`` and ``staff`` tables: duty per team (the default is on), and each
librarian's busy flag and last claim or close (for fair assignment, rooms/assignment.py)."""

from __future__ import annotations

from datetime import datetime

from rooms.store.database import POSTGRES, Tx
from rooms.store.values import moment


async def team_duty(tx: Tx) -> dict[tuple[str, str], bool]:
    """(user, team) → on duty, for those who said so (everyone else: on)."""
    rows = await tx.fetchall("SELECT user_id, team, on_duty FROM team_duty")
    return {(row["user_id"], row["team"]): bool(row["on_duty"]) for row in rows}


async def set_team_duty(tx: Tx, user_id: str, team: str, on_duty: bool, at: datetime) -> None:
    await tx.execute(
        """
        INSERT INTO team_duty (user_id, team, on_duty, changed_at) VALUES (:u, :t, :d, :at)
        ON CONFLICT (user_id, team) DO UPDATE SET on_duty = :d, changed_at = :at
        """,
        {"u": user_id, "t": team, "d": on_duty, "at": at},
    )


async def clear_team_duty(tx: Tx, user_id: str) -> None:
    """On duty for every team again (plain ``!duty on``)."""
    await tx.execute("DELETE FROM team_duty WHERE user_id = :u", {"u": user_id})


async def busy(tx: Tx) -> set[str]:
    rows = await tx.fetchall("SELECT user_id FROM staff WHERE busy")
    return {row["user_id"] for row in rows}


async def set_busy(tx: Tx, user_id: str, busy: bool, at: datetime) -> bool:
    """Pause (or resume) new offers and rings; False if it was so already."""
    await lock(tx, user_id)
    changed = await tx.execute(
        "UPDATE staff SET busy = :b, busy_changed_at = :at WHERE user_id = :u AND busy <> :b",
        {"u": user_id, "b": busy, "at": at},
    )
    return changed > 0


async def lock(tx: Tx, user_id: str) -> None:
    """The librarian's row, made if missing; on PostgreSQL locked to the end of the unit, so
    that two claims by one librarian count their chats one after the other (SQLite has one
    writer at a time already)."""
    if tx.dialect == POSTGRES:
        await tx.execute(
            """
            INSERT INTO staff (user_id) VALUES (:u)
            ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id
            """,
            {"u": user_id},
        )
    else:
        await tx.execute("INSERT OR IGNORE INTO staff (user_id) VALUES (:u)", {"u": user_id})


async def touch(tx: Tx, user_id: str, at: datetime) -> None:
    """The librarian claimed or closed a chat now (idle since then)."""
    await tx.execute(
        """
        INSERT INTO staff (user_id, last_active_at) VALUES (:u, :at)
        ON CONFLICT (user_id) DO UPDATE SET last_active_at = :at
        """,
        {"u": user_id, "at": at},
    )


async def last_active(tx: Tx) -> dict[str, datetime | None]:
    rows = await tx.fetchall("SELECT user_id, last_active_at FROM staff")
    return {row["user_id"]: moment(row["last_active_at"]) for row in rows}

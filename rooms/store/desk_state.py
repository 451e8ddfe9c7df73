"""The ``desk_state`` table: the desk's own secrets (address-hash salt, link signing key)."""

from __future__ import annotations

from rooms.store.database import Tx


async def get(tx: Tx, key: str) -> str | None:
    found = await tx.fetchval("SELECT value FROM desk_state WHERE key = :k", {"k": key})
    return str(found) if found is not None else None


async def put_new(tx: Tx, key: str, value: str) -> str:
    """Store ``value`` unless the key has one; returns the value kept (the first one wins)."""
    await tx.execute(
        "INSERT INTO desk_state (key, value) VALUES (:k, :v) ON CONFLICT (key) DO NOTHING",
        {"k": key, "v": value},
    )
    return str(await tx.fetchval("SELECT value FROM desk_state WHERE key = :k", {"k": key}))


async def put(tx: Tx, key: str, value: str) -> None:
    await tx.execute(
        "INSERT INTO desk_state (key, value) VALUES (:k, :v) "
        "ON CONFLICT (key) DO UPDATE SET value = :v",
        {"k": key, "v": value},
    )

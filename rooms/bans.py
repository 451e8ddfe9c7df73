"""Protecting the service: a connection (a salted hash of its address) can be banned."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from rooms.errors import ClientBanned, DeskError
from rooms.ids import UserID
from rooms.session import Session, new_token
from rooms.store import Database, Tx, desk_state
from rooms.store import bans as rows

log = logging.getLogger("refdesk.rooms.bans")

EndSession = Callable[..., Awaitable[Session]]


async def secret(db: Database, key: str) -> str:
    """A random secret made once and kept in the store (the first caller's value wins)."""

    async def unit(tx: Tx) -> str:
        return await desk_state.get(tx, key) or await desk_state.put_new(tx, key, new_token())

    return await db.write(unit)


class Bans:
    def __init__(self, db: Database, clock: Callable[[], datetime], end_session: EndSession):
        self.db = db
        self.clock = clock
        self._end_session = end_session
        self._salt: str | None = None

    async def client_key(self, address: str) -> str:
        """A salted hash of a visitor's network address: enough to ban, useless to trace."""
        if self._salt is None:
            self._salt = await secret(self.db, "client_key_salt")
        return hmac.new(self._salt.encode(), address.encode(), hashlib.sha256).hexdigest()[:32]

    async def check(self, client_key: str) -> None:
        until = await self.db.read(lambda tx: rows.banned_until(tx, client_key, self.clock()))
        if until is not None:
            raise ClientBanned(
                "This connection may not use the chat for now. Please contact the library "
                "by other means."
            )

    async def ban(self, session: Session, by: UserID, days: int, reason: str | None) -> datetime:
        """Ban the network address a session came from, and end the session."""
        client_key = session.client_key
        if client_key is None:
            raise DeskError("This session's address is not known; it cannot be banned.")
        until = self.clock() + timedelta(days=days)

        async def unit(tx: Tx) -> None:
            await rows.ban(
                tx,
                client_key,
                until=until,
                banned_by=by,
                reason=reason,
                session_id=session.id,
                at=self.clock(),
            )
            await self._end_session(
                session.id,
                by=by,
                note=f"banned: {reason}" if reason else None,
                banned_until=until,
            )

        await self.db.write(unit)
        log.info("session %s: its client is banned for %d days", session.id, days)
        return until

    async def unban(self, client_key: str) -> bool:
        return await self.db.write(lambda tx: rows.unban(tx, client_key))

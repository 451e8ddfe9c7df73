"""Membership checks during the chat, never a gate: a librarian asks (or the desk asks after the
claim), the visitor answers in the widget, the member directory decides (rooms/verification.py).

Only the outcome is kept (the session's state, an audit row, notices): never what was typed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rooms.errors import SessionClosedError, VerificationNotRequested, VerificationOff
from rooms.events import EventBus, VerificationDone, VerificationRequested
from rooms.ids import UserID
from rooms.intents import IntentKind
from rooms.notices import tell_visitor
from rooms.outbox import Outbox
from rooms.session import Session
from rooms.store import Database, Tx, sessions, verification_audit
from rooms.texts import text
from rooms.verification import VerificationOutcome, Verifier

log = logging.getLogger("refdesk.rooms.membership")


class Membership:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Callable[[], datetime],
        outbox: Outbox,
        verifier: Verifier | None,
        timezone: str,
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.outbox = outbox
        self.verifier = verifier
        self.timezone = timezone

    @property
    def fields(self) -> tuple[str, ...]:
        return self.verifier.rules.fields if self.verifier is not None else ()

    def _verifier(self) -> Verifier:
        if self.verifier is None:
            raise VerificationOff("Member verification is not configured for this desk.")
        return self.verifier

    async def _open(self, tx: Tx, session: Session) -> Session:
        current = await sessions.get(tx, session.id)
        if current is None or not current.is_open:
            raise SessionClosedError("This chat has ended.")
        return current

    async def request(self, session: Session, by: UserID | None) -> Session:
        """Ask the visitor (in the widget) to confirm membership."""
        self._verifier()

        async def unit(tx: Tx) -> Session:
            await tx.lock_session(session.id)
            await self._open(tx, session)
            updated = await sessions.set_verification(tx, session.id, "requested")
            assert updated is not None
            await self.outbox.add(
                session.id, IntentKind.VERIFICATION_ASKED, by=by, fields=list(self.fields)
            )
            self.bus.emit(VerificationRequested(updated, by))
            body = text("verify_asked", updated.form.language)
            await tell_visitor(self.db, self.bus, self.clock, updated, body)
            return updated

        return await self.db.write(unit)

    async def after_claim(self, session: Session, by: UserID) -> None:
        if session.verification is None:
            await self.request(session, None)

    async def submit(self, session: Session, client_key: str, fields: Any) -> VerificationOutcome:
        """Check what the visitor typed against the member directory (the network, outside any
        unit of work); then store the outcome and tell both sides, in one unit."""
        verifier = self._verifier()

        async def state(tx: Tx) -> tuple[Session | None, int]:
            return await sessions.get(tx, session.id), await verification_audit.attempts(
                tx, session.id
            )

        current, used = await self.db.read(state)
        if current is None or current.verification is None:
            raise VerificationNotRequested("The librarian has not asked for verification.")
        if not current.is_open:
            raise SessionClosedError("This chat has ended.")
        if verifier.attempts_used(session.id) == 0 and used:
            verifier.restore_attempts(session.id, used)
        today = self.clock().astimezone(ZoneInfo(self.timezone)).date()
        outcome = await verifier.attempt(session.id, client_key, fields, today)
        code = str(outcome.code)

        async def unit(tx: Tx) -> None:
            await tx.lock_session(session.id)
            await verification_audit.add(
                tx, session.id, client_key, current.owner, code, self.clock()
            )
            updated = await sessions.set_verification(tx, session.id, code)
            assert updated is not None
            body = outcome.visitor_text(updated.form.language)
            await tell_visitor(self.db, self.bus, self.clock, updated, body)
            await self.outbox.add(session.id, IntentKind.VERIFICATION_DONE, notice=outcome.notice())
            self.bus.emit(VerificationDone(updated, outcome.notice()))

        await self.db.write(unit)
        log.info("session %s verification: %s", session.id, code)
        return outcome

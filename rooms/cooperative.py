"""Cooperative coverage: partner libraries answer the chats nobody here answered in time.

Library chat services share evening and weekend coverage: a chat left unanswered here for
``after`` seconds, or one that waits while this desk is closed (or nobody is on duty) and a
partner covers the hour, rolls over to the partner libraries. Their librarians are Matrix users
on their own homeservers: they are rung like ours (an invitation and a mention, over
federation), claim and answer in the same room, and the visitor is told which library answers.
A local librarian takes a chat back from a partner with ``!claim``; a partner may ask for the
visitor's membership check and, like ours, only ever sees its outcome.

Every decision is made from the store by the desk's clock (``tick``) and written, with what it
causes, in one unit of work: the ring is an intent (rooms/intents.py), so a restart loses
nothing, and what was decided for a chat is kept in ``desk_state`` (rooms/store/cooperative.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rooms.events import EventBus, SessionTransferred
from rooms.hours import Interval
from rooms.ids import SessionID, UserID
from rooms.intents import IntentKind
from rooms.notices import tell_visitor
from rooms.outbox import Outbox
from rooms.session import Session
from rooms.store import Database, Tx, sessions
from rooms.store import cooperative as coverage_rows
from rooms.store import reports as report_facts
from rooms.texts import text

log = logging.getLogger("refdesk.rooms.cooperative")

Weekly = Mapping[int, tuple[Interval, ...]]  # Monday 0 … Sunday 6, in the desk's time zone


@dataclass(frozen=True)
class Partner:
    """A partner library: its librarians (Matrix ids on their own homeserver), the hours it
    covers for us (None: every hour) and what it may and may not do for our patrons."""

    name: str
    librarians: tuple[UserID, ...]
    policy: str = ""
    hours: Weekly | None = None

    def covers(self, at: datetime, tz: ZoneInfo) -> bool:
        if self.hours is None:
            return True
        local = at.astimezone(tz)
        return any(i.contains(local.time()) for i in self.hours.get(local.weekday(), ()))


@dataclass(frozen=True)
class CooperativeRules:
    partners: tuple[Partner, ...] = ()
    after: float = 60.0  # seconds a chat waits here before it rolls over
    _by_user: dict[str, Partner] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_user = {str(u): p for p in self.partners for u in p.librarians}
        object.__setattr__(self, "_by_user", by_user)

    def partner_of(self, user_id: str) -> Partner | None:
        return self._by_user.get(user_id)


def due(
    session: Session, rung_at: datetime | None, now: datetime, after: float, served_here: bool
) -> bool:
    """Whether a chat should roll over to the partners now: it waits (live, nobody serving),
    the partners were not rung since it (re)entered the queue, and it has waited ``after``
    seconds, or this desk cannot serve it now (closed, or nobody on duty)."""
    if not session.is_open or session.owner is not None or session.offline:
        return False
    if session.queued_at is None:
        return False
    if rung_at is not None and rung_at >= session.queued_at:
        return False
    return not served_here or now - session.queued_at >= timedelta(seconds=after)


class Cooperative:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        clock: Callable[[], datetime],
        outbox: Outbox,
        rules: CooperativeRules,
        *,
        timezone: str,
        desk_name: str,
        is_local: Callable[[str], bool],
        served_here: Callable[[], Awaitable[bool]],
    ) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self.outbox = outbox
        self.rules = rules
        self.tz = ZoneInfo(timezone)
        self.desk_name = desk_name
        self.is_local = is_local  # one of our own librarians or supervisors
        self.served_here = served_here  # open and somebody on duty here now

    @property
    def enabled(self) -> bool:
        return bool(self.rules.partners)

    def partner_of(self, user_id: str) -> Partner | None:
        return self.rules.partner_of(user_id)

    def is_partner(self, user_id: str) -> bool:
        return self.rules.partner_of(user_id) is not None

    def library_of(self, user_id: str) -> str | None:
        """The partner library a user answers for (None: not a partner's librarian)."""
        partner = self.rules.partner_of(user_id)
        return partner.name if partner is not None else None

    def covering(self, at: datetime) -> list[Partner]:
        return [p for p in self.rules.partners if p.covers(at, self.tz)]

    def covers(self, at: datetime) -> bool:
        """A partner covers this hour: visitors may chat while this desk cannot serve."""
        return any(p.covers(at, self.tz) for p in self.rules.partners)

    # the desk's clock

    async def tick(self) -> list[Session]:
        """Roll over the chats that are due (see :func:`due`) to the partners covering now;
        returns them."""
        if not self.enabled:
            return []
        now = self.clock()
        covering = self.covering(now)
        if not covering:
            return []
        waiting = await self.db.read(sessions.waiting)
        if not waiting:
            return []
        here = await self.served_here()
        rolled = []
        for session in waiting:
            if not due(session, None, now, self.rules.after, here):
                continue  # not yet by time alone: no need to read what was rung

            async def unit(tx: Tx, session_id: SessionID = session.id) -> Session | None:
                await tx.lock_session(session_id)
                current = await sessions.get(tx, session_id)
                known = await coverage_rows.get(tx, session_id)
                if current is None or not due(current, known.rung_at, now, self.rules.after, here):
                    return None
                await coverage_rows.rung(tx, session_id, now)
                assert current.queued_at is not None
                await self.outbox.add(
                    session_id,
                    IntentKind.PARTNER_RING,
                    users=[str(u) for p in covering for u in p.librarians],
                    libraries=[p.name for p in covering],
                    waited=int((now - current.queued_at).total_seconds()),
                    closed_here=not here,
                )
                return current

            found = await self.db.write(unit)
            if found is not None:
                names = ", ".join(p.name for p in covering)
                log.info("session %s rolled over to partner libraries (%s)", found.id, names)
                rolled.append(found)
        return rolled

    # what partners do

    async def partner_joined(self, session_id: SessionID, user_id: str) -> bool:
        """A partner's librarian joined a chat's room: the room gets that library's policy
        note, once per chat and library. False when there is nothing to post."""
        partner = self.partner_of(user_id)
        if partner is None or not partner.policy:
            return False

        async def unit(tx: Tx) -> bool:
            await tx.lock_session(session_id)
            current = await sessions.get(tx, session_id)
            if current is None or not current.is_open:
                return False
            if not await coverage_rows.policy_posted(tx, session_id, partner.name):
                return False
            await self.outbox.add(
                session_id, IntentKind.PARTNER_POLICY, library=partner.name, policy=partner.policy
            )
            return True

        return await self.db.write(unit)

    async def take_back(self, session_id: SessionID, by: UserID, name: str) -> Session | None:
        """One of our librarians takes a chat back from a partner's librarian (``!claim``);
        None when the chat is not served by a partner (or ``by`` is not ours)."""
        if not self.is_local(by):
            return None

        async def unit(tx: Tx) -> Session | None:
            await tx.lock_session(session_id)
            current = await sessions.get(tx, session_id)
            if current is None or not current.is_open or current.owner is None:
                return None
            partner = self.partner_of(current.owner)
            if partner is None:
                return None
            now = self.clock()
            updated = await sessions.transfer(tx, session_id, current.owner, by, name, now)
            if updated is None:
                return None
            await report_facts.record_transfer(tx, session_id, current.owner, by, now)
            await self.outbox.add(
                session_id,
                IntentKind.TAKEN_BACK,
                by=by,
                name=name,
                from_owner=current.owner,
                from_name=current.owner_name,
                library=partner.name,
            )
            self.bus.emit(SessionTransferred(updated, current.owner, by))
            body = text("taken_back", updated.form.language, librarian=name, library=self.desk_name)
            await tell_visitor(self.db, self.bus, self.clock, updated, body)
            return updated

        taken = await self.db.write(unit)
        if taken is not None:
            log.info("session %s taken back from a partner library by %s", session_id, by)
        return taken

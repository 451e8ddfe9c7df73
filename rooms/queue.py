"""The queue and the roster: who is on duty, claim, release, transfer, requeue, escalation.

Teams and routing (who a waiting chat rings: the whole desk, a team, one member at a time) are
decided by rooms/assignment.py with the rules of rooms/teams.py; the queue calls it wherever a
chat enters the queue, is taken, or ends, and on the desk's clock.

Every rule that decides who serves a visitor lives here; adapters only report what librarians
did and render the events this module emits. Each change is one unit of work: the new state,
what the visitor is told, and the intents that tell the librarians (rooms/intents.py) commit
together or not at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rooms.assignment import Assigner
from rooms.events import (
    DutyChanged,
    EventBus,
    SessionClaimed,
    SessionEscalated,
    SessionQueued,
    SessionTransferred,
)
from rooms.ids import SessionID, UserID
from rooms.intents import IntentKind
from rooms.live_types import Invitation
from rooms.notices import tell_visitor
from rooms.outbox import Outbox
from rooms.session import Session
from rooms.store import Database, Tx, roster, sessions, staff
from rooms.store import reports as report_facts
from rooms.teams import NO_TEAMS, Team, TeamRules
from rooms.texts import text

log = logging.getLogger("refdesk.rooms.queue")


class QueueError(Exception):
    """A queue action that is not allowed; the message says why, for the librarian."""


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    session: Session
    refused: str | None = None  # why the librarian may not take it (at their cap), for them


@dataclass(frozen=True)
class QueueRules:
    librarians: tuple[str, ...] = ()
    supervisors: tuple[str, ...] = ()
    escalate_after: float = 120.0
    default_on_duty: bool = True
    teams: TeamRules = NO_TEAMS


class Queue:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        rules: QueueRules,
        clock: Callable[[], datetime],
        outbox: Outbox | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.rules = rules
        self.clock = clock
        self.outbox = outbox or Outbox(db, bus, clock)
        self.after_claim: Callable[[Session, UserID], Awaitable[None]] | None = None
        self.assignment = Assigner(
            db, self.outbox, clock, rules.librarians, rules.teams, rules.default_on_duty
        )
        # The partner library a user answers for (rooms/cooperative.py); None: not a partner.
        self.library_of: Callable[[str], str | None] = lambda user_id: None

    @property
    def teams(self) -> TeamRules:
        return self.rules.teams

    # roster

    def is_librarian(self, user_id: str) -> bool:
        return user_id in self.rules.librarians or user_id in self.rules.supervisors

    def may_serve(self, user_id: str) -> bool:
        """One of our librarians, or a partner library's (they claim and answer too)."""
        return self.is_librarian(user_id) or self.library_of(user_id) is not None

    async def on_duty(self, team: str | None = None) -> list[UserID]:
        """Librarians on duty now, in config order; ``team``: its members on duty for it."""
        if team is not None:
            found = self.teams.team(team)
            return [] if found is None else (await self.assignment.staffing()).on_duty_for(found)
        duty = await self.db.read(roster.duty)
        return [UserID(u) for u in self.rules.librarians if duty.get(u, self.rules.default_on_duty)]

    async def busy(self) -> set[str]:
        """Librarians who paused new offers and rings (``!busy``)."""
        return await self.db.read(staff.busy)

    async def is_on_duty(self, user_id: str) -> bool:
        return user_id in await self.on_duty()

    async def set_duty(self, user_id: UserID, on_duty: bool, team: str | None = None) -> bool:
        """Go on or off duty. Off duty hands back every session the librarian owns.

        ``team``: on or off duty for that team only (its chats stop ringing them; chats they
        serve stay theirs). On duty for one team while off duty for the desk: on duty, for
        that team alone of theirs. Plain on duty: for every team of theirs again."""
        if user_id not in self.rules.librarians:
            raise QueueError("Only librarians listed in the desk's config can go on duty.")
        if team is not None:
            found = self.teams.team(team)
            if found is None or user_id not in found.members:
                raise QueueError(f"You are not a member of the team {team}.")
            return await self._set_team_duty(user_id, on_duty, found)

        async def unit(tx: Tx) -> bool:
            # Plain on duty: for every team of theirs again.
            cleared = on_duty and any(
                u == user_id and not on for (u, _), on in (await staff.team_duty(tx)).items()
            )
            if cleared:
                await staff.clear_team_duty(tx, user_id)
            if await self.is_on_duty(user_id) == on_duty:
                if cleared:
                    await self.assignment.offer_waiting()
                return cleared
            await roster.set_duty(tx, user_id, on_duty, self.clock())
            self.bus.emit(DutyChanged(user_id, on_duty))
            if not on_duty:
                await self.assignment.withdraw(user_id)
                for session in await sessions.owned_by(tx, user_id):
                    await self.requeue(session.id, user_id, reason="off_duty")
            else:
                await self.assignment.offer_waiting()
            return True

        changed = await self.db.write(unit)
        if changed:
            log.info("%s is now %s duty", user_id, "on" if on_duty else "off")
        return changed

    async def _set_team_duty(self, user_id: UserID, on_duty: bool, team: Team) -> bool:
        async def unit(tx: Tx) -> bool:
            now = self.clock()
            was = (await staff.team_duty(tx)).get((user_id, team.id), True)
            desk_on = await self.is_on_duty(user_id)
            if on_duty and not desk_on:
                # On duty for this team alone of theirs.
                await roster.set_duty(tx, user_id, True, now)
                self.bus.emit(DutyChanged(user_id, True))
                for other in self.teams.teams_of(user_id):
                    await staff.set_team_duty(tx, user_id, other.id, other.id == team.id, now)
                await self.assignment.offer_waiting()
                return True
            if was == on_duty:
                return False
            await staff.set_team_duty(tx, user_id, team.id, on_duty, now)
            if on_duty:
                await self.assignment.offer_waiting()
            else:
                await self.assignment.withdraw(user_id, team.id)
            return True

        changed = await self.db.write(unit)
        if changed:
            log.info("%s is now %s duty for team %s", user_id, "on" if on_duty else "off", team.id)
        return changed

    async def set_busy(self, user_id: UserID, busy: bool) -> bool:
        """``!busy``: no new offers or rings for now, still on duty; ``!available``: again.
        Kept in the store (across restarts). A pending offer moves on to the next member."""
        if not self.is_librarian(user_id):
            raise QueueError("Only librarians of this desk can be busy or available.")

        async def unit(tx: Tx) -> bool:
            changed = await staff.set_busy(tx, user_id, busy, self.clock())
            if changed and busy:
                await self.assignment.withdraw(user_id)
            elif changed:
                await self.assignment.offer_waiting()
            return changed

        changed = await self.db.write(unit)
        if changed:
            log.info("%s is now %s", user_id, "busy" if busy else "available")
        return changed

    # claim, transfer, release

    async def _session(self, tx: Tx, session_id: SessionID) -> Session:
        found = await sessions.get(tx, session_id)
        if found is None:
            raise QueueError("No such session.")
        return found

    async def _tell_visitor(self, session: Session, key: str, **values: object) -> None:
        body = text(key, session.form.language, **values)
        await tell_visitor(self.db, self.bus, self.clock, session, body)

    async def claim(
        self,
        session_id: SessionID,
        user_id: UserID,
        name: str,
        *,
        invitation: Invitation | None = None,
    ) -> ClaimResult:
        """First come, first served: exactly one concurrent caller wins. ``invitation``: the
        chat starts from the librarian's invitation the visitor accepted (rooms/live.py)."""
        if not self.may_serve(user_id):
            raise QueueError("Only librarians can claim a chat.")
        library = self.library_of(user_id)

        async def unit(tx: Tx) -> ClaimResult:
            current = await sessions.get_locked(tx, session_id)
            if current is None:
                raise QueueError("No such session.")
            if current.is_open and current.owner is None:
                refused = await self.assignment.refuse_claim(current, user_id, name)
                if refused is not None:
                    return ClaimResult(False, current, refused)
            won = await sessions.claim(tx, session_id, user_id, name, self.clock())
            if won is None:
                return ClaimResult(False, await self._session(tx, session_id))
            await self.assignment.taken(session_id, user_id)
            team = self.assignment.team_payload(self.teams.team(won.team))
            if library is not None:  # a partner library answers
                team["library"] = library
            if invitation is None:
                await self.outbox.add(session_id, IntentKind.CLAIMED, by=user_id, name=name, **team)
            else:  # the room is made for it (the visitor has not written yet)
                await self.outbox.add(
                    session_id,
                    IntentKind.CLAIMED,
                    by=user_id,
                    name=name,
                    **team,
                    invited=True,
                    page=invitation.page,
                    text=invitation.text,
                )
            self.bus.emit(SessionClaimed(won, user_id))
            if library is not None:
                await self._tell_visitor(won, "claimed_partner", librarian=name, library=library)
            else:
                await self._tell_visitor(won, "claimed", librarian=name)
            if self.after_claim is not None:
                await self.after_claim(won, user_id)
            return ClaimResult(True, won)

        result = await self.db.write(unit)
        if result.won:
            log.info("session %s claimed by %s", session_id, user_id)
        return result

    async def transfer(
        self, session_id: SessionID, by: UserID, to: UserID, to_name: str
    ) -> Session:
        async def unit(tx: Tx) -> Session:
            await tx.lock_session(session_id)
            session = await self._session(tx, session_id)
            if not session.is_open:
                raise QueueError("This chat is closed.")
            if to not in self.rules.librarians and to not in self.rules.supervisors:
                raise QueueError(f"{to} is not a librarian of this desk.")
            if to == session.owner:
                raise QueueError(f"{to} already serves this chat.")
            refused = await self.assignment.refuse_claim(session, to, to_name)
            if refused is not None:
                raise QueueError(refused)
            now = self.clock()
            if session.owner is None:
                # Handing an unclaimed chat to someone is a claim on their behalf.
                updated = await sessions.claim(tx, session_id, to, to_name, now)
                if updated is None:
                    raise QueueError("Someone claimed this chat just now.")
            elif session.owner != by and by not in self.rules.supervisors:
                raise QueueError(
                    f"Only the owner ({session.owner_name}) or a supervisor can transfer."
                )
            else:
                updated = await sessions.transfer(tx, session_id, session.owner, to, to_name, now)
                if updated is None:
                    raise QueueError("The chat changed hands just now; try again.")
            from_owner = session.owner or by
            await self.assignment.taken(session_id, to)
            await report_facts.record_transfer(tx, session_id, session.owner, to, now)
            await self.outbox.add(
                session_id,
                IntentKind.TRANSFERRED,
                from_owner=from_owner,
                from_name=session.owner_name,
                to=to,
                to_name=to_name,
            )
            self.bus.emit(SessionTransferred(updated, from_owner, to))
            await self._tell_visitor(updated, "transferred", librarian=to_name)
            return updated

        return await self.db.write(unit)

    async def transfer_to_team(self, session_id: SessionID, by: UserID, team_id: str) -> Session:
        """Hand the chat to a team: it waits again, for that team, rung or offered by the
        team's rules (its clocks start again)."""
        team = self.teams.team(team_id)
        if team is None:
            raise QueueError(f"There is no team {team_id}.")

        async def unit(tx: Tx) -> Session:
            session = await sessions.get_locked(tx, session_id)
            if session is None:
                raise QueueError("No such session.")
            if not session.is_open:
                raise QueueError("This chat is closed.")
            if not self.is_librarian(by):
                raise QueueError("Only librarians can transfer a chat.")
            if (
                session.owner is not None
                and session.owner != by
                and by not in self.rules.supervisors
            ):
                raise QueueError(
                    f"Only the owner ({session.owner_name}) or a supervisor can transfer."
                )
            if session.owner is None and session.team == team.id:
                raise QueueError(f"This chat already waits for the team {team.name}.")
            now = self.clock()
            moved = await sessions.to_team(tx, session_id, team.id, now)
            assert moved is not None  # the chat is locked and open
            await self.assignment.closed(dataclasses.replace(session, owner=None))
            await self.ring(
                moved,
                "team_transfer",
                previous_owner=session.owner or by,
                previous_name=session.owner_name,
            )
            await self._tell_visitor(moved, "transferred_team", team=team.name)
            return moved

        moved = await self.db.write(unit)
        log.info("session %s transferred to team %s", session_id, team.id)
        return moved

    async def closed(self, session: Session) -> None:
        """The chat ended (in the unit that closes it): its offer is withdrawn, its
        librarian idle from now."""
        await self.assignment.closed(session)

    async def release(self, session_id: SessionID, by: UserID) -> Session:
        session = await self.db.read(lambda tx: self._session(tx, session_id))
        if session.owner != by:
            raise QueueError("Only the librarian serving this chat can release it.")
        return await self.requeue(session_id, by, reason="released")

    async def requeue(self, session_id: SessionID, owner: UserID, reason: str) -> Session:
        """Back to the queue (released, owner left the room, owner went off duty)."""

        async def unit(tx: Tx) -> tuple[Session, bool]:
            await tx.lock_session(session_id)
            before = await self._session(tx, session_id)
            session = await sessions.requeue(tx, session_id, owner, self.clock())
            if session is None:
                return before, False
            await self.ring(session, reason, previous_owner=owner, previous_name=before.owner_name)
            await self._tell_visitor(session, "requeued")
            return session, True

        session, moved = await self.db.write(unit)
        if moved:
            log.info("session %s back in the queue (%s)", session_id, reason)
        return session

    async def ring(
        self,
        session: Session,
        reason: str,
        previous_owner: UserID | None = None,
        previous_name: str | None = None,
    ) -> None:
        """The session (re)entered the queue: ring whoever is on duty now (a new chat is
        routed to its team first; a team's chat rings, or is offered, by the team's rules:
        rooms/assignment.py). Busy librarians, and those at their cap, are not rung.

        Offline sessions (left while the desk was closed) are queued quietly: nobody is rung.
        """
        if reason == "new":
            session = await self.assignment.route(session)
        session = await self.assignment.ring(
            session, reason, previous_owner=previous_owner, previous_name=previous_name
        )
        self.bus.emit(SessionQueued(session, reason, previous_owner=previous_owner))

    # waiting

    async def waiting(self) -> list[Session]:
        return await self.db.read(sessions.waiting)

    async def position(self, session: Session) -> int | None:
        return await self.db.read(lambda tx: sessions.queue_position(tx, session))

    async def tick(self) -> list[Session]:
        """Move offers on and overflow team chats (rooms/assignment.py); escalate sessions
        unclaimed for longer than ``escalate_after``; returns those escalated."""
        await self.assignment.tick()
        now = self.clock()
        cutoff = now - timedelta(seconds=self.rules.escalate_after)
        escalated = []
        for position, session in enumerate(await self.waiting(), start=1):
            if session.escalated_at is not None or session.queued_at is None or session.offline:
                continue
            if session.queued_at > cutoff:
                continue
            queued_at = session.queued_at

            async def unit(
                tx: Tx,
                session_id: SessionID = session.id,
                position: int = position,
                queued_at: datetime = queued_at,
            ) -> Session | None:
                await tx.lock_session(session_id)
                updated = await sessions.mark_escalated(tx, session_id, now)
                if updated is None:
                    return None
                ringable = await self.assignment.ringable(updated)
                ring = sorted(set(ringable) | set(self.rules.supervisors))
                waited = int((now - queued_at).total_seconds())
                await self.outbox.add(
                    session_id,
                    IntentKind.ESCALATED,
                    users=ring,
                    waited=waited,
                    position=position,
                    **self.assignment.team_payload(self.teams.team(updated.team)),
                )
                self.bus.emit(SessionEscalated(updated, position))
                await self._tell_visitor(updated, "escalated", position=position)
                return updated

            found = await self.db.write(unit)
            if found is not None:
                log.info("session %s escalated after %ss", found.id, self.rules.escalate_after)
                escalated.append(found)
        return escalated

"""Who is rung for a waiting chat: the whole desk, a team, or one member at a time.

The rules are plain objects (rooms/teams.py); every decision reads the store in the unit of work
that acts on it, and every ring or offer is a stored intent (rooms/intents.py), so nothing that
matters is held in memory and a restart picks up where the desk was (a pending offer keeps its
deadline in ``offers``).

For a chat routed to a team:

* nobody of the team on duty: the whole desk is rung at once (``overflowed_at`` set);
* ``ring_all``: the members on duty and available are rung;
* ``fair``: the chat is offered to one available member (fewest active chats, then longest idle
  since their last claim or close, then the team's order), who has ``accept_within`` seconds;
  then it is offered to the next (the desk's clock, :meth:`Assigner.tick`). Nobody available
  (all busy or at their cap): the chat waits, and is offered as soon as someone is;
* unclaimed after the team's ``overflow_after``: the rest of the desk is rung.

*Available*: on duty (for that team), not ``!busy``, and below the cap of open chats.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rooms.ids import SessionID, UserID
from rooms.intents import IntentKind
from rooms.outbox import Outbox
from rooms.session import Session
from rooms.store import Database, Tx, offers, roster, sessions, staff
from rooms.store.offers import Offer
from rooms.teams import Assignment, Team, TeamRules

log = logging.getLogger("refdesk.rooms.assignment")

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Staffing:
    """Who can take a chat now, as the store says in one unit of work."""

    on_duty: tuple[UserID, ...]  # on duty for the desk, in config order
    team_off: frozenset[tuple[str, str]]  # (user, team) off duty for that team
    busy: frozenset[str]
    active: dict[str, int]  # open chats per librarian
    last_active: dict[str, datetime | None]  # last claim or close
    offered: frozenset[str]  # librarians with an offer pending

    def on_duty_for(self, team: Team) -> list[UserID]:
        """The team's members on duty for it, in the team's order."""
        desk = set(self.on_duty)
        return [u for u in team.members if u in desk and (u, team.id) not in self.team_off]

    def available(self, users: Iterable[UserID], cap: int | None) -> list[UserID]:
        """Those not busy and below ``cap`` open chats."""
        return [
            u for u in users if u not in self.busy and (cap is None or self.active.get(u, 0) < cap)
        ]

    def fairest(self, users: Sequence[UserID]) -> list[UserID]:
        """Fewest active chats first, then the longest idle, then the given order."""
        order = {u: i for i, u in enumerate(users)}
        return sorted(
            users,
            key=lambda u: (self.active.get(u, 0), self.last_active.get(u) or _NEVER, order[u]),
        )


class Assigner:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Callable[[], datetime],
        librarians: tuple[str, ...],
        rules: TeamRules,
        default_on_duty: bool = True,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.librarians = librarians
        self.rules = rules
        self.default_on_duty = default_on_duty

    # who can take a chat

    async def staffing(self) -> Staffing:
        async def unit(tx: Tx) -> Staffing:
            duty = await roster.duty(tx)
            return Staffing(
                on_duty=tuple(
                    UserID(u) for u in self.librarians if duty.get(u, self.default_on_duty)
                ),
                team_off=frozenset(k for k, on in (await staff.team_duty(tx)).items() if not on),
                busy=frozenset(await staff.busy(tx)),
                active=await sessions.active_chats(tx),
                last_active=await staff.last_active(tx),
                offered=frozenset(o.user_id for o in await offers.pending(tx)),
            )

        return await self.db.read(unit)

    def team_of(self, session: Session) -> Team | None:
        return self.rules.team(session.team)

    async def ringable(self, session: Session, users: Iterable[UserID] | None = None) -> list[str]:
        """Of ``users`` (default: everyone on duty), those a ring for this chat may reach."""
        found = await self.staffing()
        team = self.team_of(session)
        chosen = found.on_duty if users is None else tuple(users)
        return [str(u) for u in found.available(chosen, self.rules.cap(team))]

    async def refuse_claim(self, session: Session, user_id: UserID, name: str) -> str | None:
        """Why ``user_id`` may not take this chat now (their cap), or None. Takes the
        librarian's lock: two claims by one librarian count their chats one after the other."""
        cap = self.rules.cap(self.team_of(session))
        if cap is None:
            return None

        async def unit(tx: Tx) -> str | None:
            await staff.lock(tx, user_id)
            active = (await sessions.active_chats(tx)).get(user_id, 0)
            if active < cap:
                return None
            return (
                f"{name} already serves {active} chat{'s' if active != 1 else ''}, the most "
                f"this desk allows at once ({cap}). Close one first, or ask a colleague."
            )

        return await self.db.write(unit)

    # what a chat entering the queue rings

    async def route(self, session: Session) -> Session:
        """A new chat gets its team from the routes (None: the whole desk)."""
        if session.team is not None or not self.rules.routes:
            return session
        team = self.rules.route(session.form, self.clock())
        if team is None:
            return session
        routed = await self.db.write(lambda tx: sessions.set_team(tx, session.id, team.id))
        log.info("session %s routed to team %s", session.id, team.id)
        return routed or session

    def team_payload(self, team: Team | None) -> dict[str, Any]:
        if team is None:
            return {}
        return {
            "team": team.id,
            "team_name": team.name,
            "target": team.first_response_target,
        }

    async def ring(self, session: Session, reason: str, **why: Any) -> Session:
        """The chat (re)entered the queue: store what rings whom. Returns it as it is now."""
        team = self.team_of(session)
        if session.offline:
            await self._ring(session, team, reason, [], offline=True, **why)
            return session
        found = await self.staffing()
        cap = self.rules.cap(team)
        if team is None or session.overflowed_at is not None:
            await self._ring(session, team, reason, found.available(found.on_duty, cap), **why)
            return session
        members = found.on_duty_for(team)
        if not members:  # nobody of the team on duty: the whole desk, at once
            now = self.clock()
            marked = await self.db.write(lambda tx: sessions.mark_overflowed(tx, session.id, now))
            session = marked or session
            users = found.available(found.on_duty, cap)
            await self._ring(session, team, reason, users, overflow="nobody_on_duty", **why)
            return session
        if team.assignment is Assignment.RING_ALL:
            await self._ring(session, team, reason, found.available(members, cap), **why)
            return session
        # fair: the room and the queue line, ringing nobody; then the offer
        await self._ring(session, team, reason, [], fair=True, **why)
        previous = why.get("previous_owner")
        await self._offer(session, team, found, exclude={previous} if previous else set())
        return session

    async def _ring(
        self, session: Session, team: Team | None, reason: str, users: list[UserID], **more: Any
    ) -> None:
        await self.outbox.add(
            session.id,
            IntentKind.RING,
            reason=reason,
            users=[str(u) for u in users],
            offline=bool(more.pop("offline", False)),
            **self.team_payload(team),
            **more,
        )

    async def _offer(
        self,
        session: Session,
        team: Team,
        found: Staffing,
        *,
        previous: Offer | None = None,
        exclude: set[str] | None = None,
    ) -> Offer | None:
        """Offer the chat to the fairest available member; None: nobody is (it waits)."""
        exclude = exclude or set()
        now = self.clock()
        candidates = [
            u
            for u in found.available(found.on_duty_for(team), self.rules.cap(team))
            if u not in found.offered and u not in exclude
        ]
        if not candidates:
            return None
        since = session.queued_at or session.created_at
        tried = await self.db.read(lambda tx: offers.offered_since(tx, session.id, since))
        fresh = [u for u in candidates if u not in tried]
        if not fresh:  # everyone had their turn: the round starts again
            fresh = candidates
            if previous is not None and len(fresh) > 1:
                fresh = [u for u in fresh if u != previous.user_id]
        chosen = found.fairest(fresh)[0]
        expires = now + timedelta(seconds=team.accept_within)
        offer = await self.db.write(
            lambda tx: offers.add(tx, session.id, chosen, team.id, now, expires)
        )
        await self.outbox.add(
            session.id,
            IntentKind.OFFERED,
            user=str(chosen),
            previous=str(previous.user_id) if previous is not None else None,
            accept_within=int(team.accept_within),
            **self.team_payload(team),
        )
        log.info("session %s offered to %s (team %s)", session.id, chosen, team.id)
        return offer

    # what happens to offers when the desk changes

    async def taken(self, session_id: SessionID, by: UserID) -> None:
        """``by`` took the chat (claim, transfer): its offer ends, ``by`` is busy from now."""
        now = self.clock()

        async def unit(tx: Tx) -> None:
            offer = await offers.pending_for(tx, session_id)
            if offer is not None:
                state = "claimed" if offer.user_id == by else "taken"
                await offers.end(tx, session_id, state, now)
            await staff.touch(tx, by, now)

        await self.db.write(unit)

    async def closed(self, session: Session) -> None:
        """The chat ended: its offer is withdrawn; its librarian is idle from now."""
        now = self.clock()

        async def unit(tx: Tx) -> None:
            await offers.end(tx, session.id, "withdrawn", now)
            if session.owner is not None:
                await staff.touch(tx, session.owner, now)

        await self.db.write(unit)

    async def withdraw(self, user_id: UserID, team: str | None = None) -> None:
        """``user_id`` went busy or off duty (for ``team``, or all): their pending offers go
        to the next member."""
        now = self.clock()
        for offer in await self.db.read(lambda tx: offers.of_user(tx, user_id)):
            if team is not None and offer.team != team:
                continue

            async def unit(tx: Tx, offer: Offer = offer) -> None:
                await tx.lock_session(offer.session_id)
                ended = await offers.end(tx, offer.session_id, "withdrawn", now)
                if ended is not None and ended.id == offer.id:
                    await self._next(offer.session_id, ended)

            await self.db.write(unit)

    async def _next(self, session_id: SessionID, previous: Offer | None) -> Offer | None:
        """Offer a waiting chat of a fair team to the next member, if it is still to be
        offered."""
        session = await self.db.read(lambda tx: sessions.get(tx, session_id))
        if session is None or not self._to_offer(session):
            return None
        team = self.team_of(session)
        assert team is not None
        return await self._offer(session, team, await self.staffing(), previous=previous)

    def _to_offer(self, session: Session) -> bool:
        team = self.team_of(session)
        return (
            team is not None
            and team.assignment is Assignment.FAIR
            and session.is_open
            and session.owner is None
            and session.queued_at is not None
            and session.overflowed_at is None
            and not session.offline
        )

    # the desk's clock

    async def tick(self) -> None:
        """Chats their team did not take in time ring the rest of the desk; offers whose time
        ran out move on; chats waiting for a free member are offered."""
        if not self.rules.teams:
            return
        now = self.clock()
        for session in await self.db.read(sessions.waiting):
            team = self.team_of(session)
            if team is None or session.overflowed_at is not None or session.offline:
                continue
            assert session.queued_at is not None
            if now - session.queued_at >= timedelta(seconds=team.overflow_after):
                await self.overflow(session.id, team)
        for offer in await self.db.read(lambda tx: offers.due(tx, now)):

            async def expire(tx: Tx, offer: Offer = offer) -> None:
                await tx.lock_session(offer.session_id)
                ended = await offers.end(tx, offer.session_id, "expired", now)
                if ended is not None and ended.id == offer.id:
                    log.info("offer of %s to %s expired", offer.session_id, offer.user_id)
                    await self._next(offer.session_id, ended)

            await self.db.write(expire)
        await self.offer_waiting()

    async def offer_waiting(self) -> None:
        """Chats of fair teams waiting with no offer pending (everyone was busy or at their
        cap): offered now if someone is free."""
        if not any(t.assignment is Assignment.FAIR for t in self.rules.teams):
            return
        pending = {o.session_id for o in await self.db.read(offers.pending)}
        for session in await self.db.read(sessions.waiting):
            if session.id in pending or not self._to_offer(session):
                continue

            async def unit(tx: Tx, session_id: SessionID = session.id) -> None:
                await tx.lock_session(session_id)
                if await offers.pending_for(tx, session_id) is None:
                    await self._next(session_id, None)

            await self.db.write(unit)

    async def overflow(self, session_id: SessionID, team: Team) -> Session | None:
        """Ring the rest of the desk for a chat its team did not take in time."""
        now = self.clock()

        async def unit(tx: Tx) -> Session | None:
            await tx.lock_session(session_id)
            marked = await sessions.mark_overflowed(tx, session_id, now)
            if marked is None:
                return None
            await offers.end(tx, session_id, "overflowed", now)
            found = await self.staffing()
            rest = [u for u in found.on_duty if u not in team.members]
            users = found.available(rest, self.rules.cap(team))
            await self._ring(marked, team, "overflow", users, waited=int(team.overflow_after))
            return marked

        overflowed = await self.db.write(unit)
        if overflowed is not None:
            log.info("session %s overflowed from team %s", session_id, team.id)
        return overflowed

    async def pending_offers(self) -> dict[SessionID, UserID]:
        """The chats offered now, and to whom."""
        return {o.session_id: o.user_id for o in await self.db.read(offers.pending)}

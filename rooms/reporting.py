"""The reports service: who may read reports, the figures of a period, the chats behind them,
tags, and the signed links to the web dashboard.

A dashboard link is personal (it names the viewer), signed with a secret kept in the store and
short-lived; opening it gives a dashboard pass (same form, longer-lived) that every page of the
dashboard carries. Both are checked again against ``viewers`` on every use, so a viewer removed
from the config loses access at the next page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rooms.bans import secret
from rooms.errors import DeskError
from rooms.ids import UserID
from rooms.intents import DESK_LANE, IntentKind
from rooms.outbox import Outbox
from rooms.reports import (
    ChatFacts,
    Clocking,
    Period,
    Report,
    build,
    csv_text,
    parse_period,
    parse_tags,
    select,
)
from rooms.session import Session
from rooms.store import Database, Tx
from rooms.store import reports as facts_store

LINK = "link"  # what the bot posts: opens the dashboard once, minutes
PASS = "pass"  # what the dashboard's pages carry, hours


class AccessDenied(DeskError):
    """A dashboard link or pass that is forged, expired, or of someone who is not a viewer."""

    code = "access_denied"


@dataclass(frozen=True)
class ReportRules:
    # Who may read reports (Matrix ids); None: the desk's supervisors.
    viewers: tuple[str, ...] | None = None
    first_response_target: int = 300  # seconds
    categories: tuple[str, ...] = ()  # allowed tags; empty: any tag
    ask_at_close: bool = False  # the bot asks for tags at !close when a chat has none
    link_minutes: int = 15
    pass_hours: int = 8
    dashboard: bool = True  # the web dashboard is served (and !report links to it)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Reports:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Callable[[], datetime],
        rules: ReportRules,
        *,
        timezone: str,
        supervisors: tuple[str, ...],
        open_seconds: Callable[[datetime, datetime], float] | None,
        partner_of: Callable[[str], bool] | None = None,
        teams: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.clock = clock
        self.rules = rules
        self.timezone = timezone
        self.tz = ZoneInfo(timezone)
        self.supervisors = supervisors
        self.clocking = Clocking(open_seconds)
        self.partner_of = partner_of
        self.teams = teams or {}  # id → (name, first-reply target)
        self._secret: bytes | None = None
        # Called in the unit of work that changes a chat's tags (the search index finds tags).
        self.retagged: Callable[[Tx, str], Awaitable[object]] | None = None

    # who

    def is_viewer(self, user_id: str) -> bool:
        viewers = self.rules.viewers if self.rules.viewers is not None else self.supervisors
        return user_id in viewers

    # figures

    def period(self, text: str) -> Period:
        return parse_period(text, self.clock(), self.tz)

    async def facts(self, period: Period) -> list[ChatFacts]:
        return await self.db.read(lambda tx: facts_store.facts(tx, period.start, period.end))

    async def report(self, period: Period, names: dict[str, str] | None = None) -> Report:
        previous = period.previous(self.tz)

        async def unit(tx: Tx) -> tuple[list[ChatFacts], list[ChatFacts]]:
            now = await facts_store.facts(tx, period.start, period.end)
            return now, await facts_store.facts(tx, previous.start, previous.end)

        chats, before = await self.db.read(unit)
        return build(
            period,
            chats,
            before,
            clocking=self.clocking,
            target=self.rules.first_response_target,
            timezone=self.timezone,
            names=names,
            partner_of=self.partner_of,
            teams=self.teams,
        )

    async def chats(self, period: Period, figure: str, value: str = "") -> list[ChatFacts]:
        """The chats behind one figure of the report (its drill-down)."""
        return select(
            await self.facts(period),
            figure,
            value,
            clocking=self.clocking,
            target=self.rules.first_response_target,
            timezone=self.timezone,
            partner_of=self.partner_of,
        )

    async def chat_facts(self, session_id: str) -> ChatFacts | None:
        return await self.db.read(lambda tx: facts_store.facts_of(tx, session_id))

    async def csv(self, period: Period) -> str:
        return csv_text(
            await self.facts(period),
            clocking=self.clocking,
            target=self.rules.first_response_target,
            timezone=self.timezone,
        )

    def wait(self, chat: ChatFacts) -> float | None:
        return self.clocking.wait(chat)

    # asked from the chat network

    async def request(self, room_id: str, period: Period, by: UserID) -> None:
        """``!report``: the summary and its chart go to ``room_id``, the dashboard link to the
        viewer alone; stored in the caller's unit of work, performed from the store."""
        await self.outbox.add(
            DESK_LANE,
            IntentKind.REPORT,
            room_id=room_id,
            period=period.label,
            to=by,
        )

    async def pin(self, by: UserID, pinned: bool) -> None:
        """``!report pin``: the dashboard as a widget in the desk room (or taken away)."""
        await self.outbox.add(DESK_LANE, IntentKind.PIN_DASHBOARD, pinned=pinned, by=by)

    # tags

    async def tag(self, session: Session, by: UserID, text: str) -> tuple[list[str], int | None]:
        """Tag the chat (categories and the READ scale); returns all its tags and its scale."""
        tags, scale = parse_tags(text)
        if not tags and scale is None:
            raise ValueError("Nothing to tag.")
        allowed = self.rules.categories
        unknown = [t for t in tags if allowed and t not in allowed]
        if unknown:
            raise ValueError(
                f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                f"this desk uses: {', '.join(allowed)}."
            )
        now = self.clock()

        async def unit(tx: Tx) -> tuple[list[str], int | None]:
            await facts_store.set_tags(tx, session.id, tags, scale, by, now)
            if self.retagged is not None:
                await self.retagged(tx, session.id)
            return await facts_store.tags_of(tx, session.id)

        return await self.db.write(unit)

    async def last_served(self, user_id: str) -> str | None:
        """The chat ``user_id`` served last (open, or closed within a day): what ``!tag`` in the
        desk room tags, for a chat the visitor ended before it was tagged."""
        since = self.clock() - timedelta(days=1)
        return await self.db.read(lambda tx: facts_store.last_served(tx, user_id, since))

    async def untag(self, session: Session, tag: str) -> bool:
        async def unit(tx: Tx) -> bool:
            removed = await facts_store.remove_tag(tx, session.id, tag.lower())
            if removed and self.retagged is not None:
                await self.retagged(tx, session.id)
            return removed

        return await self.db.write(unit)

    async def tags_of(self, session: Session) -> tuple[list[str], int | None]:
        return await self.db.read(lambda tx: facts_store.tags_of(tx, session.id))

    # signed links

    async def _key(self) -> bytes:
        if self._secret is None:
            self._secret = (await secret(self.db, "reports_link_secret")).encode()
        return self._secret

    async def ready(self) -> None:
        """Read the signing secret, so that :meth:`sign_now` may sign without the store."""
        await self._key()

    async def sign(self, viewer: str, kind: str = LINK) -> tuple[str, datetime]:
        """A token for ``viewer``: a link (minutes) or a dashboard pass (hours)."""
        await self._key()
        return self.sign_now(viewer, kind)

    def sign_now(self, viewer: str, kind: str = LINK) -> tuple[str, datetime]:
        """:meth:`sign` once :meth:`ready` has read the secret."""
        assert self._secret is not None, "call ready() first"
        lifetime = (
            timedelta(minutes=self.rules.link_minutes)
            if kind == LINK
            else timedelta(hours=self.rules.pass_hours)
        )
        expires = self.clock() + lifetime
        body = _b64(
            json.dumps(
                {"v": viewer, "k": kind, "e": int(expires.timestamp())}, separators=(",", ":")
            ).encode()
        )
        mac = _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}", expires

    async def check(self, token: str, kind: str) -> str:
        """The viewer a token names, if it is genuine, of ``kind``, unexpired and the viewer
        may still read reports; raises :class:`AccessDenied` otherwise."""
        body, dot, mac = token.partition(".")
        if not dot or not token.isascii() or len(token) > 1000:
            raise AccessDenied("This link is not valid.")
        expected = _b64(hmac.new(await self._key(), body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, mac):
            raise AccessDenied("This link is not valid.")
        try:
            claims = json.loads(_unb64(body))
            viewer, found_kind, expires = str(claims["v"]), claims["k"], int(claims["e"])
        except (ValueError, KeyError, TypeError):
            raise AccessDenied("This link is not valid.") from None
        if found_kind != kind:
            raise AccessDenied("This link is not valid.")
        if expires < self.clock().timestamp():
            raise AccessDenied("This link has expired: ask the bot for a new one with !report.")
        if not self.is_viewer(viewer):
            raise AccessDenied("You may not read this desk's reports.")
        return viewer

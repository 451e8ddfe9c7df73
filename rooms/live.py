"""Visitors on the library's pages now, with the widget loaded: kept in memory only.

The widget announces itself on a light connection of its own (widget_server/api/presence.py):
the page (without its query or fragment), its language and how long it has been on the page.
Nothing else is known of a visitor here (no address, no cookie, no id that outlives the page), and
nothing is written to the store: a visitor is gone from the list when the connection closes (the
widget server cuts off connections that stop answering its pings), or when nothing was heard from
it for ``stale_after`` seconds (the widget repeats its announcement every few minutes).

Each visitor gets a number in order of arrival, never reused by this process, so the number a
librarian read in ``!queue`` names the same visitor in ``!invite-visitor`` (or none, once they
left). A librarian may invite one visitor at a time to chat; the visitor's widget shows it and
answers: declined, ignored, or accepted by starting a chat with the invitation's token, which the
desk then hands to the inviting librarian (``Desk.start_session``). The events
(:class:`VisitorInvited`, :class:`InvitationAnswered`) are how the adapters hear of it.

The list is per process: with several ``--role widget`` processes each knows its own visitors,
and a ``--role bridge`` process none (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rooms.events import EventBus, InvitationAnswered, VisitorInvited
from rooms.ids import UserID
from rooms.live_types import Invitation, LiveVisitor
from rooms.queue import QueueError
from rooms.session import Session

log = logging.getLogger("refdesk.rooms.live")

PAGE_MAX = 300  # characters of a page address kept
INVITATION_TEXT_MAX = 500

__all__ = ["Invitation", "LiveError", "LiveView", "LiveVisitor", "LiveVisitors", "page_of"]


class LiveError(QueueError):
    """An invitation that cannot be made; the message says why, for the librarian."""


def page_of(url: object) -> str:
    """A page address without its query string or fragment (they may hold what a visitor
    searched for), at most PAGE_MAX characters; "" when it is not text."""
    if not isinstance(url, str):
        return ""
    page = url.split("#", 1)[0].split("?", 1)[0].strip()
    return "".join(c for c in page if c.isprintable())[:PAGE_MAX]


@dataclass(frozen=True)
class LiveView:
    """The desk now, for ``!queue`` and the dashboard's live page (``Desk.live_view``)."""

    at: datetime
    on_duty: list[UserID]  # in the config's order
    waiting: list[tuple[Session, timedelta]]  # in queue order, with how long each has waited
    served: list[Session]  # each with its ``owner`` and ``owner_name``
    visitors: list[LiveVisitor] | None  # on the site, by arrival; None: not known here


@dataclass
class _Entry:
    visitor: LiveVisitor
    heard: datetime


class LiveVisitors:
    """The in-memory list. Not thread-safe: the event loop's own."""

    def __init__(
        self,
        bus: EventBus,
        clock: Callable[[], datetime],
        languages: tuple[str, ...] = ("id", "en"),
        *,
        stale_after: float = 600.0,
        max_visitors: int = 50_000,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self.languages = languages
        self.stale_after = timedelta(seconds=stale_after)
        self.max_visitors = max_visitors
        self._entries: dict[int, _Entry] = {}  # insertion order is arrival order
        self._tokens: dict[str, int] = {}  # a pending invitation's token → its visitor
        self._last = 0
        self._swept = clock()

    def _language(self, language: object) -> str:
        return language if isinstance(language, str) and language in self.languages else "?"

    def arrive(self, page: object, language: object, on_page: object = 0) -> LiveVisitor | None:
        """A widget says it is here; ``on_page``: seconds it has been on the page (a widget that
        reconnects keeps its time). None when the list is full."""
        now = self.clock()
        self._sweep(now)
        if len(self._entries) >= self.max_visitors:
            return None
        seconds = (
            on_page if isinstance(on_page, int | float) and not isinstance(on_page, bool) else 0
        )
        seconds = min(max(float(seconds), 0.0), 86_400.0)
        self._last += 1
        visitor = LiveVisitor(
            number=self._last,
            page=page_of(page),
            language=self._language(language),
            arrived=now - timedelta(seconds=seconds),
        )
        self._entries[visitor.number] = _Entry(visitor, now)
        return visitor

    def heard(self, number: int, page: object = None, language: object = None) -> None:
        """The widget spoke again (its page or language may have changed)."""
        entry = self._entries.get(number)
        if entry is None:
            return
        entry.heard = self.clock()
        if page is not None:
            entry.visitor.page = page_of(page)
        if language is not None:
            entry.visitor.language = self._language(language)

    def leave(self, number: int) -> None:
        """The visitor's connection closed: they are gone (a pending invitation with them)."""
        entry = self._entries.pop(number, None)
        if entry is not None:
            self._drop_invitation(entry.visitor, "left")

    def visitors(self) -> list[LiveVisitor]:
        """Who is here now, in order of arrival."""
        self._sweep(self.clock(), force=True)
        return [entry.visitor for entry in self._entries.values()]

    def get(self, number: int) -> LiveVisitor | None:
        entry = self._entries.get(number)
        return entry.visitor if entry is not None else None

    def _sweep(self, now: datetime, force: bool = False) -> None:
        """Forget visitors not heard from for ``stale_after`` (a connection whose close was
        never seen); at most once a minute unless ``force``."""
        if not force and now - self._swept < timedelta(seconds=60):
            return
        self._swept = now
        cutoff = now - self.stale_after
        for number in [n for n, e in self._entries.items() if e.heard < cutoff]:
            log.info("visitor %d not heard from since %s: gone", number, self.stale_after)
            self.leave(number)

    # invitations

    def invite(
        self,
        number: int,
        librarian: UserID,
        librarian_name: str,
        text: str | None,
        reply_to: str | None = None,
    ) -> Invitation:
        """Invite visitor ``number`` to chat with ``librarian``; ``reply_to`` is the adapter's
        own note of where to tell the librarian how the visitor answered."""
        self._sweep(self.clock(), force=True)
        entry = self._entries.get(number)
        if entry is None:
            if 0 < number <= self._last:
                raise LiveError(f"Visitor {number} has left the site.")
            raise LiveError(f"There is no visitor {number} on the site. !queue lists them.")
        visitor = entry.visitor
        if visitor.invitation is not None:
            who = visitor.invitation.librarian_name
            raise LiveError(f"Visitor {number} has an invitation from {who} already.")
        body = " ".join((text or "").split())[:INVITATION_TEXT_MAX] or None
        invitation = Invitation(
            token=secrets.token_urlsafe(16),
            visitor=number,
            librarian=librarian,
            librarian_name=librarian_name,
            text=body,
            page=visitor.page,
            reply_to=reply_to,
            at=self.clock(),
        )
        visitor.invitation = invitation
        self._tokens[invitation.token] = number
        self.bus.emit(VisitorInvited(invitation))
        log.info("visitor %d invited by %s", number, librarian)
        return invitation

    def answer(self, number: int, token: object, answer: object) -> bool:
        """The visitor's widget answered: ``declined`` or ``ignored``. False if there was no
        such invitation (answered before, or not theirs)."""
        entry = self._entries.get(number)
        if entry is None or entry.visitor.invitation is None:
            return False
        if entry.visitor.invitation.token != token or answer not in ("declined", "ignored"):
            return False
        self._drop_invitation(entry.visitor, answer)
        return True

    def take(self, token: object) -> Invitation | None:
        """A chat starts with this invitation: it is accepted (once); None if it is not (or
        no longer) pending."""
        if not isinstance(token, str):
            return None
        number = self._tokens.get(token)
        entry = self._entries.get(number) if number is not None else None
        if entry is None or entry.visitor.invitation is None:
            return None
        invitation = entry.visitor.invitation
        del self._tokens[token]
        entry.visitor.invitation = None
        return invitation

    def accepted(self, invitation: Invitation, session_id: str) -> None:
        """The chat of an accepted invitation is stored (announced once it is committed)."""
        self.bus.emit(InvitationAnswered(invitation, "accepted", session_id))

    def _drop_invitation(self, visitor: LiveVisitor | None, answer: str) -> None:
        if visitor is None or visitor.invitation is None:
            return
        invitation = visitor.invitation
        visitor.invitation = None
        self._tokens.pop(invitation.token, None)
        self.bus.emit(InvitationAnswered(invitation, answer))
        log.info("visitor %d: invitation %s", invitation.visitor, answer)

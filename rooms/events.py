"""What happened at the desk. Adapters subscribe; the core never calls them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from rooms.feedback import Feedback
from rooms.ids import SessionID, UserID
from rooms.intents import Work
from rooms.live_types import Invitation
from rooms.session import Message, Session

log = logging.getLogger("refdesk.rooms.events")


@dataclass(frozen=True)
class SessionStarted:
    session: Session


@dataclass(frozen=True)
class MessageAdded:
    """A message was stored. ``message.needs_delivery`` tells the bridge it must go out."""

    message: Message


@dataclass(frozen=True)
class MessageUpdated:
    """A stored message was edited or deleted (it keeps its id, gets a new ``seq``)."""

    message: Message


@dataclass(frozen=True)
class FirstReply:
    """A librarian answered a live chat for the first time, ``waited`` after the visitor started
    it (offline messages, answered later by email, are not counted); the reports keep the same
    moment (``sessions.first_reply_at``)."""

    session: Session
    waited: timedelta


@dataclass(frozen=True)
class SessionClosed:
    session: Session
    note: str | None = None


@dataclass(frozen=True)
class SessionQueued:
    """The session (re)entered the queue: ring the librarians on duty.

    ``reason``: ``new`` (first message), ``released``, ``owner_left``, ``off_duty``.
    """

    session: Session
    reason: str
    previous_owner: UserID | None = None


@dataclass(frozen=True)
class SessionClaimed:
    session: Session
    by: UserID


@dataclass(frozen=True)
class SessionTransferred:
    session: Session
    from_owner: UserID
    to: UserID


@dataclass(frozen=True)
class SessionEscalated:
    session: Session
    position: int


@dataclass(frozen=True)
class DutyChanged:
    user_id: UserID
    on_duty: bool


@dataclass(frozen=True)
class Typing:
    """Someone is typing (or stopped). ``side``: ``visitor`` or ``librarian``."""

    session_id: SessionID
    side: str
    typing: bool
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadUpTo:
    """``side`` has read the other side's messages up to message ``message_id``."""

    session_id: SessionID
    side: str
    message: Message


@dataclass(frozen=True)
class FeedbackGiven:
    session: Session
    feedback: Feedback
    first: bool


@dataclass(frozen=True)
class MailQueued:
    mail_id: int


@dataclass(frozen=True)
class VerificationRequested:
    session: Session
    by: UserID | None  # None: asked automatically after the claim


@dataclass(frozen=True)
class VerificationDone:
    session: Session
    notice: str  # for librarians; never holds what the visitor typed


@dataclass(frozen=True)
class OfflineWaiting:
    """The desk opened with offline messages waiting."""

    count: int


@dataclass(frozen=True)
class SessionChanged:
    """Something about the session changed in another process of the same desk (its messages,
    its state); ``queue_moved``: the queue changed too. Read the store to see what."""

    session_id: SessionID
    queue_moved: bool = False


@dataclass(frozen=True)
class IntentAdded:
    """An intent was stored (see rooms/intents.py): the adapter has work in ``lane``.

    ``work``: the intent itself with what performing it needs (a ``rooms.outbox.Work``), when
    it was the lane's first pending intent at its commit and nothing else may have written the
    store since (SQLite); the adapter may then start on it without reading it back."""

    lane: str
    work: Work | None = None


@dataclass(frozen=True)
class VisitorInvited:
    """A librarian invited a visitor on the site to chat (rooms/live.py): their widget shows it."""

    invitation: Invitation


@dataclass(frozen=True)
class InvitationAnswered:
    """How a visitor answered an invitation: ``accepted`` (``session_id``: the chat it started,
    committed), ``declined``, ``ignored``, or ``left`` (the site, before answering)."""

    invitation: Invitation
    answer: str
    session_id: str | None = None


DeskEvent = (
    SessionStarted
    | MessageAdded
    | MessageUpdated
    | SessionClosed
    | SessionQueued
    | SessionClaimed
    | SessionTransferred
    | SessionEscalated
    | DutyChanged
    | Typing
    | ReadUpTo
    | FeedbackGiven
    | MailQueued
    | VerificationRequested
    | VerificationDone
    | OfflineWaiting
    | IntentAdded
    | SessionChanged
    | FirstReply
    | VisitorInvited
    | InvitationAnswered
)
Listener = Callable[[DeskEvent], None]


class EventBus:
    """Synchronous fan-out; listeners only schedule work and must never block.

    ``defer`` postpones the fan-out until the change being announced is committed (the
    store's ``after_commit``): a listener never reads the store before the change is there,
    and a change that is rolled back is never announced.
    """

    def __init__(self, defer: Callable[[Callable[[], None]], None] | None = None) -> None:
        self._listeners: list[Listener] = []
        self._observers: list[Listener] = []
        self._defer = defer

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def observe(self, observer: Listener) -> None:
        """``observer`` sees each event at once, inside the unit of work that causes it (to add
        work to that transaction, e.g. waking other processes when it commits)."""
        self._observers.append(observer)

    def emit(self, event: DeskEvent) -> None:
        for observer in self._observers:
            observer(event)
        if self._defer is not None:
            self._defer(lambda: self._fan_out(event))
        else:
            self._fan_out(event)

    def _fan_out(self, event: DeskEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("desk listener failed on %s", type(event).__name__)

"""The desk: what visitors and librarians can do; every change is stored, then announced."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from rooms.events import (
    EventBus,
    FeedbackGiven,
    Listener,
    MailQueued,
    MessageAdded,
    MessageUpdated,
    OfflineWaiting,
    ReadUpTo,
    RoomAttached,
    SessionClosed,
    SessionStarted,
    Typing,
    VerificationDone,
    VerificationRequested,
)
from rooms.feedback import Feedback, validate_feedback
from rooms.hours import HoursStatus, ServiceHours
from rooms.ids import MessageID, RoomID, SessionID, UserID
from rooms.intents import DESK_LANE, Intent, IntentKind, Intents
from rooms.knowledge import KnowledgeBase
from rooms.offline import (
    LinkError,
    OfflineRules,
    check_link,
    link_expiry,
    reply_email,
    resume_url,
    sign_link,
)
from rooms.queue import Queue, QueueRules
from rooms.session import (
    CLIENT_ID_MAX,
    Message,
    Origin,
    Session,
    SessionState,
    ValidationError,
    VisitorForm,
    hash_token,
    new_session_id,
    new_token,
    token_matches,
)
from rooms.store import Store
from rooms.texts import text
from rooms.transcript import render
from rooms.verification import VerificationOutcome, Verifier

log = logging.getLogger("refdesk.rooms.desk")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class DeskError(Exception):
    """A request the desk refuses; ``code`` is stable for API clients."""

    code = "desk_error"


class UnknownSession(DeskError):
    code = "unknown_session"


class InvalidToken(DeskError):
    code = "invalid_token"


class SessionClosedError(DeskError):
    code = "session_closed"


class MessageTooLong(DeskError):
    code = "message_too_long"


class SessionStillOpen(DeskError):
    code = "session_open"


class TooManyRequests(DeskError):
    code = "too_many_requests"


class EmailUnavailable(DeskError):
    code = "email_unavailable"


class VerificationOff(DeskError):
    code = "verification_unavailable"


class VerificationNotRequested(DeskError):
    code = "verification_not_requested"


class BadLink(DeskError):
    code = "invalid_link"


class ClientBanned(DeskError):
    code = "client_banned"


@dataclass(frozen=True)
class Availability:
    """Whether visitors can chat now: open hours and somebody on duty."""

    open: bool
    staffed: bool
    status: HoursStatus | None

    @property
    def live(self) -> bool:
        return self.open and self.staffed


TRANSCRIPT_MAIL_INTERVAL = timedelta(minutes=10)
SUBJECTS = {
    "id": "Transkrip percakapan Anda dengan {desk}",
    "en": "Your chat transcript from {desk}",
}


@dataclass(frozen=True)
class DeskRules:
    """The parts of the config the core needs, free of any adapter's settings."""

    topics: tuple[str, ...]
    languages: tuple[str, ...] = ("id", "en")
    default_language: str = "id"
    max_message_length: int = 4000
    queue: QueueRules = field(default_factory=QueueRules)
    desk_name: str = "Tanya Pustakawan"
    timezone: str = "Asia/Jakarta"
    topic_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    email_enabled: bool = False
    greeting: dict[str, str] = field(default_factory=dict)
    verify_after_claim: bool = False
    offline: OfflineRules = field(default_factory=OfflineRules)


class Desk:
    """Sessions and messages. Adapters call in; the desk announces events to its listeners."""

    def __init__(
        self,
        store: Store,
        rules: DeskRules,
        clock: Clock = utcnow,
        knowledge: KnowledgeBase | None = None,
        verifier: Verifier | None = None,
        hours: ServiceHours | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.clock = clock
        self.knowledge = knowledge or KnowledgeBase([])
        self.verifier = verifier
        self.hours = hours
        self._was_open: bool | None = None
        # Events are announced once the change they tell of is committed.
        self.bus = EventBus(defer=store.db.after_commit)
        self.intents = Intents(store, self.bus, clock)
        self.queue = Queue(store, self.bus, rules.queue, clock, self.intents)
        if verifier is not None and rules.verify_after_claim:
            self.queue.after_claim = self._verify_after_claim
        self._emit = self.bus.emit

    def subscribe(self, listener: Listener) -> None:
        """Listeners run synchronously and must only schedule work (never block)."""
        self.bus.subscribe(listener)

    # visitor side

    def validate_form(self, raw: dict[str, Any]) -> VisitorForm:
        return VisitorForm.validate(
            raw,
            topics=set(self.rules.topics),
            languages=self.rules.languages,
            default_language=self.rules.default_language,
        )

    async def client_key(self, address: str) -> str:
        """A salted hash of a visitor's network address: enough to ban, useless to trace."""
        salt = await self.secret("client_key_salt")
        return hmac.new(salt.encode(), address.encode(), hashlib.sha256).hexdigest()[:32]

    async def check_client(self, client_key: str) -> None:
        until = await self.store.banned_until(client_key, self.clock())
        if until is not None:
            raise ClientBanned(
                "This connection may not use the chat for now. Please contact the library "
                "by other means."
            )

    async def ban_client(
        self, session: Session, by: UserID, days: int, reason: str | None
    ) -> datetime:
        """Ban the network address a session came from, and end the session."""
        if session.client_key is None:
            raise DeskError("This session's address is not known; it cannot be banned.")
        until = self.clock() + timedelta(days=days)
        async with self.store.unit():
            await self.store.ban(
                session.client_key,
                until=until,
                banned_by=by,
                reason=reason,
                session_id=session.id,
                at=self.clock(),
            )
            await self.end_session(
                session.id,
                by=by,
                note=f"banned: {reason}" if reason else None,
                banned_until=until,
            )
        log.info("session %s: its client is banned for %d days", session.id, days)
        return until

    async def start_session(
        self, form: VisitorForm, client_key: str | None = None
    ) -> tuple[Session, str]:
        """Create a session; returns it with the visitor's bearer token (shown once)."""
        if client_key is not None:
            await self.check_client(client_key)
        token = new_token()
        available = await self.availability()
        session = Session(
            id=new_session_id(),
            state=SessionState.OPEN,
            form=form,
            created_at=self.clock(),
            offline=not available.live,
            client_key=client_key,
        )
        greeting = self.rules.greeting.get(form.language) or self.rules.greeting.get("en")
        async with self.store.unit():
            await self.store.insert_session(session, hash_token(token))
            self._emit(SessionStarted(session))
            if greeting:
                welcome = Message(
                    id=MessageID(0),
                    session_id=session.id,
                    origin=Origin.DESK,
                    body=greeting.format_map({"visitor": form.name, "desk": self.rules.desk_name}),
                    created_at=self.clock(),
                )
                stored, _ = await self.store.insert_message(welcome)
                self._emit(MessageAdded(stored))
        log.info("session %s started (topic %s)", session.id, form.topic)
        return session, token

    async def get_session(self, session_id: str) -> Session:
        found = await self.store.get_session(session_id)
        if found is None:
            raise UnknownSession("No session with this id.")
        return found[0]

    async def authenticate(self, session_id: str, token: str) -> Session:
        """The session if ``token`` is its credential; raises otherwise."""
        found = await self.store.get_session(session_id)
        if found is None:
            raise UnknownSession("No session with this id.")
        session, token_hash = found
        if not token_matches(token, token_hash):
            raise InvalidToken("This token is not valid for this session.")
        return session

    async def visitor_message(
        self, session: Session, body: Any, client_id: Any
    ) -> tuple[Message, bool]:
        """Store a visitor message (idempotent by ``client_id``); returns (message, created)."""
        problems: dict[str, str] = {}
        if not isinstance(body, str) or not body.strip():
            problems["body"] = "required"
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= CLIENT_ID_MAX:
            problems["client_id"] = f"required, 1 to {CLIENT_ID_MAX} characters"
        if problems:
            raise ValidationError(problems)
        assert isinstance(body, str) and isinstance(client_id, str)
        body = body.strip()
        if len(body) > self.rules.max_message_length:
            raise MessageTooLong(
                f"A message may be at most {self.rules.max_message_length} characters."
            )
        message = Message(
            id=MessageID(0),
            session_id=session.id,
            origin=Origin.VISITOR,
            body=body,
            created_at=self.clock(),
            sender_name=session.form.name,
            client_id=client_id,
            needs_delivery=True,
        )
        async with self.store.unit():
            current = await self.get_session(session.id)
            if not current.is_open:
                # A retry of a message stored before the session closed still gets its answer.
                existing = await self.store.message_by_client_id(session.id, client_id)
                if existing is None:
                    raise SessionClosedError("This chat has ended.")
                return existing, False
            stored, created = await self.store.insert_message(message, enqueue_at=self.clock())
            if created:
                await self.intents.add(session.id, IntentKind.MESSAGE, message_id=stored.id)
                self._emit(MessageAdded(stored))
                if current.queued_at is None and current.owner is None:
                    # The first message: the room is made for it, then the librarians rung.
                    await self.queue.ring(await self.get_session(session.id), "new")
        return stored, created

    async def messages_after(
        self, session_id: SessionID, after: int, limit: int = 200
    ) -> list[Message]:
        return await self.store.messages_after(session_id, max(0, after), limit)

    async def end_session(
        self,
        session_id: SessionID,
        by: str,
        note: str | None = None,
        banned_until: datetime | None = None,
    ) -> Session:
        """Close a session (idempotent) and leave a notice for both sides.

        ``by`` is ``visitor`` or the closing librarian's user id; ``banned_until``: the chat
        ends with a ban of the visitor's connection.
        """
        async with self.store.unit():
            session = await self.get_session(session_id)
            if not session.is_open:
                return session
            key = "closed_by_visitor" if by == "visitor" else "closed_by_librarian"
            notice = Message(
                id=MessageID(0),
                session_id=session_id,
                origin=Origin.DESK,
                body=text(key, session.form.language),
                created_at=self.clock(),
                needs_delivery=by == "visitor",
            )
            stored = await self.store.close_session(session_id, self.clock(), by, notice)
            closed = await self.get_session(session_id)
            if stored is None:
                return closed
            if note:
                await self.store.add_note(session_id, by, note, self.clock())
            if stored.needs_delivery:
                # The room reads the visitor's goodbye before the librarians are let go.
                await self.intents.add(session_id, IntentKind.MESSAGE, message_id=stored.id)
            await self.intents.add(
                session_id,
                IntentKind.CLOSED,
                by=by,
                banned_until=banned_until.isoformat() if banned_until else None,
            )
            self._emit(MessageAdded(stored))
            self._emit(SessionClosed(closed, note))
        log.info(
            "session %s closed by %s", session_id, "visitor" if by == "visitor" else "librarian"
        )
        return closed

    async def give_feedback(self, session: Session, raw: dict[str, Any]) -> Feedback:
        """Store the visitor's rating (and comment) at once; later calls update it."""
        rating, comment = validate_feedback(raw)
        async with self.store.unit():
            current = await self.get_session(session.id)
            if current.is_open:
                raise SessionStillOpen("Feedback can be given once the chat has ended.")
            first = await self.store.feedback(session.id) is None
            feedback = await self.store.upsert_feedback(
                session.id, rating, comment, current.owner, self.clock()
            )
            await self.intents.add(
                session.id,
                IntentKind.FEEDBACK,
                rating=feedback.rating,
                comment=feedback.comment,
                librarian_name=current.owner_name,
            )
            self._emit(FeedbackGiven(current, feedback, first))
        log.info("session %s rated %d", session.id, rating)
        return feedback

    def topic_label(self, session: Session) -> str:
        labels = self.rules.topic_labels.get(session.form.topic, {})
        return labels.get(session.form.language) or labels.get("en") or session.form.topic

    async def transcript(self, session: Session) -> tuple[str, str]:
        """The conversation as (text, html), times in the library's time zone."""
        messages = await self.store.messages_after(session.id, 0, 100_000)
        return render(
            session,
            messages,
            desk_name=self.rules.desk_name,
            timezone=self.rules.timezone,
            topic_label=self.topic_label(session),
        )

    async def email_transcript(self, session: Session) -> int:
        """Queue the transcript for the visitor's own address (never another one)."""
        if not self.rules.email_enabled:
            raise EmailUnavailable("This desk does not send email.")
        last = await self.store.last_mail_at(session.id, "transcript")
        if last is not None and self.clock() - last < TRANSCRIPT_MAIL_INTERVAL:
            raise TooManyRequests("The transcript was sent a moment ago; check your inbox.")
        text_body, html_body = await self.transcript(session)
        subject = SUBJECTS.get(session.form.language, SUBJECTS["en"])
        mail_id = await self.store.enqueue_mail(
            session_id=session.id,
            kind="transcript",
            recipient=session.form.email,
            subject=subject.format(desk=self.rules.desk_name),
            text_body=text_body,
            html_body=html_body,
            at=self.clock(),
        )
        self._emit(MailQueued(mail_id))
        return mail_id

    # hours, offline messages, answers by email

    async def availability(self) -> Availability:
        now = self.clock()
        status = self.hours.status(now) if self.hours is not None else None
        is_open = status.open if status is not None else True
        staffed = bool(await self.queue.on_duty())
        return Availability(is_open, staffed, status)

    async def _link_secret(self) -> bytes:
        return (await self.secret("resume_link_secret")).encode()

    async def secret(self, key: str) -> str:
        """A random secret made once and kept in the store (the first caller makes it)."""
        async with self.store.unit():
            secret = await self.store.get_state(key)
            if secret is None:
                secret = new_token()
                await self.store.set_state(key, secret)
        return secret

    async def resume_link(self, session: Session) -> tuple[str, datetime]:
        until = link_expiry(self.clock(), self.rules.offline)
        token = sign_link(session.id, until, await self._link_secret())
        return resume_url(self.rules.offline.resume_page, token), until

    async def resume(self, link_token: str) -> tuple[Session, str]:
        """Trade a signed link from an email for a fresh visitor token (the old one stops)."""
        try:
            session_id = check_link(link_token, await self._link_secret(), self.clock())
        except LinkError as exc:
            raise BadLink(str(exc)) from None
        session = await self.get_session(session_id)
        token = new_token()
        await self.store.set_token_hash(session.id, hash_token(token))
        log.info("session %s resumed from an email link", session.id)
        return session, token

    async def mail_replies(self) -> int:
        """Email replies a visitor has not seen: offline sessions after a short quiet time,
        others once the visitor has been away for ``unseen_after``. Returns mails queued."""
        if not self.rules.email_enabled:
            return 0
        rules = self.rules.offline
        now = self.clock()
        queued = 0
        for session, replies in await self.store.unseen_replies(
            now - timedelta(seconds=rules.batch_delay)
        ):
            newest = max(r.created_at for r in replies)
            if not session.offline and newest > now - timedelta(seconds=rules.unseen_after):
                continue
            link, until = await self.resume_link(session)
            subject, text_body, html_body = reply_email(
                session,
                replies,
                desk_name=self.rules.desk_name,
                timezone=self.rules.timezone,
                link=link,
                until=until,
            )
            last = replies[-1].id
            async with self.store.unit():
                mail_id = await self.store.enqueue_mail(
                    session_id=session.id,
                    kind="replies",
                    recipient=session.form.email,
                    subject=subject,
                    text_body=text_body,
                    html_body=html_body,
                    at=now,
                    dedup_key=f"replies:{session.id}:{last}",
                )
                await self.store.mark_emailed(session.id, last)
                self._emit(MailQueued(mail_id))
            queued += 1
        return queued

    async def tick(self) -> None:
        """The desk's clock: escalation, answers by email, telling the desk it opened."""
        await self.queue.tick()
        await self.mail_replies()
        available = await self.availability()
        opened = available.open and self._was_open is not True
        self._was_open = available.open
        if opened and available.staffed:
            async with self.store.unit():
                waiting = await self.store.offline_waiting()
                if waiting:
                    users = [str(u) for u in await self.queue.on_duty()]
                    await self.intents.add(
                        DESK_LANE, IntentKind.OFFLINE_WAITING, count=waiting, users=users
                    )
                    self._emit(OfflineWaiting(waiting))

    # verification: during the chat, never a gate

    @property
    def verification_fields(self) -> tuple[str, ...]:
        return self.verifier.rules.fields if self.verifier is not None else ()

    async def _tell(self, session: Session, body: str) -> None:
        notice = Message(
            id=MessageID(0),
            session_id=session.id,
            origin=Origin.DESK,
            body=body,
            created_at=self.clock(),
        )
        stored, _ = await self.store.insert_message(notice)
        self._emit(MessageAdded(stored))

    async def request_verification(self, session: Session, by: UserID | None) -> Session:
        """Ask the visitor (in the widget) to confirm membership."""
        if self.verifier is None:
            raise VerificationOff("Member verification is not configured for this desk.")
        async with self.store.unit():
            current = await self.get_session(session.id)
            if not current.is_open:
                raise SessionClosedError("This chat has ended.")
            await self.store.set_verification(session.id, "requested")
            updated = await self.get_session(session.id)
            await self.intents.add(
                session.id,
                IntentKind.VERIFICATION_ASKED,
                by=by,
                fields=list(self.verification_fields),
            )
            self._emit(VerificationRequested(updated, by))
            await self._tell(updated, text("verify_asked", updated.form.language))
        return updated

    async def _verify_after_claim(self, session: Session, by: UserID) -> None:
        if session.verification is None:
            await self.request_verification(session, None)

    async def submit_verification(
        self, session: Session, client_key: str, fields: Any
    ) -> VerificationOutcome:
        """Check what the visitor typed against the member directory.

        Only the outcome is kept (audit row, session state, a notice); never the fields.
        """
        if self.verifier is None:
            raise VerificationOff("Member verification is not configured for this desk.")
        current = await self.get_session(session.id)
        if current.verification is None:
            raise VerificationNotRequested("The librarian has not asked for verification.")
        if not current.is_open:
            raise SessionClosedError("This chat has ended.")
        if self.verifier.attempts_used(session.id) == 0:
            used = await self.store.verification_attempts(session.id)
            if used:
                self.verifier.restore_attempts(session.id, used)
        today = self.clock().astimezone(ZoneInfo(self.rules.timezone)).date()
        outcome = await self.verifier.attempt(session.id, client_key, fields, today)
        code = str(outcome.code)
        async with self.store.unit():
            await self.store.audit_verification(
                session.id, client_key, current.owner, code, self.clock()
            )
            await self.store.set_verification(session.id, code)
            updated = await self.get_session(session.id)
            await self._tell(updated, outcome.visitor_text(updated.form.language))
            await self.intents.add(
                session.id, IntentKind.VERIFICATION_DONE, notice=outcome.notice()
            )
            self._emit(VerificationDone(updated, outcome.notice()))
        log.info("session %s verification: %s", session.id, code)
        return outcome

    async def visitor_typing(self, session: Session, typing: bool) -> None:
        if (await self.get_session(session.id)).is_open:
            self._emit(Typing(session.id, "visitor", typing))

    async def visitor_read(self, session: Session, up_to: int) -> Message | None:
        """The visitor has seen messages up to ``up_to`` (a message id)."""
        message = await self.store.message(up_to)
        if message is None or message.session_id != session.id:
            return None
        if message.origin is not Origin.LIBRARIAN:
            return None
        async with self.store.unit():
            if await self.store.set_visitor_seen(session.id, message.id):
                await self.intents.add(session.id, IntentKind.READ, message_id=message.id)
                self._emit(ReadUpTo(session.id, "visitor", message))
        return message

    # librarian side (called by the chat-network adapter)

    async def session_for_room(self, room_id: str) -> Session | None:
        return await self.store.session_by_room(room_id)

    async def attach_room(self, session_id: SessionID, room_id: RoomID) -> Session:
        await self.store.attach_room(session_id, room_id)
        session = await self.get_session(session_id)
        self._emit(RoomAttached(session))
        return session

    async def librarian_message(
        self,
        session: Session,
        sender_id: UserID,
        sender_name: str,
        body: str,
        remote_id: str,
        html: str | None = None,
    ) -> Message | None:
        """Store a librarian's reply (idempotent by ``remote_id``); None if seen before.

        The first librarian to reply in a waiting session claims it.
        """
        async with self.store.unit():
            if await self.store.message_by_remote_id(remote_id) is not None:
                return None
            current = await self.get_session(session.id)
            if current.is_open and current.owner is None and self.queue.is_librarian(sender_id):
                await self.queue.claim(session.id, sender_id, sender_name)
            message = Message(
                id=MessageID(0),
                session_id=session.id,
                origin=Origin.LIBRARIAN,
                body=body,
                html=html,
                created_at=self.clock(),
                sender_name=sender_name,
                sender_id=sender_id,
                remote_id=remote_id,
            )
            stored, created = await self.store.insert_message(message)
            if not created:
                return None
            self._emit(MessageAdded(stored))
        return stored

    async def librarian_edit(
        self, remote_id: str, body: str, html: str | None = None
    ) -> Message | None:
        updated = await self.store.update_message(
            remote_id, body=body, html=html, edited_at=self.clock()
        )
        if updated is not None:
            self._emit(MessageUpdated(updated))
        return updated

    async def message_deleted(self, remote_id: str) -> Message | None:
        updated = await self.store.update_message(remote_id, deleted_at=self.clock())
        if updated is not None:
            self._emit(MessageUpdated(updated))
        return updated

    async def librarian_typing(self, session: Session, names: tuple[str, ...]) -> None:
        self._emit(Typing(session.id, "librarian", bool(names), names))

    async def librarian_read(self, session: Session, remote_id: str) -> Message | None:
        """A librarian's read receipt on a visitor message (found by its remote id)."""
        message = await self.store.message_by_remote_id(remote_id)
        if message is None or message.session_id != session.id:
            return None
        if await self.store.set_read_up_to(session.id, message.id):
            self._emit(ReadUpTo(session.id, "librarian", message))
        return message

    async def message_by_remote_id(self, remote_id: str) -> Message | None:
        return await self.store.message_by_remote_id(remote_id)

    # what an adapter received: each event is acted on once (its id is claimed in the unit
    # of work that carries out its effect)

    async def claim_event(self, event_id: str) -> bool:
        """Claim an incoming event inside the unit that handles it; False: handled before."""
        return await self.store.record_event(event_id, self.clock())

    async def event_known(self, event_id: str) -> bool:
        return await self.store.event_known(event_id)

    async def record_poison(
        self, event_id: str, room_id: str | None, event_type: str | None, reason: str
    ) -> None:
        """An event that cannot be handled: kept with its reason, never tried again."""
        await self.store.record_poison(event_id, room_id, event_type, reason, self.clock())

    async def say(
        self, lane: str, room_id: str, body: str, mentions: list[str] | None = None
    ) -> None:
        """An adapter's own notice (an answer to a command), sent from the store like every
        other: stored in the caller's unit of work, performed once it commits."""
        await self.intents.add(
            lane, IntentKind.SAY, room_id=room_id, body=body, mentions=mentions or []
        )

    async def accept_invitation(self, room_id: str) -> None:
        await self.intents.add(DESK_LANE, IntentKind.JOIN, room_id=room_id)

    def unit(self) -> AbstractAsyncContextManager[object]:
        """One unit of work for an adapter's action: what it changes commits together."""
        return self.store.unit()

    async def add_note(self, session: Session, author: UserID, body: str) -> None:
        """An internal note: kept with the session, never shown to the visitor."""
        await self.store.add_note(session.id, author, body, self.clock())

    async def pending_deliveries(self, limit: int = 100) -> list[Message]:
        return await self.store.pending_deliveries(limit)

    async def message(self, message_id: MessageID) -> Message | None:
        return await self.store.message(message_id)

    async def feedback(self, session_id: SessionID) -> Feedback | None:
        return await self.store.feedback(session_id)

    # intents, for the adapter that performs them (rooms/intents.py)

    async def pending_lanes(self) -> list[str]:
        return await self.store.pending_lanes()

    async def next_intent(self, lane: str) -> Intent | None:
        return await self.store.next_intent(lane)

    async def last_intent_id(self) -> int:
        return await self.store.last_intent_id()

    async def intent_done(
        self, intent_id: int, delivered: tuple[MessageID, str | None] | None = None
    ) -> None:
        """The intent is performed; ``delivered``: the message it delivered and its event."""
        async with self.store.unit():
            if delivered is not None:
                await self.store.mark_delivered(delivered[0], delivered[1], self.clock())
            await self.store.intent_done(intent_id, self.clock())

    async def intent_failed(self, intent_id: int, reason: str, *, give_up: bool) -> int:
        return await self.store.intent_failed(intent_id, reason, self.clock(), give_up=give_up)

    async def mark_delivered(self, message_id: MessageID, remote_id: str | None) -> None:
        await self.store.mark_delivered(message_id, remote_id, self.clock())

    async def open_sessions_with_rooms(self) -> list[Session]:
        return await self.store.open_sessions_with_rooms()

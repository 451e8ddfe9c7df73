"""The desk: the one door into the core for every adapter.

What visitors and librarians can do is here or in the small services beside it (``queue``,
``bans``, ``replies``, ``membership``, ``transcripts``, ``outbox``). Every change is one unit of
work in the store (rooms/store/database.py): the new state, what the other side is told, and
the intents for the chat network commit together, and are announced (rooms/events.py) only once
committed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from rooms.attachments import AttachmentRules, CheckedFile, check_in_thread
from rooms.bans import Bans, secret
from rooms.cooperative import Cooperative, CooperativeRules
from rooms.errors import (
    BadLink,
    ClientBanned,
    DeskError,
    EditWindowPassed,
    EmailUnavailable,
    InvalidToken,
    MessageDeleted,
    MessageTooLong,
    NotYourMessage,
    SessionClosedError,
    SessionStillOpen,
    TooManyRequests,
    UnknownMessage,
    UnknownSession,
    VerificationNotRequested,
    VerificationOff,
)
from rooms.events import (
    EventBus,
    FeedbackGiven,
    FirstReply,
    Listener,
    MessageAdded,
    MessageUpdated,
    OfflineWaiting,
    ReadUpTo,
    SessionClosed,
    SessionStarted,
    Typing,
)
from rooms.feedback import Feedback, validate_feedback
from rooms.hours import HoursStatus, ServiceHours
from rooms.ids import MessageID, RoomID, SessionID, UserID
from rooms.intents import DESK_LANE, Intent, IntentKind
from rooms.knowledge import KnowledgeBase
from rooms.live import Invitation, LiveError, LiveView, LiveVisitors
from rooms.membership import Membership
from rooms.offline import OfflineRules
from rooms.outbox import Delivered, Outbox, Work
from rooms.privacy import Purger, Retention
from rooms.queue import Queue, QueueRules
from rooms.replies import EmailReplies
from rooms.reporting import ReportRules, Reports
from rooms.rights import VisitorRights
from rooms.search import Search
from rooms.session import (
    CLIENT_ID_MAX,
    Attachment,
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
from rooms.store import Database, Tx, attachments, mail, messages, notes, sessions, workload
from rooms.store import feedback as feedback_rows
from rooms.store import reports as report_facts
from rooms.store.mail import Mail
from rooms.store.workload import Workload
from rooms.texts import text
from rooms.transcript import Transcripts
from rooms.verification import VerificationOutcome, Verifier

log = logging.getLogger("refdesk.rooms.desk")

Clock = Callable[[], datetime]
T = TypeVar("T")

__all__ = [
    "BadLink",
    "ClientBanned",
    "Desk",
    "DeskError",
    "DeskRules",
    "EditWindowPassed",
    "EmailUnavailable",
    "InvalidToken",
    "MessageDeleted",
    "MessageTooLong",
    "NotYourMessage",
    "SessionClosedError",
    "SessionStillOpen",
    "TooManyRequests",
    "UnknownMessage",
    "UnknownSession",
    "VerificationNotRequested",
    "VerificationOff",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Availability:
    """Whether visitors can chat now: open hours and somebody on duty."""

    open: bool
    staffed: bool
    status: HoursStatus | None
    covered: bool = False  # this desk cannot serve now, but a partner library covers the hour

    @property
    def live(self) -> bool:
        return (self.open and self.staffed) or self.covered


@dataclass(frozen=True)
class VisitorUpdate:
    messages: list[Message]
    session: Session
    position: int | None


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
    retention: Retention = field(default_factory=Retention)
    attachments: AttachmentRules = field(default_factory=AttachmentRules)
    offline: OfflineRules = field(default_factory=OfflineRules)
    # How long a visitor may edit or delete their own message (seconds; 0: never).
    visitor_edit_window: int = 900
    reports: ReportRules = field(default_factory=ReportRules)
    cooperative: CooperativeRules = field(default_factory=CooperativeRules)


class Desk:
    """Sessions and messages. Adapters call in; the desk announces events to its listeners."""

    def __init__(
        self,
        db: Database,
        rules: DeskRules,
        clock: Clock = utcnow,
        knowledge: KnowledgeBase | None = None,
        verifier: Verifier | None = None,
        hours: ServiceHours | None = None,
    ) -> None:
        self.db = db
        self.rules = rules
        self.clock = clock
        self.knowledge = knowledge or KnowledgeBase([])
        self.verifier = verifier
        self.hours = hours
        self._was_open: bool | None = None
        # Events are announced once the change they tell of is committed.
        self.bus = EventBus(defer=db.after_commit)
        self._emit = self.bus.emit
        self.outbox = Outbox(db, self.bus, clock)
        self.purger = Purger(db, self.outbox, clock, rules.retention)
        self.search = Search(db, clock, rules.topic_labels)
        self.rights = VisitorRights(db, self.outbox, clock, rules.desk_name, self.end_session)
        self.queue = Queue(db, self.bus, rules.queue, clock, self.outbox)
        self.cooperative = Cooperative(
            db,
            self.bus,
            clock,
            self.outbox,
            rules.cooperative,
            timezone=rules.timezone,
            desk_name=rules.desk_name,
            is_local=self.queue.is_librarian,
            served_here=self._served_here,
        )
        self.queue.library_of = self.cooperative.library_of
        self.bans = Bans(db, clock, self.end_session)
        self.replies = EmailReplies(
            db,
            self.bus,
            clock,
            rules.offline,
            desk_name=rules.desk_name,
            timezone=rules.timezone,
            enabled=rules.email_enabled,
        )
        self.membership = Membership(db, self.bus, clock, self.outbox, verifier, rules.timezone)
        if verifier is not None and rules.verify_after_claim:
            self.queue.after_claim = self.membership.after_claim
        self.reports = Reports(
            db,
            self.outbox,
            clock,
            rules.reports,
            timezone=rules.timezone,
            supervisors=rules.queue.supervisors,
            open_seconds=hours.open_seconds if hours is not None else None,
            partner_of=self.cooperative.is_partner,
            teams={
                team.id: (
                    team.name,
                    team.first_response_target or rules.reports.first_response_target,
                )
                for team in rules.queue.teams.teams
            },
        )
        self.reports.retagged = self.search.reindex
        # Visitors on the site now (memory only; per process: see rooms/live.py).
        self.live = LiveVisitors(self.bus, clock, rules.languages)
        # False in a process that serves no widget (``--role bridge``): it sees no visitors.
        self.sees_visitors = True
        self.transcripts = Transcripts(
            db,
            self.bus,
            clock,
            desk_name=rules.desk_name,
            timezone=rules.timezone,
            topic_label=self.topic_label,
            email_enabled=rules.email_enabled,
        )

    def subscribe(self, listener: Listener) -> None:
        """Listeners run synchronously and must only schedule work (never block)."""
        self.bus.subscribe(listener)

    async def transaction(
        self, unit: Callable[[Tx], Awaitable[T]], *, savepoint: bool = False
    ) -> T:
        """One unit of work for an adapter: its own bookkeeping (e.g. the claim of an incoming
        event) and the desk operations it calls commit together. ``savepoint``: inside another
        unit, a failure undoes only this one."""
        return await self.db.write(unit, savepoint=savepoint)

    async def read(self, unit: Callable[[Tx], Awaitable[T]]) -> T:
        return await self.db.read(unit)

    async def secret(self, key: str) -> str:
        """A random value made once for this desk and kept (e.g. an adapter's instance id)."""
        return await secret(self.db, key)

    # visitor side

    def validate_form(self, raw: dict[str, Any]) -> VisitorForm:
        return VisitorForm.validate(
            raw,
            topics=set(self.rules.topics),
            languages=self.rules.languages,
            default_language=self.rules.default_language,
        )

    async def client_key(self, address: str) -> str:
        return await self.bans.client_key(address)

    async def check_client(self, client_key: str) -> None:
        await self.bans.check(client_key)

    async def ban_client(
        self, session: Session, by: UserID, days: int, reason: str | None
    ) -> datetime:
        return await self.bans.ban(session, by, days, reason)

    async def start_session(
        self, form: VisitorForm, client_key: str | None = None, invitation: str | None = None
    ) -> tuple[Session, str]:
        """Create a session; returns it with the visitor's bearer token (shown once).

        ``invitation``: the token of a librarian's invitation the visitor accepted (rooms/live.py):
        the chat starts claimed by that librarian, and nobody else is rung. A token that is not
        (or no longer) pending starts an ordinary chat."""
        if client_key is not None:
            await self.check_client(client_key)
        token = new_token()
        available = await self.availability()
        invited = self.live.take(invitation) if invitation is not None else None
        session = Session(
            id=new_session_id(),
            state=SessionState.OPEN,
            form=form,
            created_at=self.clock(),
            offline=not available.live and invited is None,
            client_key=client_key,
        )
        greeting = self.rules.greeting.get(form.language) or self.rules.greeting.get("en")

        async def unit(tx: Tx) -> Session:
            await sessions.insert(tx, session, hash_token(token))
            self._emit(SessionStarted(session))
            if greeting:
                body = greeting.format_map({"visitor": form.name, "desk": self.rules.desk_name})
                await self._tell(session, body)
            if invited is not None:
                claimed = await self.queue.claim(
                    session.id, invited.librarian, invited.librarian_name, invitation=invited
                )
                if claimed.won:
                    self.live.accepted(invited, session.id)
            stored = await sessions.get(tx, session.id)  # as stored (store's time precision)
            assert stored is not None
            return stored

        stored = await self.db.write(unit)
        log.info("session %s started (topic %s)", session.id, form.topic)
        return stored, token

    # the live view: the desk now, and the visitors on the site

    async def live_view(self) -> LiveView:
        """Who is on duty, the chats waiting (with their waits), who serves which, and the
        visitors on the library's pages now (None in a process that serves no widget)."""
        chats = await self.open_sessions()
        on_duty = await self.queue.on_duty()
        now = self.clock()
        return LiveView(
            at=now,
            on_duty=on_duty,
            waiting=[(s, now - (s.queued_at or s.created_at)) for s in chats if s.owner is None],
            served=[s for s in chats if s.owner is not None],
            visitors=self.live.visitors() if self.sees_visitors else None,
        )

    def invite_visitor(
        self,
        number: int,
        librarian: UserID,
        librarian_name: str,
        text: str | None = None,
        reply_to: str | None = None,
    ) -> Invitation:
        """A librarian invites visitor ``number`` of the live list to chat (raises
        ``rooms.live.LiveError`` with the reason when that cannot be)."""
        if not self.queue.is_librarian(librarian):
            raise LiveError("Only librarians of this desk can invite visitors.")
        if not self.sees_visitors:
            raise LiveError("This process serves no widget: it does not see the visitors.")
        return self.live.invite(number, librarian, librarian_name, text, reply_to)

    async def get_session(self, session_id: str) -> Session:
        found = await self.db.read(lambda tx: sessions.get(tx, session_id))
        if found is None:
            raise UnknownSession("No session with this id.")
        return found

    async def authenticate(self, session_id: str, token: str) -> Session:
        """The session if ``token`` is its credential; raises otherwise."""
        found = await self.db.read(lambda tx: sessions.get_with_token(tx, session_id))
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
        return await self._store_visitor_message(session, body, client_id, None)

    async def visitor_attachment(
        self, session: Session, data: bytes, filename: Any, caption: Any, client_id: Any
    ) -> tuple[Message, bool]:
        """A file from the visitor (idempotent by ``client_id``): checked by its content, an
        image without its metadata, stored with its message before the answer; the room gets it
        as the visitor's ``m.image`` or ``m.file``."""
        problems: dict[str, str] = {}
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= CLIENT_ID_MAX:
            problems["client_id"] = f"required, 1 to {CLIENT_ID_MAX} characters"
        if not isinstance(filename, str) or len(filename) > 255:
            problems["filename"] = "at most 255 characters"
        if caption is not None and not isinstance(caption, str):
            problems["caption"] = "must be a text"
        if problems:
            raise ValidationError(problems)
        assert isinstance(client_id, str) and isinstance(filename, str)
        caption = (caption or "").strip()
        if len(caption) > self.rules.max_message_length:
            raise MessageTooLong(
                f"A caption may be at most {self.rules.max_message_length} characters."
            )
        existing = await self.db.read(lambda tx: messages.by_client_id(tx, session.id, client_id))
        if existing is not None:  # a retry: nothing is checked or stored twice
            return existing, False
        checked = await check_in_thread(data, filename, self.rules.attachments)
        return await self._store_visitor_message(
            session, caption or checked.filename, client_id, checked
        )

    async def _store_visitor_message(
        self, session: Session, body: str, client_id: str, file: CheckedFile | None
    ) -> tuple[Message, bool]:
        now = self.clock()
        message = Message(
            id=MessageID(0),
            session_id=session.id,
            origin=Origin.VISITOR,
            body=body,
            created_at=now,
            sender_name=session.form.name,
            client_id=client_id,
            needs_delivery=True,
        )

        async def unit(tx: Tx) -> tuple[Message, bool]:
            current = await sessions.get_locked(tx, session.id)
            if current is None or not current.is_open:
                existing = await messages.by_client_id(tx, session.id, client_id)
                if existing is not None:
                    return existing, False  # a retry of a message stored before the close
                raise SessionClosedError("This chat has ended.")
            row = message
            if file is not None:  # kept once: a retry's file is not stored again
                if (existing := await messages.by_client_id(tx, session.id, client_id)) is not None:
                    return existing, False
                row = dataclasses.replace(
                    message, attachment=await self._keep_file(tx, session.id, file)
                )
            stored = await messages.insert_new(tx, row)
            if stored is None:  # a retry: the stored row answers it
                existing = await messages.by_client_id(tx, session.id, client_id)
                assert existing is not None
                return existing, False
            # The chat's row is locked (or the store has one writer): what it says holds.
            first = current.queued_at is None and current.owner is None
            # Its first message changes the chat below (queued, rung): that one is read back.
            await self.outbox.add(
                session.id,
                IntentKind.MESSAGE,
                context=None if first else (current, stored),
                message_id=stored.id,
            )
            self._emit(MessageAdded(stored))
            queued = await sessions.enqueue(tx, session.id, now) if first else None
            if queued is not None:
                # The first message: the room is made for it, then the librarians rung.
                await self.queue.ring(queued, "new")
            return stored, True

        return await self.db.write(unit)

    async def visitor_edit(self, session: Session, message_id: Any, body: Any) -> Message:
        """The visitor rewrites one of their own messages (within the edit window); the room
        gets it as an edit (``m.replace``)."""
        if not isinstance(body, str) or not body.strip():
            raise ValidationError({"body": "required"})
        body = body.strip()
        if len(body) > self.rules.max_message_length:
            raise MessageTooLong(
                f"A message may be at most {self.rules.max_message_length} characters."
            )
        return await self._visitor_rewrite(session, message_id, IntentKind.VISITOR_EDIT, body)

    async def visitor_delete(self, session: Session, message_id: Any) -> Message:
        """The visitor takes back one of their own messages (within the edit window); the
        room's copy is redacted."""
        return await self._visitor_rewrite(session, message_id, IntentKind.VISITOR_DELETE, None)

    async def _visitor_rewrite(
        self, session: Session, message_id: Any, kind: IntentKind, body: str | None
    ) -> Message:
        if isinstance(message_id, bool) or not isinstance(message_id, int) or message_id < 1:
            raise UnknownMessage("No such message in this chat.")
        now = self.clock()
        window = timedelta(seconds=self.rules.visitor_edit_window)

        async def unit(tx: Tx) -> Message:
            current = await sessions.get_locked(tx, session.id)
            if current is None or not current.is_open:
                raise SessionClosedError("This chat has ended.")
            found = await messages.get(tx, message_id)
            if found is None or found.session_id != session.id:
                raise UnknownMessage("No such message in this chat.")
            if found.origin is not Origin.VISITOR:
                raise NotYourMessage("Only your own messages can be changed.")
            if found.deleted_at is not None:
                raise MessageDeleted("This message was deleted.")
            if now - found.created_at > window:
                raise EditWindowPassed("This message is too old to change.")
            if body is None:
                changed = await messages.delete_by_id(tx, message_id, now)
            else:
                changed = await messages.edit_by_id(tx, message_id, body, now)
            assert changed is not None  # the chat is locked: nothing else changed it
            await self.outbox.add(session.id, kind, message_id=changed.id)
            self._emit(MessageUpdated(changed))
            return changed

        return await self.db.write(unit)

    async def visitor_update(
        self, session_id: SessionID, after: int, limit: int = 200
    ) -> VisitorUpdate:
        """What a visitor's connection shows, read in one trip: the messages after cursor
        ``after``, the session, and its place in the queue."""

        async def unit(tx: Tx) -> VisitorUpdate:
            found = await messages.after(tx, session_id, max(0, after), limit)
            session = await sessions.get(tx, session_id)
            if session is None:
                raise UnknownSession("No session with this id.")
            return VisitorUpdate(found, session, await sessions.queue_position(tx, session))

        return await self.db.read(unit)

    async def messages_after(
        self, session_id: SessionID, after: int, limit: int = 200
    ) -> list[Message]:
        return await self.db.read(lambda tx: messages.after(tx, session_id, max(0, after), limit))

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

        async def unit(tx: Tx) -> tuple[Session, bool]:
            await tx.lock_session(session_id)
            closed = await sessions.close(tx, session_id, self.clock(), by)
            if closed is None:
                current = await sessions.get(tx, session_id)
                if current is None:
                    raise UnknownSession("No session with this id.")
                return current, False
            key = "closed_by_visitor" if by == "visitor" else "closed_by_librarian"
            # The visitor's goodbye goes to the room too, before the librarians are let go.
            notice = await self._tell(
                closed, text(key, closed.form.language), to_room=by == "visitor"
            )
            if note:
                await notes.add(tx, session_id, by, note, self.clock())
            await self.queue.closed(closed)
            await self.search.reindex(tx, session_id)
            if notice.needs_delivery:
                await self.outbox.add(session_id, IntentKind.MESSAGE, message_id=notice.id)
            await self.outbox.add(
                session_id,
                IntentKind.CLOSED,
                by=by,
                banned_until=banned_until.isoformat() if banned_until else None,
            )
            self._emit(SessionClosed(closed, note))
            return closed, True

        session, closed_now = await self.db.write(unit)
        if closed_now:
            who = "visitor" if by == "visitor" else "librarian"
            log.info("session %s closed by %s", session_id, who)
        return session

    async def give_feedback(self, session: Session, raw: dict[str, Any]) -> Feedback:
        """Store the visitor's rating (and comment) at once; later calls update it."""
        rating, comment = validate_feedback(raw)

        async def unit(tx: Tx) -> Feedback:
            await tx.lock_session(session.id)
            current = await sessions.get(tx, session.id)
            assert current is not None
            if current.is_open:
                raise SessionStillOpen("Feedback can be given once the chat has ended.")
            first = await feedback_rows.get(tx, session.id) is None
            given = await feedback_rows.upsert(
                tx, session.id, rating, comment, current.owner, self.clock()
            )
            await self.outbox.add(
                session.id,
                IntentKind.FEEDBACK,
                rating=given.rating,
                comment=given.comment,
                librarian_name=current.owner_name,
            )
            self._emit(FeedbackGiven(current, given, first))
            return given

        given = await self.db.write(unit)
        log.info("session %s rated %d", session.id, rating)
        return given

    def topic_label(self, session: Session) -> str:
        labels = self.rules.topic_labels.get(session.form.topic, {})
        return labels.get(session.form.language) or labels.get("en") or session.form.topic

    async def transcript(self, session: Session) -> tuple[str, str]:
        """The conversation to download as (text, html), times in the library's time zone, the
        chat's pictures inside the page."""
        return await self.transcripts.render(session, pictures=True)

    async def email_transcript(self, session: Session) -> int:
        return await self.transcripts.email(session)

    # hours, offline messages, answers by email

    async def availability(self) -> Availability:
        now = self.clock()
        status = self.hours.status(now) if self.hours is not None else None
        is_open = status.open if status is not None else True
        staffed = bool(await self.queue.on_duty())
        covered = not (is_open and staffed) and self.cooperative.covers(now)
        return Availability(is_open, staffed, status, covered)

    async def _served_here(self) -> bool:
        """This desk itself can serve now: open, and somebody on duty."""
        available = await self.availability()
        return available.open and available.staffed

    async def resume_link(self, session: Session) -> tuple[str, datetime]:
        return await self.replies.resume_link(session)

    async def resume(self, link_token: str) -> tuple[Session, str]:
        return await self.replies.resume(link_token)

    async def mail_replies(self) -> int:
        return await self.replies.mail_replies()

    async def tick(self) -> None:
        """The desk's clock: escalation, rolling chats over to partner libraries, answers by
        email, the daily purge, indexing chats kept from before the search index, telling the
        desk it opened."""
        await self.queue.tick()
        await self.cooperative.tick()
        await self.mail_replies()
        await self.purger.run_if_due()
        await self.search.backfill()
        available = await self.availability()
        opened = available.open and self._was_open is not True
        self._was_open = available.open
        if not (opened and available.staffed):
            return

        async def unit(tx: Tx) -> None:
            waiting = await sessions.offline_waiting(tx)
            if waiting:
                users = [str(u) for u in await self.queue.on_duty()]
                await self.outbox.add(
                    DESK_LANE, IntentKind.OFFLINE_WAITING, count=waiting, users=users
                )
                self._emit(OfflineWaiting(waiting))

        await self.db.write(unit)

    # verification: during the chat, never a gate

    @property
    def verification_fields(self) -> tuple[str, ...]:
        return self.membership.fields

    async def request_verification(self, session: Session, by: UserID | None) -> Session:
        """Ask the visitor (in the widget) to confirm membership."""
        return await self.membership.request(session, by)

    async def submit_verification(
        self, session: Session, client_key: str, fields: Any
    ) -> VerificationOutcome:
        return await self.membership.submit(session, client_key, fields)

    async def _tell(self, session: Session, body: str, *, to_room: bool = False) -> Message:
        from rooms.notices import tell_visitor

        return await tell_visitor(self.db, self.bus, self.clock, session, body, to_room=to_room)

    async def set_visitor_language(self, session: Session, language: Any) -> Session:
        """The visitor switched the widget's language: what the desk tells them from now on
        (notices, the transcript, mail) comes in it."""
        if not isinstance(language, str) or language not in self.rules.languages:
            raise ValidationError({"language": f"must be one of {', '.join(self.rules.languages)}"})

        async def unit(tx: Tx) -> Session:
            updated = await sessions.set_language(tx, session.id, language)
            if updated is None:
                raise UnknownSession("No session with this id.")
            return updated

        return await self.db.write(unit)

    async def visitor_typing(self, session: Session, typing: bool) -> None:
        if (await self.get_session(session.id)).is_open:
            self._emit(Typing(session.id, "visitor", typing))

    async def visitor_read(self, session: Session, up_to: int) -> Message | None:
        """The visitor has seen messages up to ``up_to`` (a message id)."""

        async def unit(tx: Tx) -> Message | None:
            message = await messages.get(tx, up_to)
            if message is None or message.session_id != session.id:
                return None
            if message.origin is not Origin.LIBRARIAN:
                return None
            await tx.lock_session(session.id)
            if await sessions.raise_mark(tx, session.id, "visitor_seen_up_to", message.id):
                await self.outbox.add(session.id, IntentKind.READ, message_id=message.id)
                self._emit(ReadUpTo(session.id, "visitor", message))
            return message

        return await self.db.write(unit)

    # librarian side (called by the chat-network adapter)

    async def _keep_file(
        self, tx: Tx, session_id: str, file: CheckedFile, mxc: str | None = None
    ) -> Attachment:
        attachment_id = await attachments.add(
            tx,
            session_id,
            mimetype=file.mimetype,
            filename=file.filename,
            data=file.data,
            width=file.width,
            height=file.height,
            thumbnail=file.thumbnail,
            thumb_mimetype=file.thumb_mimetype,
            thumb_width=file.thumb_width,
            thumb_height=file.thumb_height,
            mxc=mxc,  # a librarian's: where the homeserver keeps it (a purge deletes it there)
            at=self.clock(),
        )
        return Attachment(
            attachment_id, file.filename, file.mimetype, len(file.data), file.width, file.height
        )

    async def attachment_uploaded(self, attachment_id: int, mxc: str, thumb: str | None) -> None:
        """The homeserver has the visitor's file: a retry sends the same one."""
        await self.db.write(lambda tx: attachments.set_uploaded(tx, attachment_id, mxc, thumb))

    async def attachment(self, session_id: str, attachment_id: int) -> attachments.Stored | None:
        """A file of this chat (of no other)."""
        return await self.db.read(lambda tx: attachments.get(tx, session_id, attachment_id))

    async def session_for_room(self, room_id: str) -> Session | None:
        return await self.db.read(lambda tx: sessions.by_room(tx, room_id))

    async def attach_room(self, session_id: SessionID, room_id: RoomID) -> Session:
        """The chat network made the session's room (nobody needs telling: the adapter that made
        it goes on from the session this returns)."""
        attached = await self.db.write(lambda tx: sessions.attach_room(tx, session_id, room_id))
        return attached or await self.get_session(session_id)

    async def librarian_message(
        self,
        session: Session,
        sender_id: UserID,
        sender_name: str,
        body: str,
        remote_id: str,
        html: str | None = None,
        file: CheckedFile | None = None,
        mxc: str | None = None,
    ) -> Message | None:
        """Store a librarian's reply (idempotent by ``remote_id``), with the file it carries;
        None if seen before.

        The first librarian to reply in a waiting session claims it.
        """

        async def unit(tx: Tx) -> Message | None:
            current = await sessions.get_locked(tx, session.id)
            if await messages.by_remote_id(tx, remote_id) is not None:
                return None
            assert current is not None
            if current.is_open and current.owner is None and self.queue.may_serve(sender_id):
                claim = await self.queue.claim(session.id, sender_id, sender_name)
                if claim.refused is not None and current.room_id is not None:
                    # At their cap: the answer reaches the visitor, the chat stays waiting.
                    await self.say(session.id, current.room_id, claim.refused, [sender_id])
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
            if file is not None:
                message = dataclasses.replace(
                    message, attachment=await self._keep_file(tx, session.id, file, mxc)
                )
            stored = await messages.insert(tx, message)
            first = current.first_reply_at is None
            if first:  # kept for the reports, as the metrics' first reply
                await report_facts.first_reply(tx, session.id, sender_id, message.created_at)
            self._emit(MessageAdded(stored))
            if first and not current.offline:
                self._emit(FirstReply(current, stored.created_at - current.created_at))
            return stored

        return await self.db.write(unit)

    async def librarian_edit(
        self, remote_id: str, body: str, html: str | None = None
    ) -> Message | None:
        async def unit(tx: Tx) -> Message | None:
            if not await self._lock_chat_of(tx, remote_id):
                return None
            edited = await messages.edit(tx, remote_id, body, html, self.clock())
            if edited is not None:  # a closed chat's entry follows (an open one is indexed later)
                await self.search.reindex(tx, edited.session_id)
            return edited

        updated = await self.db.write(unit)
        if updated is not None:
            self._emit(MessageUpdated(updated))
        return updated

    async def message_deleted(self, remote_id: str) -> Message | None:
        async def unit(tx: Tx) -> Message | None:
            if not await self._lock_chat_of(tx, remote_id):
                return None
            deleted = await messages.delete(tx, remote_id, self.clock())
            if deleted is not None:  # its words leave a closed chat's entry
                await self.search.reindex(tx, deleted.session_id)
            return deleted

        updated = await self.db.write(unit)
        if updated is not None:
            self._emit(MessageUpdated(updated))
        return updated

    async def _lock_chat_of(self, tx: Tx, remote_id: str) -> bool:
        """Take the lock of the chat a message belongs to (an edit gets a new sequence number,
        which must be committed in order with the chat's other changes)."""
        message = await messages.by_remote_id(tx, remote_id)
        if message is None:
            return False
        await tx.lock_session(message.session_id)
        return True

    async def librarian_typing(self, session: Session, names: tuple[str, ...]) -> None:
        self._emit(Typing(session.id, "librarian", bool(names), names))

    async def librarian_read(self, session: Session, remote_id: str) -> Message | None:
        """A librarian's read receipt on a visitor message (found by its remote id)."""

        async def unit(tx: Tx) -> Message | None:
            message = await messages.by_remote_id(tx, remote_id)
            if message is None or message.session_id != session.id:
                return None
            if await sessions.raise_mark(tx, session.id, "read_up_to", message.id):
                self._emit(ReadUpTo(session.id, "librarian", message))
            return message

        return await self.db.write(unit)

    async def message_by_remote_id(self, remote_id: str) -> Message | None:
        return await self.db.read(lambda tx: messages.by_remote_id(tx, remote_id))

    async def message(self, message_id: MessageID) -> Message | None:
        return await self.db.read(lambda tx: messages.get(tx, message_id))

    async def feedback(self, session_id: SessionID) -> Feedback | None:
        return await self.db.read(lambda tx: feedback_rows.get(tx, session_id))

    async def add_note(self, session: Session, author: UserID, body: str) -> None:
        """An internal note: kept with the session, never shown to the visitor (a closed chat
        is found by it from then on)."""

        async def unit(tx: Tx) -> None:
            await notes.add(tx, session.id, author, body, self.clock())
            await self.search.reindex(tx, session.id)

        await self.db.write(unit)

    async def notes(self, session_id: SessionID) -> list[tuple[str, str, datetime]]:
        return await self.db.read(lambda tx: notes.of_session(tx, session_id))

    async def open_sessions(self) -> list[Session]:
        """Every chat in the queue or being served, in queue order."""
        return await self.db.read(sessions.in_queue_or_served)

    async def open_sessions_with_rooms(self) -> list[Session]:
        return await self.db.read(sessions.open_with_rooms)

    async def workload(self) -> Workload:
        """Chats waiting and served, and the intents not yet performed: one cheap read (the
        operations metrics ask it at every scrape)."""
        return await self.db.read(workload.read)

    async def pending_deliveries(self, limit: int = 100) -> list[Message]:
        return await self.db.read(lambda tx: messages.pending_deliveries(tx, limit))

    async def mark_delivered(self, message_id: MessageID, remote_id: str | None) -> None:
        await self.db.write(
            lambda tx: messages.mark_delivered(tx, message_id, remote_id, self.clock())
        )

    async def ratings_by_librarian(self) -> list[tuple[str, int, float]]:
        return await self.db.read(feedback_rows.by_librarian)

    # intents, for the adapter that performs them (rooms/intents.py)

    async def pending_lanes(self) -> list[str]:
        return await self.outbox.lanes()

    async def next_intent(self, lane: str) -> Intent | None:
        return await self.outbox.next_in(lane)

    async def take_intent(
        self, lane: str, finished: tuple[int, Delivered | None] | None = None
    ) -> Work | None:
        """The lane's next intent with its session and message (``finished``: the previous
        one is done first), in one trip."""
        return await self.outbox.take(lane, finished)

    async def last_intent_id(self) -> int:
        return await self.outbox.last_id()

    async def intent_done(
        self, intent_id: int, delivered: tuple[MessageID, str | None] | None = None
    ) -> None:
        await self.outbox.done(intent_id, delivered)

    async def intent_failed(self, intent_id: int, reason: str, *, give_up: bool) -> int:
        return await self.outbox.refused(intent_id, reason, give_up=give_up)

    async def say(
        self, lane: str, room_id: str, body: str, mentions: list[str] | None = None
    ) -> None:
        """An adapter's own notice (an answer to a command), sent from the store like every
        other: stored in the caller's unit of work, performed once it commits."""
        await self.outbox.add(
            lane, IntentKind.SAY, room_id=room_id, body=body, mentions=mentions or []
        )

    async def accept_invitation(self, room_id: str) -> None:
        await self.outbox.add(DESK_LANE, IntentKind.JOIN, room_id=room_id)

    # outgoing mail, for the mailer

    async def pending_mail(self, limit: int = 50) -> list[Mail]:
        return await self.db.read(lambda tx: mail.pending(tx, limit))

    async def mail_attempted(self, mail_id: int, *, sent: bool, error: str | None) -> None:
        sent_at = self.clock() if sent else None
        await self.db.write(lambda tx: mail.mark(tx, mail_id, sent_at=sent_at, error=error))

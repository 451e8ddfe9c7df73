"""The desk core on a real SQLite store built by the real migrations (no homeserver needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rooms.desk import (
    Desk,
    DeskRules,
    InvalidToken,
    MessageTooLong,
    SessionClosedError,
    UnknownSession,
)
from rooms.events import (
    DeskEvent,
    IntentAdded,
    MessageAdded,
    SessionClosed,
    SessionQueued,
    SessionStarted,
)
from rooms.ids import RoomID, UserID
from rooms.intents import IntentKind
from rooms.session import Origin, ValidationError, VisitorForm
from rooms.store import Database, DatabaseTooNew, open_database

FORM = {"name": "Budi", "email": "budi@example.org", "topic": "literature"}


@pytest.fixture
async def desk(store: Database) -> AsyncIterator[Desk]:
    db = store
    yield Desk(db, DeskRules(topics=("literature", "membership"), max_message_length=50))


async def test_form_validation_names_each_field(desk: Desk) -> None:
    with pytest.raises(ValidationError) as info:
        desk.validate_form({"name": " ", "email": "not-an-email", "topic": "astrology", "x": 1})
    assert info.value.fields == {
        "name": "required",
        "email": "not a valid email address",
        "topic": "unknown topic",
        "x": "unknown field",
    }
    form = desk.validate_form({**FORM, "name": "  Budi   Santoso ", "language": "en"})
    assert form.name == "Budi Santoso" and form.language == "en"
    assert desk.validate_form(FORM).language == "id"


async def test_tokens_are_scoped_and_hashed(desk: Desk) -> None:
    session, token = await desk.start_session(desk.validate_form(FORM))
    other, other_token = await desk.start_session(desk.validate_form(FORM))
    assert (await desk.authenticate(session.id, token)).id == session.id
    with pytest.raises(InvalidToken):
        await desk.authenticate(session.id, other_token)
    with pytest.raises(UnknownSession):
        await desk.authenticate("nosuchsession", token)
    assert len(token) >= 40 and session.id != other.id
    # Only the hash is stored.
    row = await desk.db.fetchone(
        "SELECT token_hash FROM sessions WHERE id = :id", {"id": session.id}
    )
    assert row is not None and token not in row["token_hash"]


async def test_visitor_messages_are_idempotent_and_ordered(desk: Desk) -> None:
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    session, _ = await desk.start_session(desk.validate_form(FORM))
    first, created = await desk.visitor_message(session, " hello ", "c1")
    again, created_again = await desk.visitor_message(session, "hello", "c1")
    second, _ = await desk.visitor_message(session, "second", "c2")
    assert created and not created_again and again.id == first.id and first.body == "hello"
    assert second.id > first.id
    told = [type(e) for e in events if not isinstance(e, IntentAdded)]
    assert told == [SessionStarted, MessageAdded, SessionQueued, MessageAdded]
    # Each message is to be delivered, and the first one rings the desk (after its delivery).
    intents = [(i.kind, i.payload.get("message_id")) for i in await desk.outbox.pending()]
    assert intents == [
        (IntentKind.MESSAGE, first.id),
        (IntentKind.RING, None),
        (IntentKind.MESSAGE, second.id),
    ]
    pending = await desk.pending_deliveries()
    assert [m.id for m in pending] == [first.id, second.id]
    await desk.mark_delivered(first.id, "$event1")
    assert [m.id for m in await desk.pending_deliveries()] == [second.id]


async def test_message_rules(desk: Desk) -> None:
    session, _ = await desk.start_session(desk.validate_form(FORM))
    with pytest.raises(MessageTooLong):
        await desk.visitor_message(session, "x" * 51, "c1")
    with pytest.raises(ValidationError) as info:
        await desk.visitor_message(session, "   ", None)
    assert set(info.value.fields) == {"body", "client_id"}
    assert await desk.messages_after(session.id, 0) == []


async def test_close_is_idempotent_and_leaves_a_notice(desk: Desk) -> None:
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    session, _ = await desk.start_session(desk.validate_form({**FORM, "language": "en"}))
    stored, _ = await desk.visitor_message(session, "question", "c1")
    closed = await desk.end_session(session.id, by="visitor")
    assert not closed.is_open and closed.closed_by == "visitor"
    await desk.end_session(session.id, by="visitor")
    assert sum(isinstance(e, SessionClosed) for e in events) == 1
    notices = [m for m in await desk.messages_after(session.id, 0) if m.origin is Origin.DESK]
    assert [n.body for n in notices] == ["The visitor ended the chat."]
    # A retry of a message stored before the close is answered; a new one is refused.
    assert (await desk.visitor_message(session, "question", "c1"))[0].id == stored.id
    with pytest.raises(SessionClosedError):
        await desk.visitor_message(session, "late", "c2")


async def test_librarian_messages_dedupe_by_remote_id(desk: Desk) -> None:
    session, _ = await desk.start_session(desk.validate_form(FORM))
    session = await desk.attach_room(session.id, RoomID("!room:hs"))
    assert (await desk.session_for_room("!room:hs")) == session
    one = await desk.librarian_message(session, UserID("@sari:hs"), "Sari", "hi", "$e1")
    two = await desk.librarian_message(session, UserID("@sari:hs"), "Sari", "hi", "$e1")
    assert one is not None and two is None
    assert one.needs_delivery is False
    assert (await desk.message_by_remote_id("$e1")) == one


async def test_store_survives_reopen_and_refuses_newer_schema(store_target: str) -> None:
    path = store_target
    db = open_database(path)
    await db.open()
    desk = Desk(db, DeskRules(topics=("literature",)))
    session, token = await desk.start_session(VisitorForm("Budi", "b@example.org", "literature"))
    await db.close()
    db = open_database(path)
    await db.open()
    assert (await Desk(db, desk.rules).authenticate(session.id, token)).form.name == "Budi"
    await db.write(lambda tx: tx.execute("UPDATE version SET version = 999"))
    await db.close()
    newer = open_database(path)
    with pytest.raises(DatabaseTooNew):
        await newer.open()
    await newer.close()


async def test_transcript_email_needs_email_configured(desk: Desk) -> None:
    from rooms.desk import EmailUnavailable

    session, _ = await desk.start_session(desk.validate_form(FORM))
    with pytest.raises(EmailUnavailable):
        await desk.email_transcript(session)


async def test_greeting_in_the_visitors_language(store: Database) -> None:
    db = store
    rules = DeskRules(
        topics=("literature",), greeting={"id": "Halo {visitor}!", "en": "Hello {visitor}!"}
    )
    desk = Desk(db, rules)
    session, _ = await desk.start_session(desk.validate_form({**FORM, "language": "en"}))
    [welcome] = await desk.messages_after(session.id, 0)
    assert welcome.origin is Origin.DESK and welcome.body == "Hello Budi!"
    assert not welcome.needs_delivery  # an idle visitor still costs no room
    assert (await desk.get_session(session.id)).room_id is None

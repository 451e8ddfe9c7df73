"""Durable intents and units of work, on a real SQLite store (no homeserver needed).

What the desk decides to tell the chat network is stored in the same transaction as the change
that causes it, in order per chat; a read never sees a transaction that is not committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge import store as bridge_store
from rooms.desk import Desk, DeskRules
from rooms.events import DeskEvent, IntentAdded, SessionClaimed
from rooms.ids import RoomID
from rooms.intents import DESK_LANE, IntentKind
from rooms.queue import QueueRules
from rooms.session import VisitorForm
from rooms.store import Database, SqliteDatabase, Tx, desk_state
from rooms.store import outbox as outbox_rows
from rooms.store.database import PostgresDatabase
from rooms.store.migrations import MIGRATIONS
from tests.test_queue import AGUS, DEWI, KEPALA, SARI, Clock

FORM = VisitorForm("Budi", "b@example.org", "literature", language="en")


@pytest.fixture
async def desk(store: Database) -> AsyncIterator[Desk]:
    db = store
    rules = DeskRules(
        topics=("literature",),
        queue=QueueRules(librarians=(SARI, DEWI, AGUS), supervisors=(KEPALA,), escalate_after=60),
    )
    yield Desk(db, rules, clock=Clock())


async def lane(desk: Desk, lane_id: str) -> list[tuple[IntentKind, dict[str, Any]]]:
    return [(i.kind, i.payload) for i in await desk.outbox.pending(lane_id)]


async def test_a_read_never_sees_uncommitted_writes(store: Database) -> None:
    db = store
    slow = (
        "SELECT pg_sleep(0.3)"
        if db.dialect == "postgres"
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400000) "
        "SELECT COUNT(*) FROM c"
    )

    async def changes_its_mind(tx: Tx) -> None:
        await tx.execute("INSERT INTO desk_state (key, value) VALUES ('k', 'v')")
        await tx.fetchval(slow)  # a while with the row written but not committed
        raise RuntimeError("changed my mind")

    writer = asyncio.create_task(db.write(changes_its_mind))
    seen: list[int] = []
    while not writer.done():
        seen.append(len(await db.fetchall("SELECT * FROM desk_state")))
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await writer
    assert seen and set(seen) == {0}  # the rolled-back row was never seen
    assert await db.fetchall("SELECT * FROM desk_state") == []


async def test_notices_go_out_with_the_commit_whatever_they_hold(store: Database) -> None:
    """On PostgreSQL a unit's notices ride on its COMMIT, quoted in the statement: payloads that
    hold quotes, backslashes and the quoting tag itself arrive intact, and a unit that rolls
    back tells nobody."""
    if store.dialect != "postgres":
        pytest.skip("SQLite has one process: nobody to notify")
    assert isinstance(store, PostgresDatabase)
    heard: list[str] = []
    stop = await store.listen(heard.append)
    payloads = ["plain", "it's", "back\\slash", "$rd$ tagged $rd_$", '{"session": "s1"}']

    async def tells(tx: Tx) -> None:
        await tx.execute("INSERT INTO desk_state (key, value) VALUES ('n', 'v')")
        for payload in payloads:
            tx.notify(payload)

    async def tells_then_fails(tx: Tx) -> None:
        tx.notify("never")
        raise RuntimeError("changed my mind")

    try:
        with pytest.raises(RuntimeError):
            await store.write(tells_then_fails)
        await store.write(tells)
        for _ in range(200):
            if len(heard) >= len(payloads):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # anything more would arrive now
    finally:
        await stop()
    assert heard == payloads
    assert await store.fetchall("SELECT key FROM desk_state") != []


async def test_a_unit_of_work_may_only_await_the_database(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "n.db")
    await db.open()

    async def waits_for_the_network(tx: Tx) -> None:
        await tx.execute("INSERT INTO desk_state (key, value) VALUES ('k', 'v')")
        await asyncio.sleep(0.01)  # stands for a homeserver call: never inside a unit

    try:
        with pytest.raises(RuntimeError, match="may only await the database"):
            await db.write(waits_for_the_network)
        assert await db.fetchall("SELECT * FROM desk_state") == []
    finally:
        await db.close()


async def test_a_state_change_and_its_intents_commit_together(desk: Desk) -> None:
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    session, _ = await desk.start_session(FORM)
    await desk.visitor_message(session, "halo", "c1")
    add_intent = outbox_rows.add

    async def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")

    outbox_rows.add = broken  # type: ignore[assignment]
    try:
        with pytest.raises(OSError):
            await desk.queue.claim(session.id, SARI, "Sari")
    finally:
        outbox_rows.add = add_intent  # type: ignore[assignment]
    # Neither the claim nor what the visitor would have been told was kept or announced.
    assert (await desk.get_session(session.id)).owner is None
    assert [m.body for m in await desk.messages_after(session.id, 0)] == ["halo"]
    assert not any(isinstance(e, SessionClaimed) for e in events)
    # The claim works once the store does.
    assert (await desk.queue.claim(session.id, SARI, "Sari")).won


async def test_a_chat_leaves_its_intents_in_order(desk: Desk) -> None:
    session, _ = await desk.start_session(FORM)
    first, _ = await desk.visitor_message(session, "halo", "c1")
    await desk.attach_room(session.id, RoomID("!r:hs"))
    second, _ = await desk.visitor_message(session, "are you there?", "c2")
    await desk.queue.claim(session.id, SARI, "Sari")
    await desk.queue.transfer(session.id, SARI, DEWI, "Dewi")
    closed = await desk.end_session(session.id, by="visitor")
    await desk.give_feedback(closed, {"rating": 4})
    bye = (await desk.messages_after(session.id, 0))[-1]
    assert await lane(desk, session.id) == [
        (IntentKind.MESSAGE, {"message_id": first.id}),
        (
            IntentKind.RING,
            {
                "reason": "new",
                "users": [SARI, DEWI, AGUS],
                "offline": False,
                "previous_owner": None,
                "previous_name": None,
            },
        ),
        (IntentKind.MESSAGE, {"message_id": second.id}),
        (IntentKind.CLAIMED, {"by": SARI, "name": "Sari"}),
        (
            IntentKind.TRANSFERRED,
            {"from_owner": SARI, "from_name": "Sari", "to": DEWI, "to_name": "Dewi"},
        ),
        # The visitor's goodbye reaches the room before the librarians are let go.
        (IntentKind.MESSAGE, {"message_id": bye.id}),
        (IntentKind.CLOSED, {"by": "visitor", "banned_until": None}),
        (IntentKind.FEEDBACK, {"rating": 4, "comment": None, "librarian_name": "Dewi"}),
    ]
    # Done intents leave the lane; the next one is the oldest left.
    intents = await desk.outbox.pending(session.id)
    await desk.intent_done(intents[0].id, delivered=(first.id, "$e1"))
    assert (await desk.next_intent(session.id)) == intents[1]
    assert (await desk.message(first.id)).remote_id == "$e1"  # type: ignore[union-attr]
    assert await desk.pending_lanes() == [session.id]


async def test_a_message_wakes_the_adapter_with_its_intent_when_it_is_next(desk: Desk) -> None:
    """On SQLite a visitor's message hands its intent, with its chat and message, to the adapter
    with the wake-up when nothing waits before it in the chat's lane: exactly what reading the
    lane would give. On PostgreSQL (other processes write too) the adapter always reads."""
    added: list[IntentAdded] = []
    desk.subscribe(lambda e: added.append(e) if isinstance(e, IntentAdded) else None)
    session, _ = await desk.start_session(FORM)
    await desk.visitor_message(session, "halo", "c1")
    assert added and all(e.work is None for e in added)  # the first message also rings: read
    await desk.visitor_message(session, "still there?", "c2")
    assert added[-1].work is None  # the first message's intents wait before it
    for intent in await desk.outbox.pending(session.id):
        await desk.intent_done(intent.id)
    added.clear()
    third, _ = await desk.visitor_message(session, "third", "c3")
    [event] = added
    if desk.db.dialect == "postgres":
        assert event.work is None
        return
    assert event.work is not None
    assert event.work == await desk.take_intent(session.id)
    assert event.work.message == third and event.work.intent.kind is IntentKind.MESSAGE
    # A retry of the same message stores nothing and wakes nobody.
    added.clear()
    await desk.visitor_message(session, "third", "c3")
    assert added == []


async def test_requeue_and_escalation_ring_who_is_on_duty_then(desk: Desk) -> None:
    clock = desk.clock
    assert isinstance(clock, Clock)
    session, _ = await desk.start_session(FORM)
    await desk.visitor_message(session, "halo", "c1")
    await desk.queue.claim(session.id, SARI, "Sari")
    await desk.queue.set_duty(AGUS, False)
    await desk.queue.set_duty(SARI, False)  # hands the chat back
    clock.now += timedelta(seconds=61)
    await desk.queue.tick()
    kinds = await lane(desk, session.id)
    ring = [p for k, p in kinds if k is IntentKind.RING]
    assert ring[1] == {
        "reason": "off_duty",
        "users": [DEWI],
        "offline": False,
        "previous_owner": SARI,
        "previous_name": "Sari",
    }
    escalated = [p for k, p in kinds if k is IntentKind.ESCALATED]
    assert escalated == [{"users": sorted([DEWI, KEPALA]), "waited": 61, "position": 1}]


async def test_an_offline_chat_rings_nobody(store: Database) -> None:
    db = store
    desk = Desk(db, DeskRules(topics=("literature",), queue=QueueRules(librarians=())))
    try:
        session, _ = await desk.start_session(FORM)
        assert session.offline
        await desk.visitor_message(session, "halo", "c1")
        [_, (kind, ring)] = await lane(desk, session.id)
        assert kind is IntentKind.RING and ring["offline"] and ring["users"] == []
    finally:
        await db.close()


async def test_answers_and_housekeeping_go_in_the_callers_unit(desk: Desk) -> None:
    async def command(tx: Tx, event_id: str, fail: bool) -> bool:
        if not await bridge_store.claim_event(tx, event_id, desk.clock()):
            return False
        await desk.say(DESK_LANE, "!desk:hs", "On duty: Sari")
        if fail:
            raise RuntimeError("the command failed half-way")
        return True

    assert await desk.transaction(lambda tx: command(tx, "$cmd", False))
    # The same event again changes nothing.
    assert not await desk.transaction(lambda tx: command(tx, "$cmd", False))
    with pytest.raises(RuntimeError):
        await desk.transaction(lambda tx: command(tx, "$other", True))
    assert await lane(desk, DESK_LANE) == [
        (IntentKind.SAY, {"room_id": "!desk:hs", "body": "On duty: Sari", "mentions": []})
    ]
    assert await desk.read(lambda tx: bridge_store.event_claimed(tx, "$cmd"))
    assert not await desk.read(lambda tx: bridge_store.event_claimed(tx, "$other"))


async def test_an_older_desk_upgrades_with_its_undelivered_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = SqliteDatabase(path, migrations=MIGRATIONS[:6])
    await old.open()
    await old.close()
    with sqlite3.connect(path) as conn:  # what a desk of that version held
        conn.executescript(
            """
            INSERT INTO sessions (id, token_hash, state, visitor_name, email, topic, language,
                                  created_at)
            VALUES ('s1', 'h', 'open', 'Budi', 'b@example.org', 'literature', 'id',
                    '2026-03-02T02:00:00.000+00:00');
            INSERT INTO messages (session_id, origin, body, needs_delivery, delivered_at,
                                  created_at)
            VALUES ('s1', 'visitor', 'sent', 1, '2026-03-02T02:00:01.000+00:00',
                    '2026-03-02T02:00:00.000+00:00'),
                   ('s1', 'visitor', 'waiting 1', 1, NULL, '2026-03-02T02:00:02.000+00:00'),
                   ('s1', 'visitor', 'waiting 2', 1, NULL, '2026-03-02T02:00:03.000+00:00');
            INSERT INTO inbound_batches (batch_id, received_at) VALUES ('1', 'x');
            INSERT INTO adapter_state (key, value) VALUES ('room:desk', '!desk:hs'),
                   ('client_key_salt', 'salt'), ('resume_link_secret', 'secret');
            """
        )
    db = SqliteDatabase(path)
    await db.open()
    try:
        pending = await db.read(outbox_rows.pending)
        assert [(i.lane, i.kind, i.payload) for i in pending] == [
            ("s1", IntentKind.MESSAGE, {"message_id": 2}),
            ("s1", IntentKind.MESSAGE, {"message_id": 3}),
        ]
        tables = {r[0] for r in await db.fetchall("SELECT name FROM sqlite_master")}
        assert "inbound_batches" not in tables and "bridge_inbound_failures" in tables
        # Each table with its owner: the bridge's rooms, the desk's secrets.
        assert await db.read(lambda tx: bridge_store.get_state(tx, "room:desk")) == "!desk:hs"
        assert await db.read(lambda tx: desk_state.get(tx, "client_key_salt")) == "salt"
        assert await db.read(lambda tx: bridge_store.get_state(tx, "client_key_salt")) is None
    finally:
        await db.close()

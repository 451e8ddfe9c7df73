"""Trust in production: transactions deduplicated by event id, transient failures retried,
poison events set aside, desk actions performed from the store and never twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.matrix_api import SEND_MARKER, HomeserverUnavailable
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually
from tests.test_spine import open_chat


def librarian_event(room_id: str, sender: str, body: str) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "room_id": room_id,
        "sender": sender,
        "event_id": f"$test-{uuid.uuid4().hex}",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body},
    }


@pytest.fixture
async def push(stack: Stack) -> AsyncIterator[Any]:
    """PUT a transaction to the appservice as the homeserver does; returns the status."""
    asc = stack.config.appservice
    base = f"http://127.0.0.1:{asc.listen_port}/_matrix/app/v1/transactions/"
    headers = {"Authorization": f"Bearer {asc.hs_token}"}
    async with aiohttp.ClientSession() as http:

        async def put(txn_id: str, events: list[dict[str, Any]]) -> int:
            async with http.put(base + txn_id, json={"events": events}, headers=headers) as resp:
                return resp.status

        yield put


async def bodies(visitor: Visitor) -> list[str]:
    return [m["body"] for m in (await visitor.messages())["messages"]]


async def test_a_reused_transaction_id_is_not_a_replay(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian], push: Any
) -> None:
    """Synapse numbers transactions from 1 again after it restarts: a known txn id with new
    events must be handled, an exact retry must not be handled twice."""
    agus = librarians["agus"]
    room_id = await open_chat(stack, visitor, agus, "Ada yang bisa membantu?")
    txn_id = f"reused-{uuid.uuid4().hex}"
    first = librarian_event(room_id, agus.user_id, "before the homeserver restarted")
    assert await push(txn_id, [first]) == 200
    assert await push(txn_id, [first]) == 200  # the homeserver retrying: handled once
    second = librarian_event(room_id, agus.user_id, "after the homeserver restarted")
    assert await push(txn_id, [second]) == 200  # same id, new events: handled
    assert await push(f"{txn_id}-other", [first, second]) == 200  # known events, new id
    await visitor.wait_for(lambda m: m["body"] == "after the homeserver restarted")
    got = await bodies(visitor)
    assert got.count("before the homeserver restarted") == 1
    assert got.count("after the homeserver restarted") == 1


async def test_a_transient_failure_asks_the_homeserver_to_retry(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    push: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dewi = librarians["dewi"]
    room_id = await open_chat(stack, visitor, dewi, "Bisa bantu cari jurnal?")
    handler = stack.desk.bridge.handler
    handler._names.pop(dewi.user_id, None)
    original = handler.client.get_displayname

    async def down(user_id: str) -> str | None:
        raise HomeserverUnavailable("GET profile: connection refused")

    event = librarian_event(room_id, dewi.user_id, "this one must not be lost")
    later = librarian_event(room_id, dewi.user_id, "and this one comes after it")
    monkeypatch.setattr(handler.client, "get_displayname", down)
    assert await push("transient-1", [event, later]) == 503
    assert "this one must not be lost" not in await bodies(visitor)
    monkeypatch.setattr(handler.client, "get_displayname", original)
    assert await push("transient-1", [event, later]) == 200
    got = await bodies(visitor)
    assert got.index("this one must not be lost") < got.index("and this one comes after it")


async def test_a_poison_event_is_recorded_and_skipped(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    push: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Halo")
    desk = stack.desk.desk
    original = desk.librarian_message
    calls: list[str] = []

    async def fussy(session: Any, sender: Any, name: str, body: str, **kwargs: Any) -> Any:
        calls.append(body)
        if body == "poison":
            raise ValueError("content this version cannot handle")
        return await original(session, sender, name, body, **kwargs)

    monkeypatch.setattr(desk, "librarian_message", fussy)
    poison = librarian_event(room_id, sari.user_id, "poison")
    after = librarian_event(room_id, sari.user_id, "the next event still counts")
    assert await push(f"poison-{uuid.uuid4().hex}", [poison, after]) == 200
    assert await push(f"poison-{uuid.uuid4().hex}", [poison, after]) == 200  # sent again
    assert calls.count("poison") == 1  # set aside for good, not tried again
    assert (await bodies(visitor)).count("the next event still counts") == 1
    row = await stack.desk.db.fetchone(
        "SELECT room_id, event_type, reason FROM bridge_inbound_failures WHERE event_id = :id",
        {"id": poison["event_id"]},
    )
    assert row is not None and row["room_id"] == room_id and row["event_type"] == "m.room.message"
    assert "ValueError: content this version cannot handle" in row["reason"]


async def test_every_send_is_marked_and_found_again_after_an_unknown_outcome(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    """A send whose answer was lost is looked for in the room before it is sent again: the
    homeserver may have forgotten the transaction id (it restarted)."""
    agus = librarians["agus"]
    room_id = await open_chat(stack, visitor, agus, "Apakah buku ini tersedia?")
    client = stack.desk.bridge.client
    events = await client.recent_events(room_id)
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    sent = [e for e in events if e["sender"] == ghost and e["type"] == "m.room.message"]
    marker = sent[0]["content"][SEND_MARKER]
    assert marker.startswith("rd.")
    found = await client.find_marked(room_id, ghost, marker, not_before_ms=0)
    assert found == sent[0]["event_id"]
    # By time too: what a homeserver stored just before it was killed may be missing from its
    # timeline for a while, but not from its events.
    since = sent[0]["origin_server_ts"] - 1000
    assert await client._find_by_time(room_id, ghost, marker, since, 50) == sent[0]["event_id"]
    assert await client._find_by_time(room_id, ghost, marker + "x", since, 50) is None
    assert await client.find_marked(room_id, ghost, marker + "x", not_before_ms=0) is None
    # Every bot notice carries its own marker: none was posted twice.
    markers = [e["content"].get(SEND_MARKER) for e in events if e["sender"] != agus.user_id]
    markers = [m for m in markers if m]
    assert len(markers) == len(set(markers)) and len(markers) >= 2


async def test_the_homeserver_restarting_does_not_deafen_the_desk(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    """After Synapse restarts (and numbers its transactions from 1 again), librarians' messages,
    commands and claims still reach the desk."""
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Sebelum restart homeserver")
    for i in range(3):
        await sari.send(room_id, f"before {i}")
    await visitor.wait_for(lambda m: m["body"] == "before 2")
    await stack.synapse.stop()
    await stack.synapse.start()
    for i in range(3):
        await sari.send(room_id, f"after {i}")
    await visitor.wait_for(lambda m: m["body"] == "after 2")
    got = await bodies(visitor)
    assert [b for b in got if b.startswith(("before", "after"))] == [
        *(f"before {i}" for i in range(3)),
        *(f"after {i}" for i in range(3)),
    ]
    await sari.send(room_id, "!close")
    await eventually(lambda: closed(stack, visitor))


async def closed(stack: Stack, visitor: Visitor) -> bool:
    return not (await stack.desk.desk.get_session(visitor.session_id or "")).is_open


async def test_a_room_left_unfinished_behind_its_alias_is_replaced(stack: Stack) -> None:
    """A homeserver stopped in the middle of a room creation can leave the alias pointing at a
    room the bot never joined; the retried creation must not get stuck on it."""
    client = stack.desk.bridge.client
    suffix = uuid.uuid4().hex[:12]
    alias_localpart = f"refdesk_v_s_broken{suffix}"
    # Someone other than the bot (here a ghost) holds the alias: the bot is not in that room.
    ghost = stack.mxid(f"refdesk_v_broken{suffix}")
    await client.register_ghost(f"refdesk_v_broken{suffix}")
    broken = await client.request(
        "POST",
        "/_matrix/client/v3/createRoom",
        {"room_alias_name": alias_localpart, "preset": "private_chat"},
        user_id=ghost,
    )
    room_id = await client.create_room(
        alias_localpart=alias_localpart,
        name="Rina · Keanggotaan",
        topic="",
        invite=[],
        initial_state=[],
    )
    assert room_id != broken["room_id"]
    assert await client.resolve_alias(f"#{alias_localpart}:{stack.domain}") == room_id
    assert (await client.members(room_id))[client.bot_mxid] == "join"
    # Found again by its alias (a retry), the finished room is kept.
    again = await client.create_room(
        alias_localpart=alias_localpart, name="Rina · Keanggotaan", topic="", invite=[],
        initial_state=[],
    )  # fmt: skip
    assert again == room_id


async def test_transactions_are_acted_on_in_the_order_they_came(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    push: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second transaction sent before the first is answered waits for it: a quick event must
    not overtake a slow one (here, one whose sender's name needs a slow look-up)."""
    agus, dewi = librarians["agus"], librarians["dewi"]
    room_id = await open_chat(stack, visitor, agus, "Siapa yang menjawab duluan?")
    handler = stack.desk.bridge.handler
    await handler.display_name(agus.user_id)  # known: no look-up
    handler._names.pop(dewi.user_id, None)
    original = handler.client.get_displayname

    async def slow(user_id: str) -> str | None:
        await asyncio.sleep(0.5)
        return await original(user_id)

    monkeypatch.setattr(handler.client, "get_displayname", slow)
    first = librarian_event(room_id, dewi.user_id, "first, slow to name")
    second = librarian_event(room_id, agus.user_id, "second, quick")
    one = asyncio.create_task(push(f"order-{uuid.uuid4().hex}", [first]))
    await asyncio.sleep(0.1)
    two = asyncio.create_task(push(f"order-{uuid.uuid4().hex}", [second]))
    assert await one == 200 and await two == 200
    got = await bodies(visitor)
    assert got.index("first, slow to name") < got.index("second, quick")


async def test_the_catch_up_does_not_skip_an_answer_older_than_a_delivered_message(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a restart the catch-up reads the room from the newest event the desk *received*:
    the visitor's own message, delivered after a librarian's answer that is still on its way,
    must not make it skip that answer."""
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Jam buka hari Minggu?")
    await sari.send(room_id, "Sebentar saya cek")
    await visitor.wait_for(lambda m: m["body"] == "Sebentar saya cek")
    bridge = stack.desk.bridge
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")

    async def unavailable(*args: Any) -> Any:
        return web.json_response({"errcode": "M_UNKNOWN"}, status=503)

    monkeypatch.setattr(bridge.server, "_handle", unavailable)  # transactions wait
    monkeypatch.setattr(bridge, "_ping_soon", lambda: None)
    await sari.send(room_id, "Minggu tutup")  # not received yet
    await visitor.send("Oh begitu")  # delivered after it: known to the desk
    await sari.wait_for(
        lambda s: s.room_id == room_id and s.sender == ghost and s.body == "Oh begitu"
    )
    await bridge._catch_up_room(room_id)
    assert "Minggu tutup" in await bodies(visitor)


def skip_transactions_with(
    bridge: Any, monkeypatch: pytest.MonkeyPatch, marker: bytes
) -> asyncio.Event:
    """The homeserver believes it sent the transaction holding ``marker`` (answered 200, never
    acted on), as Synapse does with an event it stored just before it was killed; the event
    returned is set once that transaction came."""
    handle = bridge.server._handle
    skipped = asyncio.Event()

    async def homeserver_believes_it_sent(txn_id: str, raw: bytes, digest: str) -> Any:
        if marker in raw:
            skipped.set()
            return web.json_response({})
        return await handle(txn_id, raw, digest)

    monkeypatch.setattr(bridge.server, "_handle", homeserver_believes_it_sent)
    return skipped


async def test_the_catch_up_acts_on_an_answer_the_homeserver_never_sent(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Synapse killed just after storing an event never sends it to the appservice (found by
    the chaos run on PostgreSQL), while it does send the next one. The catch-up, which starts
    after the newest event the desk received, still acts on the skipped answer: late, but not
    lost."""
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Bisa pinjam antarperpustakaan?")
    bridge = stack.desk.bridge
    swallowed = skip_transactions_with(bridge, monkeypatch, b"isi formulir ILL")
    await sari.send(room_id, "Bisa, isi formulir ILL")
    await asyncio.wait_for(swallowed.wait(), 30)
    await sari.send(room_id, "Formulirnya di meja layanan")
    await visitor.wait_for(lambda m: m["body"] == "Formulirnya di meja layanan")
    assert "Bisa, isi formulir ILL" not in await bodies(visitor)
    await bridge._catch_up_room(room_id)
    got = await bodies(visitor)
    assert got.count("Bisa, isi formulir ILL") == 1
    await bridge._catch_up_room(room_id)  # a second catch-up changes nothing
    assert await bodies(visitor) == got


async def test_the_rooms_are_read_again_when_the_homeserver_is_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A homeserver that was unreachable may have restarted (and skipped events): the bridge
    catches up as soon as it answers again."""
    bridge = stack.desk.bridge
    called = asyncio.Event()

    async def catch_up() -> None:
        called.set()

    monkeypatch.setattr(bridge, "catch_up", catch_up)
    bridge.performer._outage = True  # a send failed: the homeserver was away
    bridge.performer.homeserver_alive()  # and now it answers
    await asyncio.wait_for(called.wait(), 5)


async def test_after_an_outage_a_skipped_answer_comes_before_the_next(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the homeserver is back, the first event of a room waits until the room has been
    read: an answer the homeserver skipped reaches the visitor before the one after it, in the
    room's order (the chaos run had such answers one place late)."""
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Apakah ada ruang diskusi?")
    bridge = stack.desk.bridge
    swallowed = skip_transactions_with(bridge, monkeypatch, b"lantai dua")

    async def no_full_catch_up() -> None:
        return None  # only the room's own read before its next event is left to do it

    monkeypatch.setattr(bridge, "catch_up", no_full_catch_up)
    await sari.send(room_id, "Ada, di lantai dua")
    await asyncio.wait_for(swallowed.wait(), 30)
    bridge.performer._outage = True  # a send failed: the homeserver was away
    bridge.performer.homeserver_alive()  # and it is back
    await sari.send(room_id, "Bisa dipesan di meja layanan")
    await visitor.wait_for(lambda m: m["body"] == "Bisa dipesan di meja layanan")
    got = await bodies(visitor)
    assert got.index("Ada, di lantai dua") < got.index("Bisa dipesan di meja layanan")

"""The spine end to end: widget API visitor ↔ real Synapse ↔ nio librarians."""

from __future__ import annotations

import asyncio

from tests.conftest import Stack
from tests.helpers import Librarian, Visitor


async def room_of(stack: Stack, session_id: str, timeout: float = 60) -> str:
    """The session's room id once the bridge has created it."""
    for _ in range(int(timeout * 10)):
        session = await stack.desk.desk.get_session(session_id)
        if session.room_id:
            return session.room_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"session {session_id} got no room")


async def open_chat(stack: Stack, visitor: Visitor, lib: Librarian, first: str) -> str:
    """Start a session, write the first message, have ``lib`` join; returns the room id."""
    await visitor.start()
    await visitor.send(first)
    assert visitor.session_id is not None
    room_id = await room_of(stack, visitor.session_id)
    await lib.wait_for_invite(room_id)
    await lib.join(room_id)
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    await lib.wait_for(lambda s: s.room_id == room_id and s.body == first and s.sender == ghost)
    return room_id


async def test_room_appears_on_first_message_not_before(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    await visitor.start(name="Budi Santoso", member_number="A-123", topic="membership")
    assert visitor.session_id is not None
    session = await stack.desk.desk.get_session(visitor.session_id)
    assert session.room_id is None  # an idle visitor costs the homeserver nothing

    await visitor.send("Halo, bagaimana cara membuat kartu anggota?")
    room_id = await room_of(stack, visitor.session_id)
    await sari.wait_for_invite(room_id)
    await sari.join(room_id)

    # The room carries the visitor's details: name, topic line and a state event.
    state = await sari.client.room_get_state(room_id)
    events = {(e["type"], e.get("state_key")): e for e in state.events}  # type: ignore[union-attr]
    assert "Budi Santoso" in events[("m.room.name", "")]["content"]["name"]
    assert "A-123" in events[("m.room.topic", "")]["content"]["topic"]
    details = events[("org.refdesk.session", "")]["content"]
    assert details["email"] == "budi@example.org" and details["topic"] == "membership"

    # The visitor is a ghost in the exclusive namespace, named after them; the bot is admin.
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    member = events[("m.room.member", ghost)]["content"]
    assert member["membership"] == "join"
    assert member["displayname"] == "Budi Santoso (visitor)"
    assert events[("m.room.create", "")]["sender"] == stack.config.bot_mxid
    # All librarians on duty are invited (rung) right after the room is made.
    for name in ("dewi", "agus"):
        for _ in range(100):
            members = await stack.desk.bridge.client.members(room_id)
            if members.get(stack.mxid(name)) in ("invite", "join"):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{name} was not invited")
    seen = await sari.wait_for(
        lambda s: s.room_id == room_id and s.sender == ghost and s.msgtype == "m.text"
    )
    assert seen.body == "Halo, bagaimana cara membuat kartu anggota?"


async def test_conversation_both_ways_in_order(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    dewi = librarians["dewi"]
    room_id = await open_chat(stack, visitor, dewi, "Saya mencari jurnal tentang padi")
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")

    for i in range(5):
        await visitor.send(f"visitor line {i}")
    await dewi.wait_for(lambda s: s.room_id == room_id and s.body == "visitor line 4")
    from_ghost = dewi.bodies(room_id, sender=ghost)
    assert from_ghost == ["Saya mencari jurnal tentang padi"] + [
        f"visitor line {i}" for i in range(5)
    ]

    for i in range(5):
        await dewi.send(room_id, f"librarian line {i}")
    last = await visitor.wait_for(lambda m: m["body"] == "librarian line 4")
    assert last["origin"] == "librarian"
    assert last["sender_name"] == "Dewi Librarian"
    history = (await visitor.messages())["messages"]
    librarian_lines = [m["body"] for m in history if m["origin"] == "librarian"]
    assert librarian_lines == [f"librarian line {i}" for i in range(5)]
    ids = [m["id"] for m in history]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_visitor_ends_chat(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    agus = librarians["agus"]
    room_id = await open_chat(stack, visitor, agus, "Terima kasih, sudah cukup")
    session = await visitor.end()
    assert session["state"] == "closed"
    notice = await agus.wait_for(
        lambda s: s.room_id == room_id and s.msgtype == "m.notice" and "mengakhiri" in s.body
    )
    assert notice.sender == stack.config.bot_mxid
    assert (await stack.desk.desk.get_session(visitor.session_id or "")).state == "closed"
    # Ending twice is fine, and a closed chat takes no more messages.
    assert (await visitor.end())["state"] == "closed"
    status, body = await visitor.request(
        "POST",
        f"/api/sessions/{visitor.session_id}/messages",
        {"body": "one more", "client_id": "late-1"},
    )
    assert status == 409 and body["error"] == "session_closed"


async def test_librarian_close_command_reaches_visitor(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Apakah perpustakaan buka hari Sabtu?")
    await sari.send(room_id, "!help")
    await sari.wait_for(
        lambda s: s.room_id == room_id and "!close" in s.body and s.msgtype == "m.notice"
    )
    await sari.send(room_id, "!frobnicate")
    await sari.wait_for(lambda s: s.room_id == room_id and "Unknown command !frobnicate" in s.body)
    await sari.send(room_id, "!close")
    await visitor.wait_for(lambda m: m["origin"] == "desk")
    data = await visitor.messages()
    assert data["session"]["state"] == "closed"
    # Commands are for the desk, never shown to the visitor.
    assert not any(m["body"].startswith("!") for m in data["messages"])

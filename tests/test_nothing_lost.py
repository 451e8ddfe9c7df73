"""Nothing is lost: refdesk restarts and homeserver outages, both directions, exactly once."""

from __future__ import annotations

from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_spine import open_chat, room_of


async def test_refdesk_restart_mid_conversation(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Sebelum restart")
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")

    await stack.stop_refdesk()
    # While refdesk is down the librarian keeps writing; the homeserver keeps it for us.
    await sari.send(room_id, "written while refdesk was down 1")
    await sari.send(room_id, "written while refdesk was down 2")
    await stack.start_refdesk()

    # The visitor resumes with the same token and sends more; nothing is duplicated.
    await visitor.send("after restart", client_id="after-1")
    await visitor.send("after restart", client_id="after-1")  # a retry of the same message
    await visitor.wait_for(lambda m: m["body"] == "written while refdesk was down 2")
    history = (await visitor.messages())["messages"]
    bodies = [m["body"] for m in history]
    assert bodies.count("written while refdesk was down 1") == 1
    assert bodies.count("written while refdesk was down 2") == 1
    assert bodies.index("written while refdesk was down 1") < bodies.index(
        "written while refdesk was down 2"
    )
    await sari.wait_for(lambda s: s.room_id == room_id and s.body == "after restart")
    assert sari.bodies(room_id, sender=ghost).count("after restart") == 1


async def test_homeserver_down_visitor_messages_wait_in_store(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    dewi = librarians["dewi"]
    room_id = await open_chat(stack, visitor, dewi, "Sebelum server mati")
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")

    await stack.synapse.stop()
    try:
        # The widget API keeps working: messages are stored and acknowledged.
        for i in range(3):
            await visitor.send(f"while the homeserver is down {i}")
        pending = await stack.desk.desk.pending_deliveries()
        assert [m.body for m in pending if m.session_id == visitor.session_id] == [
            f"while the homeserver is down {i}" for i in range(3)
        ]
    finally:
        await stack.synapse.start()
    await dewi.wait_for(
        lambda s: s.room_id == room_id and s.body == "while the homeserver is down 2"
    )
    got = [b for b in dewi.bodies(room_id, sender=ghost) if b.startswith("while the homeserver")]
    assert got == [f"while the homeserver is down {i}" for i in range(3)]


async def test_first_message_while_homeserver_down_still_creates_the_room(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    agus = librarians["agus"]
    await stack.synapse.stop()
    try:
        await visitor.start(name="Rina")
        await visitor.send("Halo, ada orang?")
    finally:
        await stack.synapse.start()
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    room_id = await room_of(stack, visitor.session_id or "")
    await agus.wait_for_invite(room_id)
    await agus.join(room_id)
    await agus.wait_for(lambda s: s.room_id == room_id and s.body == "Halo, ada orang?")
    assert agus.bodies(room_id, sender=ghost) == ["Halo, ada orang?"]


async def test_a_failing_chat_does_not_hold_up_the_others(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    from rooms.ids import RoomID

    sari = librarians["sari"]
    # A chat whose room the homeserver refuses (as if the room were gone): its delivery fails.
    broken = Visitor(stack.widget_url)
    await broken.start(name="Rusak")
    assert broken.session_id is not None
    await stack.desk.desk.attach_room(broken.session_id, RoomID("!gone:localhost"))  # type: ignore[arg-type]
    await broken.send("this one cannot be delivered")
    try:
        # Another chat's messages still flow.
        room_id = await open_chat(stack, visitor, sari, "Apakah ada e-book tentang kopi?")
        await visitor.send("Dan tentang teh?")
        await sari.wait_for(lambda s: s.room_id == room_id and s.body == "Dan tentang teh?")
        pending = await stack.desk.desk.pending_deliveries()
        assert [m.body for m in pending if m.session_id == broken.session_id] == [
            "this one cannot be delivered"
        ]  # kept, retried with its own back-off
    finally:
        # Give up on the broken chat so its retries do not outlive the test.
        desk = stack.desk.desk
        await desk.end_session(broken.session_id, by="visitor")  # type: ignore[arg-type]
        for message in await desk.pending_deliveries():
            if message.session_id == broken.session_id:
                await desk.mark_delivered(message.id, None)
        await broken.close()

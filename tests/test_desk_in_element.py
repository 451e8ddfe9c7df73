"""The desk in Element: roster, ringing, claim race, release, transfer, close, escalation,
requeue, and mirroring of typing, receipts, edits, redactions and formatting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from nio import ReceiptEvent, TypingNoticeEvent

from bridge.matrix_api import MatrixError
from tests.conftest import ESCALATE_AFTER, Stack
from tests.helpers import Librarian, Visitor
from tests.test_spine import room_of


async def eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll an async or sync check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def desk_room(stack: Stack) -> str:
    async def room() -> str | None:
        return await stack.desk.bridge.rooms.state("room:desk")

    return str(await eventually(room))


@pytest.fixture(scope="module")
async def in_desk_room(stack: Stack, librarians: dict[str, Librarian]) -> AsyncIterator[str]:
    """Every librarian has joined the desk room (and the Space)."""
    room_id = await desk_room(stack)
    space_id = await stack.desk.bridge.rooms.state("room:space")
    for lib in librarians.values():
        for room in (room_id, space_id):
            assert room is not None
            if lib.memberships.get(room) != "join":
                await lib.wait_for_invite(room)
                await lib.join(room)
    yield room_id


async def new_chat(stack: Stack, first: str, name: str = "Budi") -> tuple[Visitor, str]:
    visitor = Visitor(stack.widget_url)
    await visitor.start(name=name)
    await visitor.send(first)
    assert visitor.session_id is not None
    return visitor, await room_of(stack, visitor.session_id)


async def session(stack: Stack, visitor: Visitor):  # type: ignore[no-untyped-def]
    return await stack.desk.desk.get_session(visitor.session_id or "")


async def members(stack: Stack, room_id: str) -> dict[str, str]:
    return await stack.desk.bridge.client.members(room_id)


async def test_space_desk_room_and_duty(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    sari = librarians["sari"]
    space = await stack.desk.bridge.rooms.state("room:space")
    state = await sari.client.room_get_state(space or "")
    children = [e["state_key"] for e in state.events if e["type"] == "m.space.child"]  # type: ignore[union-attr]
    assert in_desk_room in children
    await sari.send(in_desk_room, "!duty")
    reply = await sari.wait_for(
        lambda s: s.room_id == in_desk_room and s.body.startswith("On duty:")
    )
    # Names, not Matrix ids (issue 14).
    assert reply.body == "On duty: Sari Librarian, Dewi Librarian, Agus Librarian", reply.body
    await sari.send(in_desk_room, "!claim")
    await sari.wait_for(lambda s: s.room_id == in_desk_room and "works in a session room" in s.body)


async def test_ringing_reaches_on_duty_not_off_duty(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    agus, sari = librarians["agus"], librarians["sari"]
    await agus.send(in_desk_room, "!duty off")
    await agus.wait_for(lambda s: s.room_id == in_desk_room and "off duty" in s.body)
    try:
        visitor, room_id = await new_chat(stack, "Apakah ada buku tentang sejarah Jawa?")
        await eventually(lambda: room_id in sari.invites or sari.sync())
        invited = await eventually(lambda: members_with(stack, room_id, "invite"))
        assert stack.mxid("sari") in invited and stack.mxid("dewi") in invited
        assert stack.mxid("agus") not in invited
        # The desk room's queue notice rings the librarians on duty, and only them.
        notice = await sari.wait_for(
            lambda s: s.room_id == in_desk_room and "sejarah Jawa" in s.body and "Waiting" in s.body
        )
        mentioned = notice.source["content"]["m.mentions"]["user_ids"]
        assert stack.mxid("sari") in mentioned and stack.mxid("agus") not in mentioned
        await visitor.close()
    finally:
        await agus.send(in_desk_room, "!duty on")
        await agus.wait_for(lambda s: s.room_id == in_desk_room and "on duty" in s.body)


async def members_with(stack: Stack, room_id: str, membership: str) -> set[str]:
    return {u for u, m in (await members(stack, room_id)).items() if m == membership}


@pytest.mark.parametrize("round_", range(4))
async def test_claim_race_has_exactly_one_winner(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str, round_: int
) -> None:
    visitor, room_id = await new_chat(stack, f"Race {round_}: siapa yang menjawab?")
    racers = [librarians[n] for n in ("sari", "dewi", "agus")]
    for lib in racers:
        await lib.wait_for_invite(room_id)
        await lib.join(room_id)
    # Half the rounds race with !claim, half by replying at the same moment.
    if round_ % 2:
        await asyncio.gather(*(lib.send(room_id, "!claim") for lib in racers))
    else:
        await asyncio.gather(*(lib.send(room_id, f"Halo dari {lib.user_id}") for lib in racers))
    current = await eventually(lambda: owner_of(stack, visitor))
    await asyncio.sleep(0.5)
    final = await session(stack, visitor)
    assert final.owner == current and final.status == "claimed"
    claimed = await racers[0].wait_for(
        lambda s: s.room_id == room_id and "claimed this chat" in s.body
    )
    assert final.owner_name in claimed.body
    await asyncio.sleep(0.3)
    claims = [
        s for s in racers[0].timeline if s.room_id == room_id and "claimed this chat" in s.body
    ]
    assert len(claims) == 1
    if round_ % 2:
        losers = [lib for lib in racers if lib.user_id != final.owner]
        for lib in losers:
            await lib.wait_for(lambda s: s.room_id == room_id and "already serves" in s.body)
    await visitor.close()


async def owner_of(stack: Stack, visitor: Visitor) -> str | None:
    return (await session(stack, visitor)).owner


async def test_claim_withdraws_other_invites_and_release_rings_again(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    sari, dewi = librarians["sari"], librarians["dewi"]
    visitor, room_id = await new_chat(stack, "Saya butuh bantuan sitasi APA")
    await sari.wait_for_invite(room_id)
    await sari.join(room_id)
    await sari.send(room_id, "!claim")
    await eventually(lambda: owner_of(stack, visitor))
    # Invitations nobody needs are withdrawn; the visitor hears who serves them.
    await eventually(lambda: dewi_not_invited(stack, room_id))
    await visitor.wait_for(lambda m: m["origin"] == "desk" and "Sari Librarian" in m["body"])
    view = (await visitor.messages())["session"]
    assert view["status"] == "claimed" and view["librarian"] == {"name": "Sari Librarian"}

    await sari.send(room_id, "!release")
    await eventually(lambda: is_waiting(stack, visitor))
    ring = await dewi.wait_for(
        lambda s: (
            s.room_id == in_desk_room and "Back in the queue" in s.body and "released" in s.body
        )
    )
    assert stack.mxid("dewi") in ring.source["content"]["m.mentions"]["user_ids"]
    assert stack.mxid("dewi") in await members_with(stack, room_id, "invite")
    await visitor.wait_for(lambda m: m["origin"] == "desk" and "antrean" in m["body"])
    await visitor.close()


async def dewi_not_invited(stack: Stack, room_id: str) -> bool:
    return stack.mxid("dewi") not in await members_with(stack, room_id, "invite")


async def is_waiting(stack: Stack, visitor: Visitor) -> bool:
    return (await session(stack, visitor)).status == "waiting"


async def test_transfer_note_info_canned_and_close(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    sari, agus = librarians["sari"], librarians["agus"]
    visitor, room_id = await new_chat(stack, "Jam buka perpustakaan?", name="Siti")
    await sari.wait_for_invite(room_id)
    await sari.join(room_id)
    await sari.send(room_id, "!claim")
    await eventually(lambda: owner_of(stack, visitor))

    await sari.send(room_id, "!note visitor sounds like a returning member")
    await sari.wait_for(lambda s: s.room_id == room_id and s.body.startswith("Note kept"))
    await sari.send(room_id, "!info")
    info = await sari.wait_for(
        lambda s: s.room_id == room_id and s.body.startswith("Visitor: Siti")
    )
    assert "budi@example.org" in info.body and "returning member" in info.body
    # The topic's label in the desk's language, not its id (issue 14).
    assert "Question about: Penelusuran literatur / informasi / data\n" in info.body, info.body

    await sari.send(room_id, "!c")
    listing = await sari.wait_for(
        lambda s: s.room_id == room_id and s.body.startswith("Canned answers:")
    )
    assert "hours" in listing.body and "membership-card" in listing.body
    await sari.send(room_id, "!c hours")
    canned = await visitor.wait_for(lambda m: m["body"].startswith("Halo Siti"))
    assert canned["origin"] == "librarian" and canned["body"].endswith("Salam, Sari Librarian")

    await sari.send(room_id, f"!transfer {stack.mxid('agus')}")
    await eventually(lambda: owner_is(stack, visitor, stack.mxid("agus")))
    await agus.wait_for_invite(room_id)
    await agus.join(room_id)
    await visitor.wait_for(lambda m: m["origin"] == "desk" and "Agus Librarian" in m["body"])
    # The room's notice names both, without Matrix ids; the mention rings the new librarian.
    passed = await sari.wait_for(lambda s: s.room_id == room_id and "passed this chat" in s.body)
    assert passed.body == "Sari Librarian passed this chat to Agus Librarian.", passed.body
    assert passed.source["content"]["m.mentions"]["user_ids"] == [stack.mxid("agus")]
    await agus.send(room_id, "!transfer @nobody:localhost")
    await agus.wait_for(lambda s: s.room_id == room_id and "is not a librarian" in s.body)

    await agus.send(room_id, "!close answered the hours question")
    await visitor.wait_for(lambda m: m["origin"] == "desk" and "mengakhiri" in m["body"])
    assert (await session(stack, visitor)).closed_by == stack.mxid("agus")
    notes = await stack.desk.desk.notes(visitor.session_id)  # type: ignore[arg-type]
    assert [body for _, body, _ in notes] == [
        "visitor sounds like a returning member",
        "answered the hours question",
    ]
    # Internal words never reached the visitor; closed chats leave the room lists.
    bodies = " ".join(m["body"] for m in (await visitor.messages())["messages"])
    assert "returning member" not in bodies and "!note" not in bodies and "!close" not in bodies
    await eventually(lambda: nobody_left(stack, room_id))
    await visitor.close()


async def owner_is(stack: Stack, visitor: Visitor, user_id: str) -> bool:
    return (await session(stack, visitor)).owner == user_id


async def nobody_left(stack: Stack, room_id: str) -> bool:
    current = await members(stack, room_id)
    return all(current.get(stack.mxid(n)) in (None, "leave") for n in ("sari", "dewi", "agus"))


async def test_unclaimed_chat_escalates_to_supervisors(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    kepala = librarians["kepala"]
    visitor, room_id = await new_chat(stack, "Halo? Ada yang bisa bantu?", name="Rudi")
    escalated = await kepala.wait_for(
        lambda s: s.room_id == in_desk_room and "Rudi has waited" in s.body,
        timeout=ESCALATE_AFTER + 30,
    )
    assert stack.mxid("kepala") in escalated.source["content"]["m.mentions"]["user_ids"]
    # The supervisor is invited to the session room, and the visitor hears the honest state.
    await kepala.wait_for_invite(room_id)
    message = await visitor.wait_for(lambda m: m["origin"] == "desk" and "nomor" in m["body"])
    assert "antrean" in message["body"]
    assert (await session(stack, visitor)).escalated_at is not None
    await visitor.close()


async def test_owner_leaving_requeues(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    dewi = librarians["dewi"]
    visitor, room_id = await new_chat(stack, "Pertanyaan tentang repositori")
    await dewi.wait_for_invite(room_id)
    await dewi.join(room_id)
    await dewi.send(room_id, "Saya bantu ya.")
    await eventually(lambda: owner_is(stack, visitor, stack.mxid("dewi")))
    await dewi.leave(room_id)
    await eventually(lambda: is_waiting(stack, visitor))
    await visitor.wait_for(lambda m: m["origin"] == "desk" and "kembali dalam antrean" in m["body"])
    await dewi.wait_for(lambda s: s.room_id == in_desk_room and "left the room" in s.body)
    await visitor.close()


async def test_typing_receipts_edits_redactions_and_formatting(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    sari = librarians["sari"]
    visitor, room_id = await new_chat(stack, "Bisa kirim tautan katalog?")
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    await sari.wait_for_invite(room_id)
    await sari.join(room_id)
    question = await sari.wait_for(
        lambda s: s.room_id == room_id and s.sender == ghost and s.msgtype == "m.text"
    )

    # Librarian typing and read receipt show in the widget's session view.
    await sari.typing(room_id, True)
    await eventually(
        lambda: view_has(visitor, lambda v: v["librarian_typing"] == ["Sari Librarian"])
    )
    await sari.read(room_id, question.event_id)
    first_id = (await visitor.messages())["messages"][0]["id"]
    await eventually(lambda: view_has(visitor, lambda v: v["read_up_to"] >= first_id))

    # Formatting arrives sanitized; edits and redactions update the same message.
    event_id = await sari.send_content(
        room_id,
        {
            "msgtype": "m.text",
            "body": "Katalog: https://katalog.example",
            "format": "org.matrix.custom.html",
            "formatted_body": '<b>Katalog</b>: <a href="https://katalog.example">katalog</a>'
            '<script>alert(1)</script><img src=x onerror="alert(2)">',
        },
    )
    formatted = await visitor.wait_for(lambda m: m["body"].startswith("Katalog"))
    assert formatted["html"].startswith("<b>Katalog</b>")
    assert "script" not in formatted["html"] and "onerror" not in formatted["html"]
    assert 'rel="noopener noreferrer"' in formatted["html"]
    await sari.edit(room_id, event_id, "Katalog baru: https://opac.example")
    edited = await visitor.wait_for(lambda m: m["id"] == formatted["id"] and m["edited_at"])
    assert (
        edited["body"] == "Katalog baru: https://opac.example" and edited["seq"] > formatted["seq"]
    )
    await sari.redact(room_id, event_id)
    deleted = await visitor.wait_for(lambda m: m["id"] == formatted["id"] and m["deleted"])
    assert deleted["body"] == "" and deleted["html"] is None

    # Visitor typing and reading show in Element as the ghost's.
    await visitor.request("POST", f"/api/sessions/{visitor.session_id}/typing", {"typing": True})
    await sari.wait_ephemeral(
        lambda r, e: r == room_id and isinstance(e, TypingNoticeEvent) and ghost in e.users
    )
    reply_id = await sari.send(room_id, "Silakan dicek.")
    reply = await visitor.wait_for(lambda m: m["body"] == "Silakan dicek.")
    status, _ = await visitor.request(
        "POST", f"/api/sessions/{visitor.session_id}/read", {"up_to": reply["id"]}
    )
    assert status == 204
    await sari.wait_ephemeral(
        lambda r, e: (
            r == room_id
            and isinstance(e, ReceiptEvent)
            and any(rc.event_id == reply_id and rc.user_id == ghost for rc in e.receipts)
        )
    )
    await visitor.close()


async def view_has(visitor: Visitor, check: Callable[[dict[str, Any]], bool]) -> bool:
    return check((await visitor.messages())["session"])


async def test_reaction_on_the_queue_notice_claims(
    stack: Stack, librarians: dict[str, Librarian], in_desk_room: str
) -> None:
    agus, dewi = librarians["agus"], librarians["dewi"]
    visitor, _ = await new_chat(stack, "Saya cari skripsi tahun 2019", name="Yuni")
    notice = await agus.wait_for(
        lambda s: (
            s.room_id == in_desk_room
            and "Yuni" in s.body
            and "Waiting" in s.body
            and "m.new_content" not in s.source["content"]
        )
    )
    await agus.react(in_desk_room, notice.event_id)
    await eventually(lambda: owner_is(stack, visitor, stack.mxid("agus")))
    # A later reaction by someone else is told who serves the visitor.
    await dewi.react(in_desk_room, notice.event_id, "✋")
    await dewi.wait_for(
        lambda s: s.room_id == in_desk_room and "Yuni is already served by Agus" in s.body
    )
    assert (await session(stack, visitor)).owner == stack.mxid("agus")
    await visitor.close()


async def test_duty_from_a_direct_chat_with_the_bot(
    stack: Stack, librarians: dict[str, Librarian]
) -> None:
    dewi = librarians["dewi"]
    created = await dewi.client.room_create(invite=[stack.config.bot_mxid], is_direct=True)
    room_id = created.room_id  # type: ignore[union-attr]
    await eventually(lambda: bot_joined(stack, room_id))
    await dewi.send(room_id, "!duty off")
    await dewi.wait_for(lambda s: s.room_id == room_id and "off duty" in s.body)
    assert stack.mxid("dewi") not in await stack.desk.desk.queue.on_duty()
    await dewi.send(room_id, "!duty on")
    await dewi.wait_for(lambda s: s.room_id == room_id and "on duty: new chats ring you" in s.body)
    assert stack.mxid("dewi") in await stack.desk.desk.queue.on_duty()


async def bot_joined(stack: Stack, room_id: str) -> bool:
    try:
        members = await stack.desk.bridge.client.members(room_id)
    except MatrixError:
        return False  # not in the room yet
    return members.get(stack.config.bot_mxid) == "join"

"""Teams in Element, with real Synapse and nio librarians: a fair team's offer that survives a
restart of refdesk and moves on, answered by the next member; a ring_all team that overflows
to the rest of the desk; !busy and !available; !queue with teams; a transfer to a team."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from refdesk.config import Config, RouteConfig, TeamConfig
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually, in_desk_room, members_with  # noqa: F401
from tests.test_spine import room_of

ACCEPT_WITHIN = 3


def with_teams(stack: Stack, config: Config) -> Config:
    sari, dewi, agus = (stack.mxid(n) for n in ("sari", "dewi", "agus"))
    teams = (
        TeamConfig(
            "literature",
            "Literature search",
            (sari, dewi),
            assignment="fair",
            accept_within=ACCEPT_WITHIN,
            overflow_after=600,
        ),
        TeamConfig("membership", "Membership", (dewi, agus), overflow_after=4),
    )
    routing = (
        RouteConfig("literature", topics=("literature",)),
        RouteConfig("membership", topics=("membership",)),
    )
    # No escalation during these tests: it would ring everyone.
    desk = replace(config.desk, teams=teams, routing=routing, escalate_after=3600)
    return replace(config, desk=desk)


@pytest.fixture
async def teams(stack: Stack, in_desk_room: str) -> AsyncIterator[Config]:  # noqa: F811
    """refdesk restarted with teams, and as it was afterwards."""
    original = stack.config
    await stack.stop_refdesk()
    stack.config = with_teams(stack, original)
    try:
        await stack.start_refdesk()
        yield original
    finally:
        await stack.restore(original)


async def said(stack: Stack, room_id: str, starts: str, timeout: float = 30) -> dict[str, Any]:
    """The room's notice that starts with ``starts`` (read by the bot: a librarian who is only
    invited does not see the room's messages)."""

    async def find() -> dict[str, Any] | None:
        events, _ = await stack.desk.bridge.client.history(room_id, None)
        for event in events:
            if str(event.get("content", {}).get("body", "")).startswith(starts):
                return event
        return None

    found: dict[str, Any] = await eventually(find, timeout)
    return found


def mentions(event: dict[str, Any]) -> list[str]:
    return list(event["content"].get("m.mentions", {}).get("user_ids", []))


async def present(stack: Stack, room_id: str) -> set[str]:
    """Who is invited to or in the room."""
    joined = await members_with(stack, room_id, "join")
    return joined | await members_with(stack, room_id, "invite")


async def chat(stack: Stack, first: str, topic: str) -> tuple[Visitor, str]:
    visitor = Visitor(stack.widget_url)
    await visitor.start(name="Budi", topic=topic)
    await visitor.send(first)
    assert visitor.session_id is not None
    return visitor, await room_of(stack, visitor.session_id)


async def test_a_fair_offer_survives_a_restart_and_moves_to_the_next_member(
    stack: Stack,
    librarians: dict[str, Librarian],
    teams: Config,
    in_desk_room: str,  # noqa: F811
) -> None:
    in_desk = in_desk_room
    visitor, room_id = await chat(stack, "Saya mencari jurnal tentang padi", "literature")
    assert visitor.session_id is not None
    session_id = visitor.session_id
    offers = await eventually(lambda: stack.desk.desk.queue.assignment.pending_offers())
    first = str(offers[session_id])
    names = {stack.mxid("sari"): "sari", stack.mxid("dewi"): "dewi"}
    second = next(user for user in names if user != first)
    offered, other = librarians[names[first]], librarians[names[second]]
    # refdesk stops with the offer pending; its time to accept runs out meanwhile.
    await stack.stop_refdesk()
    await asyncio.sleep(ACCEPT_WITHIN + 1)  # the offer's deadline passes while refdesk is down
    await stack.start_refdesk()
    # The first was offered it alone (invited and mentioned), naming the team...
    new = await said(stack, room_id, "New chat · team Literature search: Budi")
    assert mentions(new) == []
    first_name = f"{names[first].capitalize()} Librarian"
    notice = await said(stack, room_id, f"Offered to {first_name} · team Literature search")
    assert mentions(notice) == [first]
    await offered.wait_for(
        lambda s: s.room_id == in_desk and s.body.startswith(f"🔔 {first_name}, a chat for you")
    )
    # ...and after the restart the offer moved to the other member, whose invitation rings,
    # and the first one's invitation is withdrawn.
    await other.wait_for_invite(room_id)
    second_name = f"{names[second].capitalize()} Librarian"
    moved_notice = await said(stack, room_id, f"Offered to {second_name}")
    assert mentions(moved_notice) == [second]
    await eventually(lambda: absent(stack, room_id, first))
    moved = await stack.desk.desk.queue.assignment.pending_offers()
    assert moved == {session_id: second}
    assert stack.mxid("agus") not in await members_with(stack, room_id, "invite")
    # Answering takes it: the visitor gets the answer, the claim names the team.
    await other.join(room_id)
    await other.send(room_id, "Halo Budi, saya bantu carikan.")
    await visitor.wait_for(lambda m: m["body"] == "Halo Budi, saya bantu carikan.")
    claimed = await other.wait_for(
        lambda s: s.room_id == room_id and "claimed this chat for the team Literature" in s.body
    )
    assert second.split(":")[0].lstrip("@").capitalize() in claimed.body
    assert (await stack.desk.desk.get_session(session_id)).owner == second
    assert await stack.desk.desk.queue.assignment.pending_offers() == {}
    await visitor.end()
    await visitor.close()


async def absent(stack: Stack, room_id: str, user_id: str) -> bool:
    return user_id not in await present(stack, room_id)


async def test_busy_overflow_queue_and_transfer_to_a_team(
    stack: Stack,
    librarians: dict[str, Librarian],
    teams: Config,
    in_desk_room: str,  # noqa: F811
) -> None:
    sari, dewi, agus = (librarians[n] for n in ("sari", "dewi", "agus"))
    await agus.send(in_desk_room, "!busy")
    await agus.wait_for(lambda s: s.room_id == in_desk_room and "you are busy" in s.body)
    try:
        visitor, room_id = await chat(stack, "Cara perpanjang kartu anggota?", "membership")
        # The membership team rings its members on duty and not busy: Dewi, not Agus or Sari.
        await dewi.wait_for_invite(room_id)
        ring = await said(stack, room_id, "New chat · team Membership: Budi")
        assert mentions(ring) == [stack.mxid("dewi")]
        # !queue shows the chat's team.
        await sari.send(in_desk_room, "!queue")
        listed = await sari.wait_for(
            lambda s: (
                s.room_id == in_desk_room
                and s.body.startswith("On duty:")
                and "Waiting:" in s.body
                and "· team Membership" in s.body
            )
        )
        assert "Agus Librarian (busy)" in listed.body
        # Nobody of the team takes it in time: the rest of the desk (Sari) is rung, not Agus.
        await sari.wait_for_invite(room_id)
        overflow = await said(stack, room_id, "Ringing the whole desk")
        assert "nobody of the team Membership took it within 4 s" in overflow["content"]["body"]
        assert mentions(overflow) == [stack.mxid("sari")]
        assert await absent(stack, room_id, stack.mxid("agus"))
        # Sari claims, then passes it to the literature team: offered to Dewi (not Sari).
        await sari.join(room_id)
        await sari.send(room_id, "!claim")
        await sari.wait_for(lambda s: s.room_id == room_id and "claimed this chat" in s.body)
        await sari.send(room_id, "!transfer literature")
        back = await said(stack, room_id, "Back in the queue · team Literature search")
        assert "Sari Librarian passed it to the team Literature search" in back["content"]["body"]
        offered = await said(stack, room_id, "Offered to Dewi Librarian · team Literature")
        assert mentions(offered) == [stack.mxid("dewi")]
        await visitor.wait_for(lambda m: "tim Literature search" in m["body"])
        session = await stack.desk.desk.get_session(visitor.session_id or "")
        assert session.team == "literature" and session.owner is None
        await visitor.end()
        await visitor.close()
    finally:
        await agus.send(in_desk_room, "!available")
        await agus.wait_for(lambda s: s.room_id == in_desk_room and "you are available" in s.body)

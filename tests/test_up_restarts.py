"""`refdesk up`, stopped and started again five times on the same data: after every start the
whole librarian flow works (duty, ringing, claim by answer, reaction or !claim, transfer,
close, rating). A restarted desk must never be deaf to its librarians."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

from refdesk.homeserver import free_port
from tests.helpers import Librarian, Seen, Visitor
from tests.test_desk_in_element import eventually
from tests.test_up import _start_up

ROUNDS = 5
CLAIMS = ("answer", "reaction", "command")


async def joined(lib: Librarian, room_id: str) -> None:
    if lib.memberships.get(room_id) != "join":
        await lib.wait_for_invite(room_id)
        await lib.join(room_id)


def in_room(room_id: str, text: str, sender: str | None = None):  # type: ignore[no-untyped-def]
    def check(seen: Seen) -> bool:
        return (
            seen.room_id == room_id
            and text in seen.body
            and (sender is None or seen.sender == sender)
        )

    return check


async def session_view(visitor: Visitor) -> dict:  # type: ignore[type-arg]
    return (await visitor.messages())["session"]


async def librarian_flow(
    widget_url: str, sari: Librarian, dewi: Librarian, desk_room: str, round_: int
) -> None:
    bot = "@refdesk:localhost"
    await sari.send(desk_room, "!duty on")
    await sari.wait_for(in_room(desk_room, "Sari (Pustakawan), you are on duty", bot))
    await dewi.send(desk_room, "!duty")
    await dewi.wait_for(in_room(desk_room, "On duty: Sari (Pustakawan)", bot))

    name = f"Rina{round_}"
    visitor = Visitor(widget_url)
    try:
        await visitor.start(name=name, language="en")
        await visitor.send(f"Question {round_}: where are the old maps?")
        # Ringing: both librarians are invited, the notice mentions them.
        room_id = await eventually(lambda: invited_to(sari, name))
        await dewi.wait_for_invite(room_id)
        await joined(sari, room_id)
        ring = await sari.wait_for(in_room(room_id, f"New chat: {name}", bot))
        assert sari.user_id in ring.source["content"]["m.mentions"]["user_ids"]

        how = CLAIMS[round_ % len(CLAIMS)]
        if how == "answer":
            await sari.send(room_id, "Hello, the map room is on floor 3.")
        elif how == "reaction":
            notice = await sari.wait_for(in_room(desk_room, f"Waiting · {name}", bot))
            await sari.react(desk_room, notice.event_id)
        else:
            await sari.send(room_id, "!claim")
        await sari.wait_for(in_room(room_id, "claimed this chat", bot))
        view = await eventually(lambda: claimed_by(visitor, "Sari (Pustakawan)"))
        assert view["status"] == "claimed"

        await sari.send(room_id, f"!transfer {dewi.user_id}")
        await eventually(lambda: join_and_see(dewi, room_id, "passed this chat to Dewi"))
        await eventually(lambda: claimed_by(visitor, "Dewi (Pustakawan)"))
        await dewi.send(room_id, "Anything else?")
        await visitor.wait_for(lambda m: m["body"] == "Anything else?")

        await dewi.send(room_id, "!close")
        await visitor.wait_for(lambda m: m["origin"] == "desk" and "ended" in m["body"])
        status, body = await visitor.request(
            "POST", f"/api/sessions/{visitor.session_id}/feedback", {"rating": 5}
        )
        assert status == 200, body
        # The rating reaches the desk room's live queue (an edit of the session's notice).
        await sari.wait_for(
            lambda s: s.room_id == desk_room and f"{name}" in s.body and "rated ★★★★★" in s.body
        )
    finally:
        await visitor.close()


async def join_and_see(lib: Librarian, room_id: str, text: str) -> bool:
    """Join (again, if an earlier invitation was withdrawn at the claim) until ``text`` shows."""
    await lib.sync(timeout_ms=500)
    if lib.last(in_room(room_id, text)) is not None:
        return True
    await lib.client.join(room_id)
    return False


async def invited_to(lib: Librarian, name: str) -> str | None:
    """The room ``lib`` is invited to whose name starts with the visitor's name."""
    await lib.sync(timeout_ms=500)
    for room_id, room in lib.client.invited_rooms.items():
        if (room.name or "").startswith(f"{name} ·"):
            return room_id
    return None


async def claimed_by(visitor: Visitor, name: str) -> dict | None:  # type: ignore[type-arg]
    view = await session_view(visitor)
    librarian = view.get("librarian") or {}
    return view if librarian.get("name") == name else None


async def test_up_five_restarts_and_the_whole_flow_after_each(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = (free_port(), free_port(), free_port())
    widget_url = f"http://127.0.0.1:{ports[0]}"
    homeserver = f"http://127.0.0.1:{ports[1]}"
    sari = dewi = None
    try:
        for round_ in range(ROUNDS):
            proc, banner = await _start_up(data_dir, ports)
            assert proc.stdout is not None
            output = asyncio.create_task(proc.stdout.read())  # never let the pipe fill up
            try:
                if sari is None or dewi is None:
                    accounts = dict(re.findall(r"(@\w+:localhost)\s+password: (\S+)", banner))
                    sari = await Librarian.login(
                        homeserver, "@sari:localhost", accounts["@sari:localhost"]
                    )
                    dewi = await Librarian.login(
                        homeserver, "@dewi:localhost", accounts["@dewi:localhost"]
                    )
                desk_room = await desk_room_of(sari)
                for lib in (sari, dewi):
                    await joined(lib, desk_room)
                await librarian_flow(widget_url, sari, dewi, desk_room, round_)
            finally:
                proc.send_signal(signal.SIGINT)
                assert await asyncio.wait_for(proc.wait(), 60) == 0
                assert "Stopping" in (await output).decode()
    finally:
        for lib in (sari, dewi):
            if lib is not None:
                await lib.close()


async def desk_room_of(lib: Librarian) -> str:
    """The desk room: the bot's room whose topic lists the desk commands."""

    async def find() -> str | None:
        await lib.sync(timeout_ms=500)
        for room_id, room in lib.client.rooms.items():
            if room.topic and "!duty on" in room.topic:
                return room_id
        for room_id in list(lib.invites):
            await lib.join(room_id)
        return None

    return str(await eventually(find, timeout=60))

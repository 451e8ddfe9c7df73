"""A visitor edits and deletes their own messages: the room gets an edit (``m.replace``) and a
redaction from the visitor's ghost, as Element shows them; stored intents carry both across a
restart of the homeserver and of refdesk (issue 14)."""

from __future__ import annotations

import dataclasses

from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_spine import open_chat


async def test_edit_and_delete_reach_the_room_across_restarts(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Halo, saya mau bertanya")
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    first = await visitor.send("Ada buku sejarah Jawa?")
    second = await visitor.send("Nomor HP saya 0812-0000-1111")
    seen_first = await sari.wait_for(lambda s: s.room_id == room_id and s.body == first["body"])
    seen_second = await sari.wait_for(lambda s: s.room_id == room_id and s.body == second["body"])

    # Both changes are made while the homeserver is down, then refdesk restarts too.
    await stack.synapse.stop()
    try:
        path = f"/api/sessions/{visitor.session_id}/messages"
        status, edited = await visitor.request(
            "PATCH", f"{path}/{first['id']}", {"body": "Ada buku sejarah Jawa Barat?"}
        )
        assert status == 200, edited
        assert edited["message"]["body"] == "Ada buku sejarah Jawa Barat?"
        assert edited["message"]["edited_at"] and edited["message"]["seq"] > first["seq"]
        status, deleted = await visitor.request("DELETE", f"{path}/{second['id']}")
        assert status == 200 and deleted["message"]["deleted"] is True
        assert deleted["message"]["body"] == ""  # the text is gone from the store
        await stack.stop_refdesk()
    finally:
        await stack.synapse.start()
    await stack.start_refdesk()

    edit = await sari.wait_for(
        lambda s: (
            s.room_id == room_id
            and s.sender == ghost
            and s.source.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"
        ),
        timeout=60,
    )
    content = edit.source["content"]
    assert content["m.relates_to"]["event_id"] == seen_first.event_id
    assert content["m.new_content"]["body"] == "Ada buku sejarah Jawa Barat?"
    redaction = await sari.wait_for(
        lambda s: s.room_id == room_id and s.source.get("type") == "m.room.redaction", timeout=60
    )
    assert redaction.sender == ghost
    assert seen_second.event_id in (
        redaction.source.get("redacts"),
        redaction.source.get("content", {}).get("redacts"),
    )
    # Exactly once each, whatever the restarts did.
    replaces = [
        s
        for s in sari.timeline
        if s.room_id == room_id
        and s.source.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"
    ]
    assert len(replaces) == 1
    # The visitor's stream has both changes.
    history = {m["id"]: m for m in (await visitor.messages())["messages"]}
    assert history[first["id"]]["body"] == "Ada buku sejarah Jawa Barat?"
    assert history[second["id"]]["deleted"] is True


async def test_only_own_recent_messages_of_an_open_chat_can_change(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    dewi = librarians["dewi"]
    room_id = await open_chat(stack, visitor, dewi, "Pertanyaan saya")
    await dewi.send(room_id, "Silakan, saya bantu.")
    reply = await visitor.wait_for(lambda m: m["body"] == "Silakan, saya bantu.")
    mine = await visitor.send("Terima kasih")
    path = f"/api/sessions/{visitor.session_id}/messages"

    async def refused(method: str, message_id: object, body: object = None) -> tuple[int, str]:
        status, data = await visitor.request(method, f"{path}/{message_id}", body)
        return status, data["error"]

    assert await refused("PATCH", reply["id"], {"body": "x"}) == (403, "not_your_message")
    assert await refused("DELETE", reply["id"]) == (403, "not_your_message")
    assert await refused("PATCH", "nope", {"body": "x"}) == (404, "unknown_message")
    assert await refused("PATCH", 10**30, {"body": "x"}) == (404, "unknown_message")
    assert await refused("PATCH", mine["id"], {"body": "  "}) == (422, "validation_failed")
    assert await refused("PATCH", mine["id"], {"body": "x" * 5000}) == (413, "message_too_long")
    # Another chat's message, with this chat's token: as if it did not exist.
    other = Visitor(stack.widget_url)
    try:
        await other.start(name="Lain")
        theirs = await other.send("pesan orang lain")
        assert await refused("DELETE", theirs["id"]) == (404, "unknown_message")
        status, _ = await other.request(
            "DELETE", f"/api/sessions/{visitor.session_id}/messages/{mine['id']}"
        )
        assert status == 403  # the other visitor's token does not open this chat
    finally:
        await other.close()
    # Past the edit window.
    desk = stack.desk.desk
    rules = desk.rules
    desk.rules = dataclasses.replace(rules, visitor_edit_window=0)
    try:
        assert await refused("PATCH", mine["id"], {"body": "y"}) == (409, "edit_window_passed")
    finally:
        desk.rules = rules
    assert (await visitor.request("DELETE", f"{path}/{mine['id']}"))[0] == 200
    assert await refused("DELETE", mine["id"]) == (409, "message_deleted")
    assert await refused("PATCH", mine["id"], {"body": "z"}) == (409, "message_deleted")
    last = await visitor.send("Sampai jumpa")
    await visitor.end()
    assert await refused("PATCH", last["id"], {"body": "x"}) == (409, "session_closed")
    assert await refused("DELETE", last["id"]) == (409, "session_closed")

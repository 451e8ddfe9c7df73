"""Protecting the service: a librarian bans a spammer; too many new chats are refused."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient

from refdesk.config import parse_config
from refdesk.embedded import embedded_config_data
from refdesk.wiring import create_widget_app
from rooms.desk import Desk, DeskRules
from rooms.store import SqliteDatabase
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor, WidgetTestServer
from tests.test_desk_in_element import eventually
from tests.test_spine import open_chat

FORM = {"name": "Spam", "email": "spam@example.org", "topic": "literature"}


async def test_ban_from_element_blocks_the_connection(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    agus = librarians["agus"]
    room_id = await open_chat(stack, visitor, agus, "BELI PULSA MURAH!!!")
    await agus.send(room_id, "!ban 2 spam")
    await agus.wait_for(lambda s: s.room_id == room_id and "Blocked this visitor" in s.body)
    await eventually(lambda: closed(stack, visitor))
    again = Visitor(stack.widget_url)
    try:
        status, body = await again.request("POST", "/api/sessions", FORM, token=False)
        assert (status, body["error"]) == (403, "client_banned")
    finally:
        client_key = (await stack.desk.desk.get_session(visitor.session_id or "")).client_key
        assert client_key is not None and await stack.desk.desk.bans.unban(client_key)
        await again.close()
    # Lifted: the same connection may chat again.
    assert (await again_start(stack)) == 201


async def again_start(stack: Stack) -> int:
    fresh = Visitor(stack.widget_url)
    try:
        status, _ = await fresh.request("POST", "/api/sessions", FORM, token=False)
        return status
    finally:
        await fresh.close()


async def closed(stack: Stack, visitor: Visitor) -> bool:
    return not (await stack.desk.desk.get_session(visitor.session_id or "")).is_open


async def test_too_many_new_chats_from_one_connection(tmp_path: Path) -> None:
    data = embedded_config_data(widget_port=1, homeserver_port=2, appservice_port=3, librarians=[])
    data["widget"]["new_sessions_per_minute"] = 2
    config = parse_config(data)
    db = SqliteDatabase(tmp_path / "p.db")
    await db.open()
    desk = Desk(db, DeskRules(topics=tuple(t.id for t in config.desk.topics)))
    client = TestClient(WidgetTestServer(create_widget_app(config, desk)))
    await client.start_server()
    try:
        statuses = []
        for _ in range(3):
            resp = await client.post("/api/sessions", json=FORM)
            statuses.append(resp.status)
        assert statuses == [201, 201, 429]
        body = await resp.json()
        assert body["error"] == "too_many_requests" and int(resp.headers["Retry-After"]) > 0
        rows = await db.fetchall("SELECT id FROM sessions")
        assert len(rows) == 2  # the refused one changed nothing
    finally:
        await client.close()
        await db.close()

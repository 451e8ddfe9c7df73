"""Bad input gets a clear answer and changes nothing it should not."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp

from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_spine import open_chat


async def test_unknown_session_and_tokens(stack: Stack, visitor: Visitor) -> None:
    await visitor.start()
    sid = visitor.session_id
    status, body = await visitor.request("GET", "/api/sessions/nosuchsession")
    assert (status, body["error"]) == (404, "unknown_session")
    status, body = await visitor.request("GET", f"/api/sessions/{sid}", token=False)
    assert (status, body["error"]) == (401, "missing_token")
    status, body = await visitor.request("GET", f"/api/sessions/{sid}", token="forged")
    assert (status, body["error"]) == (403, "invalid_token")
    # Another session's token opens only that other session.
    other = Visitor(stack.widget_url)
    try:
        await other.start(name="Siti")
        status, body = await visitor.request(
            "POST",
            f"/api/sessions/{sid}/messages",
            {"body": "x", "client_id": "a"},
            token=other.token,
        )
        assert (status, body["error"]) == (403, "invalid_token")
    finally:
        await other.close()
    assert (await visitor.messages())["messages"] == []


async def test_form_and_message_validation(stack: Stack, visitor: Visitor) -> None:
    status, body = await visitor.request(
        "POST", "/api/sessions", {"name": "Budi", "topic": "literature"}, token=False
    )
    assert status == 422 and body["error"] == "validation_failed"
    assert body["fields"] == {"email": "required"}
    status, body = await visitor.request("POST", "/api/sessions", raw=b"{not json", token=False)
    assert (status, body["error"]) == (400, "bad_json")
    status, body = await visitor.request("POST", "/api/sessions", [1, 2], token=False)
    assert (status, body["error"]) == (400, "bad_json")

    await visitor.start()
    path = f"/api/sessions/{visitor.session_id}/messages"
    limit = stack.config.widget.max_message_length
    status, body = await visitor.request(
        "POST", path, {"body": "x" * (limit + 1), "client_id": "1"}
    )
    assert (status, body["error"]) == (413, "message_too_long")
    status, body = await visitor.request(
        "POST", path, raw=json.dumps({"body": "y" * 100_000}).encode()
    )
    assert (status, body["error"]) == (413, "request_too_large")
    status, body = await visitor.request("POST", path, {"body": "hi"})
    assert status == 422 and "client_id" in body["fields"]
    status, body = await visitor.request("GET", f"{path}?after=abc")
    assert (status, body["error"]) == (400, "bad_parameter")
    status, body = await visitor.request("GET", f"{path}?wait=999")
    assert (status, body["error"]) == (400, "bad_parameter")
    status, body = await visitor.request("GET", "/api/nothing-here")
    assert (status, body["error"]) == (404, "not_found")
    assert (await visitor.messages())["messages"] == []
    assert (await stack.desk.desk.get_session(visitor.session_id or "")).room_id is None


async def test_websocket_hello_is_checked(stack: Stack, visitor: Visitor) -> None:
    await visitor.start()
    url = f"{stack.widget_url}/api/sessions/{visitor.session_id}/ws"
    cases = [
        ({"type": "hello", "token": "forged", "after": 0}, 4403, "invalid_token"),
        ({"type": "hello", "after": 0}, 4401, "missing_token"),
        ({"type": "send", "body": "x"}, 4400, "bad_frame"),
    ]
    async with aiohttp.ClientSession() as http:
        for hello, code, error in cases:
            async with http.ws_connect(url) as ws:
                await ws.send_json(hello)
                frame = await ws.receive_json(timeout=5)
                assert frame["error"] == error
                await ws.receive(timeout=5)
                assert ws.close_code == code
        async with http.ws_connect(f"{stack.widget_url}/api/sessions/nosuch/ws") as ws:
            await ws.send_json({"type": "hello", "token": visitor.token, "after": 0})
            assert (await ws.receive_json(timeout=5))["error"] == "unknown_session"


async def test_websocket_send_ack_and_push(stack: Stack, visitor: Visitor) -> None:
    await visitor.start()
    url = f"{stack.widget_url}/api/sessions/{visitor.session_id}/ws"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await ws.send_json({"type": "hello", "token": visitor.token, "after": 0})
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        await ws.send_json({"type": "send", "client_id": "w1", "body": "via websocket"})
        await ws.send_json({"type": "send", "client_id": "w1", "body": "via websocket"})
        await ws.send_json({"type": "send", "client_id": "w2", "body": ""})
        await ws.send_json({"type": "ping"})
        frames = [await ws.receive_json(timeout=5) for _ in range(6)]
    kinds = [f["type"] for f in frames]
    # The first message puts the session in the queue, and the widget is told where it stands.
    view = next(f["session"] for f in frames if f["type"] == "session")
    assert view["status"] == "waiting" and view["queue_position"] >= 1
    assert kinds.count("ack") == 2 and kinds.count("message") == 1 and "pong" in kinds
    acks = [f for f in frames if f["type"] == "ack"]
    assert acks[0]["message"]["id"] == acks[1]["message"]["id"]
    error = next(f for f in frames if f["type"] == "error")
    assert error["client_id"] == "w2" and error["error"] == "validation_failed"
    assert [m["body"] for m in (await visitor.messages())["messages"]] == ["via websocket"]


async def test_appservice_checks_hs_token_and_dedupes_transactions(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    agus = librarians["agus"]
    room_id = await open_chat(stack, visitor, agus, "Pertanyaan tentang e-journal")
    asc = stack.config.appservice
    base = f"http://127.0.0.1:{asc.listen_port}/_matrix/app/v1/transactions/"
    event = {
        "type": "m.room.message",
        "room_id": room_id,
        "sender": agus.user_id,
        "event_id": f"$forged-{uuid.uuid4().hex}",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": "from a replayed transaction"},
    }
    txn = {"events": [event]}
    async with aiohttp.ClientSession() as http:
        async with http.put(base + "t1", json=txn) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"
        wrong = {"Authorization": "Bearer wrong"}
        async with http.put(base + "t1", json=txn, headers=wrong) as resp:
            assert resp.status == 403
            assert (await resp.json())["errcode"] == "M_FORBIDDEN"
        assert (await visitor.messages())["messages"][-1]["body"] != "from a replayed transaction"
        good = {"Authorization": f"Bearer {asc.hs_token}"}
        txn_id = f"test-{uuid.uuid4().hex}"
        for _ in range(2):
            async with http.put(base + txn_id, json=txn, headers=good) as resp:
                assert resp.status == 200 and await resp.json() == {}
        # The same event in a new transaction is still handled once.
        async with http.put(base + txn_id + "b", json=txn, headers=good) as resp:
            assert resp.status == 200
        async with http.put(base + "bad", data=b"nope", headers=good) as resp:
            assert resp.status == 400 and (await resp.json())["errcode"] == "M_NOT_JSON"
    bodies = [m["body"] for m in (await visitor.messages())["messages"]]
    assert bodies.count("from a replayed transaction") == 1


async def test_long_poll_returns_at_once_when_the_view_changed_in_between(
    stack: Stack, visitor: Visitor
) -> None:
    await visitor.start()
    await visitor.send("halo")
    path = f"/api/sessions/{visitor.session_id}/messages"
    status, first = await visitor.request("GET", f"{path}?after=0")
    assert status == 200 and first["view_tag"]
    session = await stack.desk.desk.get_session(visitor.session_id or "")
    # Between two polls a librarian starts typing (no new message).
    await stack.desk.desk.librarian_typing(session, ("Sari Librarian",))
    try:
        status, second = await asyncio.wait_for(
            visitor.request(
                "GET", f"{path}?after={first['cursor']}&wait=30&view={first['view_tag']}"
            ),
            timeout=15,  # far below the 30 s wait: the answer came because the view differed
        )
    finally:
        await stack.desk.desk.librarian_typing(session, ())
    assert status == 200 and second["messages"] == []
    assert second["session"]["librarian_typing"] == ["Sari Librarian"]
    assert second["view_tag"] != first["view_tag"]
    status, body = await visitor.request("GET", f"{path}?view={'x' * 41}")
    assert (status, body["error"]) == (400, "bad_parameter")

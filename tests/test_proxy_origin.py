"""Behind a reverse proxy each visitor is still one client; the origin allowlist is enforced.

The widget app runs in-process (aiohttp's TestServer) on a Desk over a temporary SQLite store.
The test client always connects from 127.0.0.1: whether that peer is a trusted proxy is what
``widget.trusted_proxies`` decides in each test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError, web
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict, CIMultiDictProxy

from directories.local import LocalDirectory
from refdesk.config import ConfigError, parse_config
from refdesk.embedded import embedded_config_data
from refdesk.wiring import create_widget_app, desk_rules
from rooms.desk import Desk, utcnow
from rooms.ids import UserID
from rooms.store import SqliteDatabase
from rooms.verification import VerificationRules, Verifier
from tests.helpers import WidgetTestServer
from widget_server.client import ClientAddresses, forwarded_for, limit_key, parse_node

FORM = {"name": "Budi", "email": "budi@example.org", "topic": "literature"}
LIBRARY = "https://library.example"
MEMBERS = {
    "members": [
        {
            "member_number": "A-10234",
            "name": "Budi Santoso",
            "expires": "2099-06-30",
            "date_of_birth": "1990-05-01",
        }
    ]
}


@dataclass
class App:
    client: TestClient[web.Request, web.Application]
    desk: Desk
    db: SqliteDatabase

    async def start(self, headers: Any = None) -> tuple[int, Any]:
        """POST /api/sessions with these headers (a dict, or a CIMultiDict for repeats)."""
        resp = await self.client.post("/api/sessions", json=FORM, headers=headers)
        return resp.status, await resp.json()

    async def count(self, table: str) -> int:
        rows = await self.db.fetchall(f"SELECT COUNT(*) FROM {table}")
        return int(rows[0][0])


@asynccontextmanager
async def widget_app(tmp_path: Path, **widget: Any) -> AsyncIterator[App]:
    data = embedded_config_data(
        widget_port=8080, homeserver_port=2, appservice_port=3, librarians=[]
    )
    data["widget"].update(widget)
    config = parse_config(data)
    db = SqliteDatabase(tmp_path / "proxy.db")
    await db.open()
    rules = VerificationRules(max_attempts_per_session=5, max_attempts_per_client=2)
    desk = Desk(
        db,
        desk_rules(config),
        verifier=Verifier(LocalDirectory.from_data(MEMBERS), rules, utcnow),
    )
    client: TestClient[web.Request, web.Application] = TestClient(
        WidgetTestServer(create_widget_app(config, desk))
    )
    await client.start_server()
    try:
        yield App(client, desk, db)
    finally:
        await client.close()
        await db.close()


def xff(*hops: str) -> dict[str, str]:
    return {"X-Forwarded-For": ", ".join(hops)}


# --- the client address ------------------------------------------------------------------------


async def test_forged_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    """127.0.0.1 is not a trusted proxy here: its headers are the client's own, and ignored."""
    async with widget_app(
        tmp_path, trusted_proxies=["10.0.0.0/8"], new_sessions_per_minute=2
    ) as app:
        statuses = [
            (await app.start(xff("198.51.100.1")))[0],
            (await app.start({"Forwarded": "for=198.51.100.2"}))[0],
            (await app.start(xff("198.51.100.3", "10.0.0.2")))[0],
        ]
        assert statuses == [201, 201, 429]
        keys = await app.db.fetchall("SELECT DISTINCT client_key FROM sessions")
        assert [row[0] for row in keys] == [await app.desk.client_key("127.0.0.1")]


async def test_trusted_proxy_chain_gives_each_visitor_their_own_limit(tmp_path: Path) -> None:
    async with widget_app(
        tmp_path, trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"], new_sessions_per_minute=1
    ) as app:
        status, first = await app.start(xff("198.51.100.1", "10.0.0.2"))
        assert status == 201
        assert (await app.start(xff("198.51.100.2", "10.0.0.2")))[0] == 201
        # The same visitor again, and again with a made-up address in front of the real one:
        # the right-most untrusted hop is the client, whatever the client wrote to its left.
        assert (await app.start(xff("198.51.100.1", "10.0.0.2")))[0] == 429
        assert (await app.start(xff("203.0.113.99", "198.51.100.1", "10.0.0.2")))[0] == 429
        # Proxies that add a header line of their own instead of appending: the same list.
        two_lines = CIMultiDict(
            [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2")]
        )
        assert (await app.start(two_lines))[0] == 201
        session = await app.desk.get_session(first["session"]["id"])
        assert session.client_key == await app.desk.client_key("198.51.100.1")
        # No header from the trusted peer (a health check, an admin on the host): the peer.
        assert (await app.start())[0] == 201
        assert (await app.start())[0] == 429


async def test_forwarded_header(tmp_path: Path) -> None:
    """RFC 7239 Forwarded, with IPv6 and ports; X-Forwarded-For is then never read."""
    async with widget_app(
        tmp_path,
        trusted_proxies=["127.0.0.0/8", "2001:db8:ffff::/48"],
        forwarded_header="forwarded",
        new_sessions_per_minute=1,
    ) as app:
        proxy = 'for="[2001:db8:ffff::5]:8443";proto=https'
        visitor = 'for="[2001:db8:1:1::10]:4711";proto=https;by=_edge'
        assert (await app.start({"Forwarded": f"{visitor}, {proxy}"}))[0] == 201
        # The same /64 is the same visitor (one household or phone has a whole /64) ...
        same_64 = {"Forwarded": f'for="[2001:db8:1:1::99]", {proxy}'}
        assert (await app.start(same_64))[0] == 429
        # ... even when X-Forwarded-For says otherwise: the proxy does not manage that header.
        assert (await app.start({**same_64, **xff("198.51.100.50")}))[0] == 429
        # A client's own Forwarded element in front changes nothing.
        forged = {"Forwarded": f'for=198.51.100.77, for="[2001:db8:1:1::10]", {proxy}'}
        assert (await app.start(forged))[0] == 429
        assert (await app.start({"Forwarded": f"for=192.0.2.8:61000, {proxy}"}))[0] == 201
        assert (await app.start({"Forwarded": 'for="[2001:db8:1:2::10]"'}))[0] == 201
        # X-Forwarded-For alone is not read: the client is the peer.
        assert (await app.start(xff("198.51.100.60")))[0] == 201
        assert (await app.start(xff("198.51.100.61")))[0] == 429


async def test_a_ban_blocks_only_the_banned_visitor(tmp_path: Path) -> None:
    async with widget_app(tmp_path, trusted_proxies=["127.0.0.0/8"]) as app:
        status, started = await app.start(xff("198.51.100.1"))
        assert status == 201
        session = await app.desk.get_session(started["session"]["id"])
        await app.desk.ban_client(session, UserID("@sari:localhost"), days=1, reason="spam")
        status, refused = await app.start(xff("198.51.100.1"))
        assert (status, refused["error"]) == (403, "client_banned")
        assert (await app.start(xff("198.51.100.2")))[0] == 201
        # A forged hop in front does not lift the ban; a forged hop alone cannot ban others.
        assert (await app.start(xff("198.51.100.2", "198.51.100.1")))[0] == 403
        assert (await app.start(xff("198.51.100.1", "198.51.100.3")))[0] == 201


async def test_verification_attempts_count_per_client(tmp_path: Path) -> None:
    async with widget_app(tmp_path, trusted_proxies=["127.0.0.0/8"]) as app:
        first = await verifying(app, "198.51.100.1")
        second = await verifying(app, "198.51.100.1")
        other = await verifying(app, "198.51.100.2")
        wrong = {"fields": {"member_number": "A-10234", "date_of_birth": "1991-01-01"}}
        for _ in range(2):
            answer = await verify(app, first, "198.51.100.1", wrong)
            assert (answer["outcome"], answer["locked"]) == ("mismatch", False)
        # The client (not only the session) has used its two attempts ...
        answer = await verify(app, second, "198.51.100.1", wrong)
        assert (answer["outcome"], answer["locked"]) == ("locked", True)
        # ... and another visitor behind the same proxy has not.
        answer = await verify(app, other, "198.51.100.2", wrong)
        assert (answer["outcome"], answer["locked"]) == ("mismatch", False)
        audit = await app.db.fetchall("SELECT DISTINCT client_key FROM verification_audit")
        assert {row[0] for row in audit} == {
            await app.desk.client_key("198.51.100.1"),
            await app.desk.client_key("198.51.100.2"),
        }


async def verifying(app: App, address: str) -> tuple[str, str]:
    status, started = await app.start(xff(address))
    assert status == 201
    session = await app.desk.get_session(started["session"]["id"])
    await app.desk.request_verification(session, None)
    return session.id, started["token"]


async def verify(
    app: App, visit: tuple[str, str], address: str, body: dict[str, Any]
) -> dict[str, Any]:
    resp = await app.client.post(
        f"/api/sessions/{visit[0]}/verification",
        json=body,
        headers={**xff(address), "Authorization": f"Bearer {visit[1]}"},
    )
    assert resp.status == 200, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


def resolver(header: str = "x-forwarded-for") -> ClientAddresses:
    networks = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "2001:db8:ffff::/48")
    return ClientAddresses([ip_network(n) for n in networks], header)


def headers(name: str, *lines: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict([(name, line) for line in lines]))


@pytest.mark.parametrize(
    ("peer", "lines", "client"),
    [
        # An untrusted peer is the client, whatever it sends.
        ("198.51.100.9", ["203.0.113.1"], "198.51.100.9"),
        ("2001:db8:5::1", ["203.0.113.1"], "2001:db8:5::1"),
        # A trusted peer: the right-most untrusted hop.
        ("127.0.0.1", ["203.0.113.1"], "203.0.113.1"),
        ("127.0.0.1", ["203.0.113.1, 10.1.2.3"], "203.0.113.1"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.1, 10.1.2.3"], "203.0.113.1"),
        ("127.0.0.1", ["6.6.6.6", "203.0.113.1", "10.1.2.3"], "203.0.113.1"),
        ("::1", ["203.0.113.1"], "203.0.113.1"),
        ("::ffff:127.0.0.1", ["203.0.113.1"], "203.0.113.1"),
        # Ports, brackets, zones, IPv4-mapped; canonical text.
        ("127.0.0.1", ["203.0.113.1:4711"], "203.0.113.1"),
        ("127.0.0.1", ["[2001:DB8:0::1]:4711"], "2001:db8::1"),
        ("127.0.0.1", ["2001:db8::1"], "2001:db8::1"),
        ("127.0.0.1", ["fe80::1%eth0"], "fe80::1"),
        ("127.0.0.1", ["::ffff:203.0.113.1"], "203.0.113.1"),
        # No header, empty elements, all hops trusted.
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", [" , 203.0.113.1 ,, "], "203.0.113.1"),
        ("127.0.0.1", ["10.0.0.7, 10.1.2.3"], "10.0.0.7"),
        # A hop that names no address: the trusted proxy that wrote it stands for the client.
        ("127.0.0.1", ["unknown"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.1, unknown, 10.1.2.3"], "10.1.2.3"),
        ("127.0.0.1", ["_hidden, 10.1.2.3"], "10.1.2.3"),
        ("127.0.0.1", ["not an address"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.1:http"], "127.0.0.1"),
        ("127.0.0.1", ["[2001:db8::1"], "127.0.0.1"),
        ("127.0.0.1", ["01.2.3.4"], "127.0.0.1"),
        # ... but garbage a client wrote left of its own address is never read.
        ("127.0.0.1", ["garbage, 203.0.113.1"], "203.0.113.1"),
        # A peer that is no IP address (a UNIX socket) is taken as it is.
        ("", ["203.0.113.1"], "unknown"),
    ],
)
def test_x_forwarded_for_rules(peer: str, lines: list[str], client: str) -> None:
    assert resolver().resolve(peer, headers("X-Forwarded-For", *lines)) == client


@pytest.mark.parametrize(
    ("lines", "client"),
    [
        (['for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
        (["For=192.0.2.60, for=10.0.0.1"], "192.0.2.60"),
        (["for=6.6.6.6, for=192.0.2.60", "for=10.0.0.1"], "192.0.2.60"),
        (['for=192.0.2.60, for="[2001:db8:ffff::1]"'], "192.0.2.60"),
        (['for="192.0.2.60:8080"'], "192.0.2.60"),
        (["for=unknown, for=10.0.0.1"], "10.0.0.1"),
        (["for=_gazonk, for=10.0.0.1"], "10.0.0.1"),
        (["proto=https, for=10.0.0.1"], "10.0.0.1"),  # an element without for=
        (["for=192.0.2.60;for=192.0.2.61"], "127.0.0.1"),  # for= twice: broken
        (["for=192.0.2.60 junk"], "127.0.0.1"),
        # A client's broken element does not swallow the proxy's element after it.
        (['for="6.6.6.6, for=192.0.2.60'], "192.0.2.60"),
        (["for=6.6.6.6;, for=192.0.2.60"], "192.0.2.60"),
    ],
)
def test_forwarded_rules(lines: list[str], client: str) -> None:
    assert resolver("forwarded").resolve("127.0.0.1", headers("Forwarded", *lines)) == client


def test_only_the_configured_header_is_read() -> None:
    both = CIMultiDictProxy(
        CIMultiDict([("X-Forwarded-For", "198.51.100.1"), ("Forwarded", "for=198.51.100.2")])
    )
    assert resolver().resolve("127.0.0.1", both) == "198.51.100.1"
    assert resolver("forwarded").resolve("127.0.0.1", both) == "198.51.100.2"


def test_node_parsing_and_limit_keys() -> None:
    assert parse_node("[2001:db8::1]:_port") == ip_address("2001:db8::1")
    assert parse_node("unknown") is None and parse_node("") is None
    assert forwarded_for(['for="\\_x"', 'for="a\\"b"']) == ["_x", 'a"b']
    assert limit_key("2001:db8:1:1::10") == limit_key("2001:db8:1:1:ffff::1") == "2001:db8:1:1::/64"
    assert limit_key("2001:db8:1:2::10") != limit_key("2001:db8:1:1::10")
    assert limit_key("198.51.100.1") == "198.51.100.1"
    assert limit_key("unknown") == "unknown"


# --- the origin check --------------------------------------------------------------------------


async def test_cross_origin_requests_are_refused(tmp_path: Path) -> None:
    async with widget_app(tmp_path, allowed_origins=[LIBRARY]) as app:
        evil = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        resp = await app.client.post("/api/sessions", data=json_text(FORM), headers=evil)
        body = await resp.json()
        assert (resp.status, body["error"]) == (403, "origin_not_allowed")
        assert isinstance(body["message"], str)
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert await app.count("sessions") == 0
        for origin in ("null", "", "https://library.example.evil", "http://library.example"):
            resp = await app.client.post("/api/sessions", json=FORM, headers={"Origin": origin})
            assert resp.status == 403, origin
        # Two Origin headers are no browser's: refused.
        twice = CIMultiDict([("Origin", LIBRARY), ("Origin", "https://evil.example")])
        assert (await app.client.post("/api/sessions", json=FORM, headers=twice)).status == 403
        assert await app.count("sessions") == 0

        # A session opened properly; a cross-origin page cannot act on it either.
        status, started = await app.start()
        assert status == 201
        session_id, token = started["session"]["id"], started["token"]
        auth = {"Authorization": f"Bearer {token}"}
        messages = await app.count("messages")
        resp = await app.client.post(
            f"/api/sessions/{session_id}/messages",
            data=json_text({"body": "hi", "client_id": "x1"}),
            headers={**auth, **evil},
        )
        assert (resp.status, (await resp.json())["error"]) == (403, "origin_not_allowed")
        resp = await app.client.post(f"/api/sessions/{session_id}/end", headers={**auth, **evil})
        assert resp.status == 403
        assert await app.count("messages") == messages
        assert (await app.desk.get_session(session_id)).is_open
        # Reads stay open (the token guards them; CORS keeps other pages from reading them).
        resp = await app.client.get(f"/api/sessions/{session_id}", headers={**auth, **evil})
        assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers

        # The WebSocket is refused before the upgrade.
        with pytest.raises(WSServerHandshakeError) as refused:
            await app.client.ws_connect(
                f"/api/sessions/{session_id}/ws", origin="https://evil.example"
            )
        assert refused.value.status == 403


async def test_no_origin_own_origin_and_allowed_origins_work(tmp_path: Path) -> None:
    async with widget_app(
        tmp_path, allowed_origins=[LIBRARY, "https://WWW.Library.example:443/"]
    ) as app:
        for origin in (None, "http://localhost:8080", LIBRARY, "https://www.library.example"):
            resp = await app.client.post(
                "/api/sessions",
                data=json_text(FORM),
                headers={"Content-Type": "text/plain"} | ({"Origin": origin} if origin else {}),
            )
            assert resp.status == 201, (origin, await resp.text())
            if origin:
                assert resp.headers["Access-Control-Allow-Origin"] == origin
            started = await resp.json()
            path = f"/api/sessions/{started['session']['id']}/ws"
            async with app.client.ws_connect(path, origin=origin) as ws:
                await ws.send_json({"type": "hello", "token": started["token"]})
                assert (await ws.receive_json(timeout=5))["type"] == "ready"


async def test_any_origin(tmp_path: Path) -> None:
    async with widget_app(tmp_path, allowed_origins=["*"]) as app:
        for origin in ("https://anywhere.example", "null"):
            assert (await app.start({"Origin": origin}))[0] == 201


def json_text(data: dict[str, Any]) -> str:
    return json.dumps(data)


# --- config ------------------------------------------------------------------------------------


def config_with(**widget: Any) -> Any:
    data = embedded_config_data(
        widget_port=8080, homeserver_port=2, appservice_port=3, librarians=[]
    )
    data["widget"].update(widget)
    return parse_config(data)


def test_config_defaults() -> None:
    data = embedded_config_data(
        widget_port=8080, homeserver_port=2, appservice_port=3, librarians=[]
    )
    for key in ("trusted_proxies", "forwarded_header"):
        data["widget"].pop(key, None)
    widget = parse_config(data).widget
    assert widget.trusted_proxies == (ip_network("127.0.0.0/8"), ip_network("::1/128"))
    assert widget.forwarded_header == "x-forwarded-for"
    assert widget.own_origin == "http://localhost:8080"
    assert config_with(trusted_proxies=[]).widget.trusted_proxies == ()
    assert config_with(forwarded_header="Forwarded").widget.forwarded_header == "forwarded"
    assert config_with(public_url="https://Desk.example:443/chat").widget.own_origin == (
        "https://desk.example"
    )
    assert config_with(allowed_origins=["https://Lib.example:8443/"]).widget.allowed_origins == (
        "https://lib.example:8443",
    )


@pytest.mark.parametrize(
    ("key", "value", "path", "words"),
    [
        ("trusted_proxies", ["10.0.0.0/8", "proxy.lan"], "widget.trusted_proxies[1]", "network"),
        ("trusted_proxies", ["10.0.0.0/8", 10], "widget.trusted_proxies[1]", "network"),
        ("trusted_proxies", ["10.0.0.5/8"], "widget.trusted_proxies[0]", "10.0.0.0/8"),
        ("trusted_proxies", "10.0.0.0/8", "widget.trusted_proxies", "list"),
        ("forwarded_header", "x-real-ip", "widget.forwarded_header", "x-forwarded-for"),
        ("allowed_origins", ["https://lib.example/chat"], "widget.allowed_origins[0]", "origin"),
        ("allowed_origins", ["lib.example"], "widget.allowed_origins[0]", "origin"),
    ],
)
def test_config_errors_name_the_key(key: str, value: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_with(**{key: value})
    assert info.value.path == path
    assert words in info.value.problem


def test_a_stray_quote_never_yields_a_client_chosen_address() -> None:
    # The client's quote pairs with the one in the proxy's element: unreadable, so the proxy
    # (the trusted peer) stands in; the address inside the client's part is never taken.
    line = 'for="198.51.100.66, for="[2001:db8:1::1]:4711"'
    assert resolver("forwarded").resolve("127.0.0.1", headers("Forwarded", line)) == "127.0.0.1"

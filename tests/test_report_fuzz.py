"""The dashboard faces the internet: whatever a browser (or anyone) sends to /reports gets a
page or a JSON reason with a 2xx/3xx/4xx status, never a server error, and nothing opens without
a genuine pass."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rooms.desk import Desk, DeskRules
from rooms.ids import UserID
from rooms.queue import QueueRules
from rooms.reporting import PASS, ReportRules
from rooms.store import SqliteDatabase
from widget_server.dashboard import Dashboard

HEAD = UserID("@kepala:lib")
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PAGES = ("/reports/", "/reports/chats", "/reports/live", "/reports/export.csv")
TEXT = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        ["", "week", "2026-11", "2026-11-01..2026-11-30", "9999-99", "..", "x" * 5000, "\x00"]
    ),
)


@dataclass
class Site:
    client: TestClient[web.Request, web.Application]
    desk: Desk
    pass_token: str
    chat_id: str
    dashboard: Dashboard


async def never(token: str, server: str) -> str | None:
    return None


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    db = SqliteDatabase(tmp_path_factory.mktemp("dashboard") / "refdesk.db")
    await db.open()
    desk = Desk(
        db,
        DeskRules(
            topics=("literature",),
            queue=QueueRules(librarians=("@ani:lib",), supervisors=(HEAD,)),
            reports=ReportRules(),
        ),
    )
    session, _ = await desk.start_session(
        desk.validate_form({"name": "Budi", "email": "b@example.org", "topic": "literature"})
    )
    await desk.visitor_message(session, "Halo <script>alert(1)</script>", "c1")
    await desk.end_session(session.id, by="visitor")
    app = web.Application()
    dashboard = Dashboard(desk, "Desk", {}, never)
    app.add_routes(dashboard.routes())
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    token, _ = await desk.reports.sign(HEAD, PASS)
    try:
        yield Site(client, desk, token, session.id, dashboard)
    finally:
        await client.close()
        await db.close()


@FUZZ
@given(
    page=st.sampled_from(PAGES),
    genuine=st.booleans(),
    token=TEXT,
    period=TEXT,
    figure=st.one_of(st.sampled_from(["missed", "rating", "hour", "team"]), TEXT),
    value=TEXT,
)
async def test_fuzz_dashboard_pages(
    site: Site, page: str, genuine: bool, token: str, period: str, figure: str, value: str
) -> None:
    params = {
        "s": site.pass_token if genuine else token,
        "period": period,
        "figure": figure,
        "value": value,
    }
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    resp = await site.client.get(f"{page}?{query}", allow_redirects=False)
    body = await resp.text()
    assert resp.status in (200, 400, 403), (resp.status, body[:300])
    if len(query) > 8000:  # over the HTTP server's line limit: refused before any page
        assert resp.status == 400
        return
    if not genuine and token != site.pass_token:
        assert resp.status == 403  # nothing without a genuine pass
    if resp.status != 200 or page != "/reports/export.csv":
        assert resp.content_type == "text/html"
        assert "<script>alert(1)" not in body  # what visitors wrote is escaped


@FUZZ
@given(chat=st.one_of(st.just("self"), st.text(min_size=1, max_size=80)), token=TEXT)
async def test_fuzz_chat_pages_and_links(site: Site, chat: str, token: str) -> None:
    chat_id = site.chat_id if chat == "self" else chat
    path = f"/reports/chats/{quote(chat_id, safe='')}?s={quote(site.pass_token)}"
    resp = await site.client.get(path)
    assert resp.status in (200, 404, 409), resp.status
    if chat == "self":
        assert resp.status == 200 and "&lt;script&gt;" in await resp.text()
    resp = await site.client.get(f"/reports/open?t={quote(token, safe='')}", allow_redirects=False)
    assert resp.status == 403  # a made-up link never opens the dashboard


@FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=30),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["access_token", "matrix_server_name", "x"]), inner, max_size=3
                )
            ),
            max_leaves=8,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
async def test_fuzz_openid_sign_in(site: Site, body: bytes) -> None:
    resp = await site.client.post("/reports/openid", data=body)
    assert resp.status in (400, 403, 429), resp.status
    answer = await resp.json()
    assert set(answer) == {"error", "message"}
    assert answer["error"] in ("bad_request", "invalid_token", "too_many_requests")


async def test_openid_checks_are_limited_per_address(site: Site) -> None:
    """Each check asks the homeserver: ten a minute from one address, then 429."""
    site.dashboard._checks.clear()
    body = {"access_token": "made-up", "matrix_server_name": "lib"}
    statuses = []
    for _ in range(12):
        resp = await site.client.post("/reports/openid", json=body)
        statuses.append(resp.status)
    assert statuses == [403] * 10 + [429] * 2
    assert int(resp.headers["Retry-After"]) > 0

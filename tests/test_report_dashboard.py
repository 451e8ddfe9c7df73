"""Reports end to end (issue 12): ``!report`` in Element for viewers only (summary, chart image,
the personal link in a private room), ``!tag`` in a chat, the dashboard in Chromium from that
link (figures, drill-down, transcript, CSV, the live page), forged and expired links refused,
and the dashboard pinned in Element: the widget API's OpenID token checked by the homeserver."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web
from PIL import Image
from playwright.async_api import Browser, expect

from refdesk.homeserver import free_port
from rooms.reporting import Reports
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_spine import open_chat
from tests.test_widget_browser import browser  # noqa: F401

LINK = re.compile(r"(https?://\S+/reports/open\?\S+)")


async def private_room_of(stack: Stack, user_id: str, purpose: str) -> str | None:
    """The private room of the bot and ``user_id`` for ``purpose``, by its alias."""
    bridge = stack.desk.bridge
    assert bridge is not None
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:16]
    alias = f"#{bridge.rooms.alias_prefix}{purpose}_{digest}:{stack.domain}"
    return await bridge.client.resolve_alias(alias)


async def served_and_tagged(stack: Stack, visitor: Visitor, sari: Librarian) -> str:
    """A chat Sari answers, tags and closes; the visitor rates it. Returns its id."""
    room_id = await open_chat(stack, visitor, sari, "Apakah ada buku tentang sejarah Batavia?")
    await sari.send(room_id, "Ada, di rak 959.8. Saya kirimkan tautannya.")
    await visitor.wait_for(lambda m: m["body"].startswith("Ada, di rak"))
    await sari.send(room_id, "!tag katalog read 2")
    await sari.wait_for(lambda s: s.room_id == room_id and s.body == "Tagged: katalog · READ 2.")
    await sari.send(room_id, "!close")
    assert visitor.session_id is not None
    session_id = visitor.session_id
    await eventually(lambda: _closed(stack, session_id))
    path = f"/api/sessions/{session_id}/feedback"
    status, _ = await visitor.request(
        "POST", path, {"rating": 5, "comment": "Cepat sekali, terima kasih"}
    )
    assert status == 200
    return session_id


async def _closed(stack: Stack, session_id: str) -> bool | None:
    session = await stack.desk.desk.get_session(session_id)
    return True if not session.is_open else None


async def test_report_in_element_and_the_dashboard_from_its_link(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    sari, kepala = librarians["sari"], librarians["kepala"]
    session_id = await served_and_tagged(stack, visitor, sari)

    # A librarian who is not a report viewer is refused.
    await sari.send(in_desk_room, "!report today")
    await sari.wait_for(
        lambda s: s.room_id == in_desk_room and s.body.startswith("Only the desk's report viewers")
    )
    await kepala.send(in_desk_room, "!report fortnight")
    await kepala.wait_for(lambda s: s.room_id == in_desk_room and "Unknown period" in s.body)

    # The supervisor (a viewer by default) gets the summary and the chart in the desk room…
    await kepala.send(in_desk_room, "!report today")
    bot = stack.config.bot_mxid
    summary = await kepala.wait_for(
        lambda s: s.room_id == in_desk_room and s.sender == bot and "Desk report" in s.body
    )
    assert summary.msgtype == "m.notice"
    assert "Per librarian" in summary.body and "Sari Librarian" in summary.body
    assert "katalog 1" in summary.body
    assert "<table>" in summary.source["content"]["formatted_body"]
    chart = await kepala.wait_for(
        lambda s: s.room_id == in_desk_room and s.source["content"].get("msgtype") == "m.image"
    )
    download = await kepala.client.download(mxc=chart.source["content"]["url"])
    image = Image.open(io.BytesIO(download.body))  # type: ignore[union-attr]
    assert image.format == "PNG" and image.size == (
        chart.source["content"]["info"]["w"],
        chart.source["content"]["info"]["h"],
    )
    image.save(tmp_path / "report.png")
    # …and the link goes to them alone, never into the shared desk room.
    private = await eventually(lambda: private_room_of(stack, stack.mxid("kepala"), "reports"))
    await kepala.wait_for_invite(private)
    await kepala.join(private)
    note = await kepala.wait_for(lambda s: s.room_id == private and "/reports/open?" in s.body)
    members = await stack.desk.bridge.client.members(private)  # type: ignore[union-attr]
    assert set(members) == {bot, stack.mxid("kepala")}
    assert not any("/reports/open" in body for body in sari.bodies(in_desk_room))
    match = LINK.search(note.body)
    assert match is not None
    link = match.group(1).replace("localhost", "127.0.0.1")

    context = await browser.new_context(viewport={"width": 412, "height": 915})  # a phone
    page = await context.new_page()
    outside: list[str] = []
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(stack.widget_url) else None,
    )
    try:
        await page.goto(link)
        await expect(page.locator("header h1")).to_contain_text("Reports")
        await expect(page.locator("a.card", has_text="Missed")).to_be_visible()
        assert await page.locator("svg").count() >= 4  # charts, inline
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        assert (tmp_path / "dashboard.png").stat().st_size > 20_000
        # The link opened once; the pages carry the pass, not the link.
        assert "t=" not in page.url and "s=" in page.url
        # Drill down: the answered chats, then this chat's transcript.
        await page.get_by_role("link", name=re.compile(r"^Answered \d")).click()
        await expect(page.locator("main h2").first).to_contain_text("answered")
        row = page.locator(f'a[href*="/reports/chats/{session_id}"]')
        await row.click()
        await expect(page.locator("main")).to_contain_text("sejarah Batavia")
        await expect(page.locator("main")).to_contain_text("katalog · READ 2")
        await expect(page.locator("main")).to_contain_text("Cepat sekali")
        # CSV of the day, documented columns, this chat in it.
        pass_token = parse_qs(urlsplit(page.url).query)["s"][0]
        async with aiohttp.ClientSession() as http:
            url = f"{stack.widget_url}/reports/export.csv"
            async with http.get(url, params={"s": pass_token, "period": "today"}) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/csv")
                text = (await response.read()).decode("utf-8-sig")
            rows = {r["chat_id"]: r for r in csv.DictReader(io.StringIO(text))}
            assert rows[session_id]["tags"] == "katalog" and rows[session_id]["rating"] == "5"
            # The live page: who is on duty now.
            live = f"{stack.widget_url}/reports/live"
            async with http.get(live, params={"s": pass_token}) as response:
                assert response.status == 200 and "On duty" in await response.text()
            # Without the pass, or with a forged one: refused, with a way forward.
            for params in ({}, {"s": pass_token[:-2] + "xx"}):
                async with http.get(f"{stack.widget_url}/reports/", params=params) as response:
                    assert response.status == 403
                    assert "not valid" in await response.text()
            # The link itself cannot be used as a pass, nor a pass as a link.
            token = parse_qs(urlsplit(link).query)["t"][0]
            async with http.get(f"{stack.widget_url}/reports/", params={"s": token}) as response:
                assert response.status == 403
            async with http.get(
                f"{stack.widget_url}/reports/open", params={"t": pass_token}, allow_redirects=False
            ) as response:
                assert response.status == 403
            # An expired link (signed by the same desk half an hour ago) is refused as expired.
            desk = stack.desk.desk
            then = desk.clock() - timedelta(minutes=30)
            old = Reports(
                desk.db,
                desk.outbox,
                lambda: then,
                desk.reports.rules,
                timezone=desk.reports.timezone,
                supervisors=desk.reports.supervisors,
                open_seconds=None,
            )
            expired, _ = await old.sign(stack.mxid("kepala"))
            async with http.get(f"{stack.widget_url}/reports/open", params={"t": expired}) as r:
                assert r.status == 403 and "expired" in await r.text()
    finally:
        await context.close()
    assert outside == []  # no third-party request


async def openid_token(stack: Stack, librarian: Librarian) -> dict[str, str]:
    """What Element's widget API hands a widget: an OpenID token from the homeserver."""
    url = f"{stack.synapse.url}/_matrix/client/v3/user/{librarian.user_id}/openid/request_token"
    headers = {"Authorization": f"Bearer {librarian.client.access_token}"}
    async with aiohttp.ClientSession() as http, http.post(url, json={}, headers=headers) as r:
        assert r.status == 200
        return dict(await r.json())


async def test_the_dashboard_pinned_in_element_signs_in_with_openid(
    stack: Stack,
    librarians: dict[str, Librarian],
    browser: Browser,  # noqa: F811
    in_desk_room: str,  # noqa: F811
) -> None:
    sari, kepala = librarians["sari"], librarians["kepala"]
    await sari.send(in_desk_room, "!report pin")
    await sari.wait_for(
        lambda s: s.room_id == in_desk_room and s.body.startswith("Only the desk's report viewers")
    )
    await kepala.send(in_desk_room, "!report pin")
    await kepala.wait_for(lambda s: s.room_id == in_desk_room and "is pinned" in s.body)

    async def widget_state() -> dict[str, Any] | None:
        state = await kepala.client.room_get_state_event(
            in_desk_room, "im.vector.modular.widgets", "refdesk_reports"
        )
        content = getattr(state, "content", None)
        return content if content else None

    widget = await eventually(widget_state)
    assert widget["type"] == "m.custom"
    assert widget["url"].endswith("/reports/widget?widgetId=$matrix_widget_id")
    endpoint = f"{stack.widget_url}/reports/openid"
    async with aiohttp.ClientSession() as http:
        mine = await openid_token(stack, kepala)
        theirs = await openid_token(stack, sari)
        body = {"access_token": theirs["access_token"], "matrix_server_name": stack.domain}
        async with http.post(endpoint, json=body) as response:  # another user's token
            assert response.status == 403
            assert (await response.json())["error"] == "not_a_viewer"
        for bad in (
            {"access_token": "made-up", "matrix_server_name": stack.domain},
            {"access_token": mine["access_token"], "matrix_server_name": "evil.example"},
        ):
            async with http.post(endpoint, json=bad) as response:
                assert response.status == 403
                assert (await response.json())["error"] == "invalid_token"
        async with http.post(endpoint, data="{not json") as response:
            assert response.status == 400
        body = {"access_token": mine["access_token"], "matrix_server_name": stack.domain}
        async with http.post(endpoint, json=body) as response:  # the viewer's own
            assert response.status == 200, await response.text()
            assert (await response.json())["url"].startswith("/reports/?s=")

    # In a browser: Element's side of the widget API, played by the parent page.
    # Element's page: another origin than the desk's, served from loopback too (browsers keep
    # pages of the internet from framing local addresses).
    port = free_port()
    parent = f"http://127.0.0.1:{port}/"
    host = (
        "<!doctype html><title>Element</title><script>"
        "window.addEventListener('message', function (e) {"
        "  var m = e.data; if (!m || m.api !== 'fromWidget') return;"
        "  var frame = document.querySelector('iframe').contentWindow;"
        "  if (m.action === 'get_openid') {"
        "    frame.postMessage(Object.assign({}, m, {response: Object.assign({state: 'allowed'},"
        f"      {json.dumps(mine)})}}), '*');"
        "  } else { frame.postMessage(Object.assign({}, m, {response: {}}), '*'); }"
        "});"
        "</script>"
        f'<iframe src="{stack.widget_url}/reports/widget?widgetId=refdesk_reports&parentUrl='
        f'{parent}" width="800" height="900"></iframe>'
    )
    app = web.Application()
    app.router.add_get("/", partial(_html, host))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(parent)
        frame = page.frame_locator("iframe")
        await expect(frame.locator("header h1")).to_contain_text("Reports", timeout=20_000)
        await expect(frame.locator("a.card", has_text="Chats")).to_be_visible()
    finally:
        await context.close()
        await runner.cleanup()


async def _html(text: str, request: web.Request) -> web.Response:
    return web.Response(text=text, content_type="text/html")


async def test_a_report_asked_while_the_homeserver_is_down_arrives_once_after_restarts(
    stack: Stack,
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    """``!report`` is a stored intent: asked (as the command does) with the homeserver down,
    it survives a restart of refdesk and of Synapse, then arrives once, with its chart."""
    kepala = librarians["kepala"]
    config = stack.config
    bot = config.bot_mxid
    before = len(
        [b for b in kepala.bodies(in_desk_room, bot) if b.startswith("📊 Desk report 2026-01")]
    )
    await stack.synapse.stop()
    try:
        desk = stack.desk.desk
        period = desk.reports.period("2026-01")
        await desk.transaction(
            lambda tx: desk.reports.request(in_desk_room, period, stack.mxid("kepala"))  # type: ignore[arg-type]
        )
        await stack.stop_refdesk()
        await stack.start_refdesk()
    finally:
        await stack.synapse.start()
        await stack.restore(config)
    await kepala.wait_for(
        lambda s: s.room_id == in_desk_room and s.body.startswith("📊 Desk report 2026-01"),
        timeout=90,
    )
    await kepala.wait_for(
        lambda s: s.room_id == in_desk_room and s.body == "Chart of the desk report 2026-01",
        timeout=60,
    )
    await eventually(lambda: _no_report_pending(stack))
    await kepala.sync()
    reports = [
        b for b in kepala.bodies(in_desk_room, bot) if b.startswith("📊 Desk report 2026-01")
    ]
    assert len(reports) == before + 1


async def _no_report_pending(stack: Stack) -> bool | None:
    row = await stack.desk.db.fetchone(
        "SELECT COUNT(*) AS n FROM intents WHERE kind = 'report' AND done_at IS NULL"
    )
    return True if row is not None and row["n"] == 0 else None

"""Privacy in the widget (issue 13): no tracking, the privacy line before the first message,
and a visitor deleting their own ended chat from the end card."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from playwright.async_api import Browser, expect

from tests.conftest import Stack
from tests.helpers import Librarian
from tests.test_desk_in_element import eventually
from tests.test_privacy import nothing_pending, room_bodies
from tests.test_widget_browser import (  # noqa: F401
    audit,
    browser,
    bubbles,
    demo_page,
    open_form,
    start_chat,
    stored_session_id,
)
from tests.test_widget_browser_more import join_session


async def test_no_tracking_nothing_leaves_the_desk_and_nothing_stays(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    """A whole visit — the page, the widget, a chat, its end — makes no request outside the
    desk's origin, sets no cookie, and keeps only the chat's token in localStorage, gone when
    the chat ends."""
    dewi = librarians["dewi"]
    origin = urlsplit(stack.widget_url)
    requests: list[str] = []
    async with demo_page(browser, stack, locale="id-ID") as page:
        page.on("request", lambda request: requests.append(request.url))
        await page.reload()  # the page's own load, watched from its first request
        await start_chat(page, "Sinta", "sinta@example.org", "Ada kamus Jawa?", "other")
        stored = await page.evaluate("() => Object.assign({}, localStorage)")
        assert len(stored) == 1  # the chat: its id, token and what is still to be sent
        (key,) = stored
        assert key == f"refdesk:{stack.widget_url}" and '"token":' in stored[key]
        _, room_id = await join_session(stack, page, dewi)
        await dewi.send(room_id, "Ada, di rak 4.")
        await expect(bubbles(page, "librarian")).to_have_count(1)
        await page.locator("[data-refdesk=end]").click()
        await page.locator("[data-refdesk=end-confirm]").click()
        await expect(page.locator("[data-refdesk=ended]")).to_be_visible()
        assert await page.evaluate("() => localStorage.length") == 0
        assert await page.evaluate("async () => (await indexedDB.databases()).length") == 0
        assert await page.evaluate("() => document.cookie") == ""
        assert await page.context.cookies() == []
    assert requests
    outside = [
        u for u in requests if urlsplit(u)[:2] != origin[:2] or urlsplit(u).port != origin.port
    ]
    assert outside == [], outside


async def test_the_privacy_line_says_how_long_and_links_the_librarys_notice(
    stack: Stack,
    browser: Browser,  # noqa: F811
) -> None:
    ctx = stack.desk.widget
    assert ctx is not None
    saved = ctx.settings
    ctx.settings = dataclasses.replace(saved, privacy_link="https://library.example/privacy")
    try:
        async with demo_page(browser, stack, locale="id-ID") as page:
            await open_form(page)
            line = page.locator("[data-refdesk=privacy]")
            await expect(line).to_contain_text("Percakapan disimpan 180 hari, lalu dihapus.")
            link = line.locator("a")
            await expect(link).to_have_text("Kebijakan privasi")
            await expect(link).to_have_attribute("href", "https://library.example/privacy")
            await page.locator("[data-refdesk=language]").click()
            await expect(line).to_contain_text("Chats are kept for 180 days, then deleted.")
        ctx.settings = dataclasses.replace(
            saved, retention_days=None, privacy_notice={"id": "Kami menjaga data Anda.", "en": "x"}
        )
        async with demo_page(browser, stack, locale="id-ID") as page:
            await open_form(page)
            line = page.locator("[data-refdesk=privacy]")
            await expect(line).to_contain_text("Kami menjaga data Anda. Perpustakaan menyimpan")
            await expect(line.locator("a")).to_have_count(0)
    finally:
        ctx.settings = saved


async def test_the_visitor_deletes_the_ended_chat_from_the_end_card(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    agus = librarians["agus"]
    async with demo_page(browser, stack, locale="id-ID") as page:
        await start_chat(page, "Wulan", "wulan@example.org", "Skripsi tahun 2019?", "literature")
        session_id, room_id = await join_session(stack, page, agus)
        await agus.send(room_id, "Ada di repositori.")
        await expect(bubbles(page, "librarian")).to_have_count(1)
        await agus.send(room_id, "!close")
        await expect(page.locator("[data-refdesk=ended]")).to_be_visible()
        await page.locator("[data-refdesk=erase]").click()
        await expect(page.locator("[data-refdesk=erase-cancel]")).to_be_focused()
        await audit(page, "deleting the chat")
        await page.locator("[data-refdesk=erase-cancel]").click()
        await expect(page.locator("[data-refdesk=erase]")).to_be_focused()
        await page.locator("[data-refdesk=erase]").click()
        await page.locator("[data-refdesk=erase-confirm]").click()
        erased = page.locator("[data-refdesk=erased]")
        await expect(erased).to_have_text("Percakapan ini telah dihapus.")
        await expect(erased).to_be_focused()
        await audit(page, "chat deleted")
        await expect(page.locator("[data-refdesk=new]")).to_be_visible()
    session = await stack.desk.desk.get_session(session_id)  # type: ignore[arg-type]
    assert session.form.name == "" and session.form.email == ""
    await eventually(lambda: nothing_pending(stack.desk.db, session_id))
    assert await room_bodies(agus, room_id) == []  # the messages redacted in the room too

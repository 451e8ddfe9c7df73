"""The real widget in headless Chromium, talking to a nio librarian through a real Synapse."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import Stack
from tests.helpers import Librarian
from tests.test_spine import room_of

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


_AXE = Axe()
# WCAG 2.1 A and AA, the widget only (the host page is the library's).
_WCAG = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


async def audit(page: Page, screen: str) -> None:
    """axe-core's WCAG 2.1 A/AA rules on the widget as it is now: no violation (issue 14)."""
    results = await _AXE.run(page, context={"include": [["refdesk-widget"]]}, options=_WCAG)
    assert results.violations_count == 0, f"{screen}:\n{results.generate_report()}"


@asynccontextmanager
async def demo_page(browser: Browser, stack: Stack, **options: Any) -> AsyncIterator[Page]:
    """A new visit (a browser context of its own, ``options`` as Playwright takes them) on the
    demo page; the context goes at the end."""
    context = await browser.new_context(**options)
    try:
        page = await context.new_page()
        await page.goto(f"{stack.widget_url}/demo")
        yield page
    finally:
        await context.close()


async def stored_session_id(page: Page) -> str:
    """The chat's id as the widget keeps it (waiting for the widget to have started one)."""
    found = await page.wait_for_function(
        "() => { for (const k of Object.keys(localStorage)) "
        "{ if (/^refdesk:[^:]+:\\/\\/[^:]+(:\\d+)?$/.test(k)) return localStorage.getItem(k); } }"
    )
    return str(json.loads(await found.json_value())["session_id"])


async def open_form(page: Page) -> None:
    """Open the widget and get to the pre-chat form (past the FAQ screen when there is one)."""
    await page.locator("[data-refdesk=launcher]").click()
    first = page.locator("[data-refdesk=ask]:visible, [data-refdesk=form]:visible").first
    await expect(first).to_be_visible()
    ask = page.locator("[data-refdesk=ask]")
    if await ask.is_visible():
        await ask.click()
    await expect(page.locator("[data-refdesk=form]")).to_be_visible()


async def start_chat(page: Page, name: str, email: str, question: str, topic: str) -> None:
    """From the widget's first screen to a started chat."""
    await open_form(page)
    form = page.locator("[data-refdesk=form]")
    await form.locator("[name=name]").fill(name)
    await form.locator("[name=email]").fill(email)
    await form.locator("[name=topic]").select_option(topic)
    await form.locator("[name=question]").fill(question)
    await page.locator("[data-refdesk=start]").click()
    await expect(bubbles(page, "visitor")).to_have_count(1)


def bubbles(page: Page, origin: str | None = None):  # type: ignore[no-untyped-def]
    selector = "[data-refdesk=message]" + (f"[data-origin={origin}]" if origin else "")
    return page.locator(selector)


async def test_visitor_and_librarian_chat_in_the_browser(
    stack: Stack, browser: Browser, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    context = await browser.new_context(locale="id-ID", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await open_form(page)
        await audit(page, "form")
        form = page.locator("[data-refdesk=form]")
        # Required fields are checked in the browser: nothing is sent without them.
        await page.locator("[data-refdesk=start]").click()
        await expect(form).to_be_visible()
        await expect(form.locator("[aria-invalid=true]").first).to_be_visible()
        await audit(page, "form errors")
        await form.locator("[name=name]").fill("Budi Santoso")
        await form.locator("[name=email]").fill("budi@example.org")
        await form.locator("[name=member_number]").fill("A-12345")
        await form.locator("[name=topic]").select_option("membership")
        await form.locator("[name=question]").fill("Bagaimana cara memperpanjang kartu anggota?")
        await page.locator("[data-refdesk=start]").click()
        await expect(bubbles(page, "visitor")).to_have_count(1)
        await audit(page, "waiting")

        session_id = await stored_session_id(page)
        room_id = await room_of(stack, session_id)
        await sari.wait_for_invite(room_id)
        await sari.join(room_id)
        ghost = stack.mxid(f"refdesk_v_{session_id}")
        await sari.wait_for(
            lambda s: (
                s.room_id == room_id
                and s.sender == ghost
                and s.body == "Bagaimana cara memperpanjang kartu anggota?"
            )
        )

        await sari.send(room_id, "Selamat siang, Budi. Kartu bisa diperpanjang di loket 2.")
        reply = bubbles(page, "librarian").first
        await expect(reply.locator("[data-refdesk=body]")).to_have_text(
            "Selamat siang, Budi. Kartu bisa diperpanjang di loket 2."
        )
        await expect(reply.locator("[data-refdesk=sender]")).to_have_text("Sari Librarian")
        await audit(page, "chat")

        await page.locator("[data-refdesk=input]").fill("Terima kasih! Apakah perlu membawa KTP?")
        await page.locator("[data-refdesk=input]").press("Enter")
        await sari.wait_for(
            lambda s: s.room_id == room_id and s.body == "Terima kasih! Apakah perlu membawa KTP?"
        )

        # The librarian answers while the visitor is away; the reload shows everything, once.
        await page.goto("about:blank")
        await sari.send(room_id, "Ya, bawa KTP dan kartu lama.")
        await page.goto(f"{stack.widget_url}/demo")
        await expect(bubbles(page, "librarian")).to_have_count(2)
        await expect(bubbles(page, "visitor")).to_have_count(2)
        chat = page.locator("[data-refdesk=message]:not([data-origin=desk]) [data-refdesk=body]")
        texts = await chat.all_inner_texts()
        assert texts == [
            "Bagaimana cara memperpanjang kartu anggota?",
            "Selamat siang, Budi. Kartu bisa diperpanjang di loket 2.",
            "Terima kasih! Apakah perlu membawa KTP?",
            "Ya, bawa KTP dan kartu lama.",
        ]
        ids = await bubbles(page).evaluate_all("els => els.map(e => Number(e.dataset.id))")
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        # The desk told the visitor who serves them when Sari answered.
        desk_lines = await page.locator(
            "[data-refdesk=message][data-origin=desk] [data-refdesk=body]"
        ).all_inner_texts()
        assert "Sari Librarian sekarang melayani Anda." in desk_lines

        # The visitor ends the chat: the room gets the notice, the widget offers a new one.
        await page.locator("[data-refdesk=end]").click()
        await page.locator("[data-refdesk=end-confirm]").click()
        await expect(page.locator("[data-refdesk=ended]")).to_be_visible()
        await sari.wait_for(
            lambda s: s.room_id == room_id and s.msgtype == "m.notice" and "mengakhiri" in s.body
        )
        await expect(page.locator("[data-refdesk=new]")).to_be_visible()
        await audit(page, "end card")
        assert (await stack.desk.desk.get_session(session_id)).state == "closed"
    finally:
        await context.close()

    # The widget talked to nobody but its own server.
    origins = {urlsplit(url).netloc for url in requested if not url.startswith(("data:", "about:"))}
    assert origins == {urlsplit(stack.widget_url).netloc}
    assert errors == []


async def test_network_loss_and_blocked_websocket(
    stack: Stack, browser: Browser, librarians: dict[str, Librarian]
) -> None:
    dewi = librarians["dewi"]
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await start_chat(
            page, "Rina", "rina@example.org", "I cannot log in to the e-journals.", "eresources"
        )
        session_id = await stored_session_id(page)
        room_id = await room_of(stack, session_id)
        await dewi.wait_for_invite(room_id)
        await dewi.join(room_id)
        await dewi.wait_for(lambda s: s.room_id == room_id and "e-journals" in s.body)

        # The network drops: the visitor keeps typing, the librarian keeps answering.
        await context.set_offline(True)
        await page.locator("[data-refdesk=input]").fill("Written while offline")
        await page.locator("[data-refdesk=send]").click()
        await dewi.send(room_id, "Try clearing your cookies.")
        await expect(bubbles(page, "visitor")).to_have_count(2)
        await context.set_offline(False)
        await dewi.wait_for(lambda s: s.room_id == room_id and s.body == "Written while offline")
        await expect(bubbles(page, "librarian")).to_have_count(1)

        # A network that blocks WebSockets: the widget falls back to long polling.
        await page.route_web_socket("**/ws", lambda ws: ws.close())
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if "wait=" in r.url else None)
        await page.reload()
        await expect(bubbles(page, "visitor")).to_have_count(2)
        await dewi.send(room_id, "Reply over long polling")
        await expect(bubbles(page, "librarian")).to_have_count(2, timeout=40_000)
        await page.locator("[data-refdesk=input]").fill("Sent over plain HTTP")
        await page.locator("[data-refdesk=send]").click()
        await dewi.wait_for(lambda s: s.room_id == room_id and s.body == "Sent over plain HTTP")
        assert polls, "the widget never fell back to long polling"
    finally:
        await context.close()
    ghost = stack.mxid(f"refdesk_v_{session_id}")
    assert dewi.bodies(room_id, sender=ghost) == [
        "I cannot log in to the e-journals.",
        "Written while offline",
        "Sent over plain HTTP",
    ]

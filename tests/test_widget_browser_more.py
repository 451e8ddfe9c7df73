"""The widget in Chromium for the rest of the visit: FAQ and greeting, verification inside the
chat, rating and transcript at the end, and an offline message reopened from its email."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import parse_qs, urlsplit

from playwright.async_api import Browser, Page, expect

from tests.conftest import MailSink, Stack
from tests.helpers import Librarian
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_spine import room_of
from tests.test_widget_browser import (  # noqa: F401
    browser,
    bubbles,
    open_form,
    start_chat,
    stored_session_id,
)


async def join_session(stack: Stack, page: Page, librarian: Librarian) -> tuple[str, str]:
    session_id = await stored_session_id(page)
    room_id = await room_of(stack, session_id)
    if librarian.memberships.get(room_id) != "join":
        await librarian.wait_for_invite(room_id)
        await librarian.join(room_id)
    return session_id, room_id


async def test_faq_search_and_greeting(stack: Stack, browser: Browser) -> None:  # noqa: F811
    desk = stack.desk.desk
    rules = desk.rules
    desk.rules = dataclasses.replace(
        rules, greeting={"id": "Selamat datang, {visitor}!", "en": "Welcome, {visitor}!"}
    )
    context = await browser.new_context(locale="id-ID", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await page.locator("[data-refdesk=launcher]").click()
        await expect(page.locator("[data-refdesk=faq]")).to_be_visible()
        await page.locator("[data-refdesk=faq-search]").fill("kartu anggota")
        item = page.locator("[data-refdesk=faq-item]").first
        await expect(item).to_contain_text("Bagaimana cara membuat kartu anggota?")
        await item.click()
        await expect(page.locator("[data-refdesk=faq-answer]").first).to_contain_text(
            "loket keanggotaan"
        )
        await page.locator("[data-refdesk=ask]").click()
        form = page.locator("[data-refdesk=form]")
        await form.locator("[name=name]").fill("Lina")
        await form.locator("[name=email]").fill("lina@example.org")
        await form.locator("[name=topic]").select_option("membership")
        await form.locator("[name=question]").fill("Kartu saya hilang.")
        await page.locator("[data-refdesk=start]").click()
        greeting = bubbles(page, "desk").filter(has_text="Selamat datang, Lina!")
        await expect(greeting).to_have_count(1)
    finally:
        desk.rules = rules
        await context.close()


async def test_verification_card_in_the_chat(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    dewi = librarians["dewi"]
    context = await browser.new_context(locale="id-ID")
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await start_chat(
            page, "Budi Santoso", "budi@example.org", "Perpanjang pinjaman", "membership"
        )
        _, room_id = await join_session(stack, page, dewi)
        await dewi.send(room_id, "!verify")
        card = page.locator("[data-refdesk=verify]")
        await expect(card).to_be_visible()
        await card.locator("[name=member_number]").fill("A-123")
        await card.locator("[name=date_of_birth]").fill("1990-05-01")
        await card.locator("[data-refdesk=verify-submit]").click()
        notice = await dewi.wait_for(
            lambda s: s.room_id == room_id and s.body.startswith("Verified")
        )
        assert "Budi Santoso" in notice.body and "1990" not in notice.body
        await expect(card).to_be_hidden()
        stored = await page.evaluate("() => JSON.stringify(localStorage)")
        assert "1990-05-01" not in stored  # the secret is not kept in the browser either
    finally:
        await context.close()


async def test_rating_and_transcript_after_the_chat(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
    mail_sink: MailSink,
) -> None:
    agus = librarians["agus"]
    address = "rating.visitor@example.org"
    context = await browser.new_context(locale="en-US", accept_downloads=True)
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await start_chat(page, "Rani", address, "Where are the theses?", "literature")
        session_id, room_id = await join_session(stack, page, agus)
        await agus.send(room_id, "Second floor, room 204.")
        await expect(bubbles(page, "librarian")).to_have_count(1)
        await agus.send(room_id, "!close")
        await expect(page.locator("[data-refdesk=ended]")).to_be_visible()

        # The rating is stored the moment a star is tapped.
        await page.locator("[data-refdesk=star][data-value='4']").click()
        await eventually(lambda: feedback_of(stack, session_id))
        await page.locator("[data-refdesk=comment]").fill("Quick and clear")
        await page.locator("[data-refdesk=comment-send]").click()
        # The thanks shows from the rating on; the comment box goes once the comment is stored.
        await expect(page.locator("[data-refdesk=comment]")).to_be_hidden()
        await expect(page.locator("[data-refdesk=thanks]")).to_be_visible()
        stored = await stack.desk.desk.feedback(session_id)  # type: ignore[arg-type]
        assert stored is not None and stored.rating == 4 and stored.comment == "Quick and clear"
        assert stored.librarian == stack.mxid("agus")

        async with page.expect_download() as download_info:
            await page.locator("[data-refdesk=transcript]").click()
        download = await download_info.value
        path = await download.path()
        assert "Second floor, room 204." in path.read_text(encoding="utf-8")

        # This desk sends email, so the end card offers it.
        await expect(page.locator("[data-refdesk=transcript-email]")).to_be_visible()
        await page.locator("[data-refdesk=transcript-email]").click()
        await expect(page.locator("[data-refdesk=transcript-status]")).to_contain_text(address)
        await eventually(lambda: mail_sink.to(address))
        # A reload does not ask for the rating again.
        await page.reload()
        await expect(page.locator("[data-refdesk=thanks]")).to_be_visible()
    finally:
        await context.close()


async def test_no_transcript_email_on_a_desk_without_email(
    stack: Stack,
    browser: Browser,  # noqa: F811
) -> None:
    """A desk that sends no email does not offer to email the transcript (the widget used to
    offer it, get a 503 and drop the button without a word); the download stays."""
    desk = stack.desk.desk
    rules = desk.rules
    desk.rules = dataclasses.replace(rules, email_enabled=False)
    context = await browser.new_context(locale="id-ID", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await start_chat(page, "Rani", "rani@example.org", "Ada buku tentang batik?", "literature")
        await expect(bubbles(page, "visitor")).to_have_count(1)
        await page.locator("[data-refdesk=end]").click()
        await page.locator("[data-refdesk=end-confirm]").click()
        await expect(page.locator("[data-refdesk=ended]")).to_be_visible()
        await expect(page.locator("[data-refdesk=transcript]")).to_be_visible()
        await expect(page.locator("[data-refdesk=transcript-email]")).to_be_hidden()
    finally:
        desk.rules = rules
        await context.close()


async def feedback_of(stack: Stack, session_id: str) -> bool:
    return await stack.desk.desk.feedback(session_id) is not None  # type: ignore[arg-type]


async def test_offline_message_and_its_email_link_in_the_browser(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
    mail_sink: MailSink,
    in_desk_room: str,  # noqa: F811
    nobody_on_duty: None,
) -> None:
    sari = librarians["sari"]
    address = "offline.browser@example.org"
    context = await browser.new_context(locale="id-ID")
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await open_form(page)
        await expect(page.locator("[data-refdesk=closed-notice]")).to_be_visible()
        form = page.locator("[data-refdesk=form]")
        await form.locator("[name=name]").fill("Tono")
        await form.locator("[name=email]").fill(address)
        await form.locator("[name=topic]").select_option("other")
        await form.locator("[name=question]").fill("Apakah ada koleksi peta lama?")
        await page.locator("[data-refdesk=start]").click()
        await expect(page.locator("[data-refdesk=offline-sent]")).to_be_visible()
        session_id = await stored_session_id(page)
    finally:
        await context.close()  # the visitor leaves; a reply they would see live is not mailed
    room_id = await room_of(stack, session_id)
    await sari.join(room_id)  # from the Space: nobody was rung
    await sari.send(room_id, "Ada, di lantai 3. Silakan datang hari kerja.")
    await eventually(lambda: mail_sink.to(address), timeout=20)

    text = mail_sink.to(address)[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    match = re.search(r"http://\S+refdesk_resume=\S+", text)
    assert match is not None
    link = match.group(0).replace("localhost", "127.0.0.1")
    assert "refdesk_resume" in parse_qs(urlsplit(link).query)
    # The link opens the conversation, with its history, in another browser.
    elsewhere = await browser.new_context(locale="id-ID")
    page = await elsewhere.new_page()
    try:
        await page.goto(link)
        reply = bubbles(page, "librarian").filter(has_text="Ada, di lantai 3.")
        await expect(reply).to_have_count(1)
        await expect(bubbles(page, "visitor")).to_have_count(1)
        assert "refdesk_resume" not in page.url
    finally:
        await elsewhere.close()

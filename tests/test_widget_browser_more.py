"""The widget in Chromium for the rest of the visit: FAQ and greeting, verification inside the
chat, rating and transcript at the end, and an offline message reopened from its email."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, Page, expect

from tests.conftest import MailSink, Stack
from tests.helpers import Librarian
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_hours import hours
from tests.test_spine import room_of
from tests.test_widget_browser import (  # noqa: F401
    audit,
    browser,
    bubbles,
    demo_page,
    open_form,
    start_chat,
    stored_session_id,
)
from widget_server.settings import Invitation


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
        await audit(page, "FAQ")
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
        await audit(page, "verification card")
        await card.locator("[name=member_number]").fill("A-123")
        # The date reads in the widget's language: day, month by name, year (issue 14).
        date = card.locator("[data-refdesk=date_of_birth]")
        await expect(date.locator("legend")).to_have_text("Tanggal lahir")
        month = date.get_by_label("Bulan")
        assert "Mei" in await month.locator("option").all_inner_texts()
        await date.get_by_label("Tanggal", exact=True).fill("31")
        await month.select_option(label="Februari")
        await date.get_by_label("Tahun").fill("1990")
        await card.locator("[data-refdesk=verify-submit]").click()
        error = card.locator("[data-refdesk=field-error][data-field=date_of_birth]")
        await expect(error).to_have_text("Tanggal tidak valid.")  # no 31 February
        await expect(date.get_by_label("Tanggal", exact=True)).to_be_focused()
        await date.get_by_label("Tanggal", exact=True).fill("1")
        await month.select_option(label="Mei")
        await expect(error).to_be_hidden()
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
        # An ended chat is not kept in the browser (a library's shared computer): a reload
        # shows nothing of it (issue 13).
        assert await page.evaluate("() => localStorage.length") == 0
        await page.reload()
        await expect(page.locator("[data-refdesk=launcher]")).to_be_visible()
        await expect(page.locator("[data-refdesk=ended]")).to_be_hidden()
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
        await audit(page, "offline form")
        form = page.locator("[data-refdesk=form]")
        await form.locator("[name=name]").fill("Tono")
        await form.locator("[name=email]").fill(address)
        await form.locator("[name=topic]").select_option("other")
        await form.locator("[name=question]").fill("Apakah ada koleksi peta lama?")
        await page.locator("[data-refdesk=start]").click()
        await expect(page.locator("[data-refdesk=offline-sent]")).to_be_visible()
        await audit(page, "offline message sent")
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


# The contrast of two colours (WCAG 2.1), in the page, from computed CSS colours.
_CONTRAST = """([a, b]) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const lin = (v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    const [r, g, b] = rgb(c).map(lin);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}"""
_FOCUSED = """() => {
  const el = document.querySelector('refdesk-widget').shadowRoot.activeElement;
  if (!el) return null;
  const s = getComputedStyle(el);
  const ring = s.boxShadow.match(/rgba?\\([^)]*\\)/);
  return {ref: el.getAttribute('data-refdesk') || el.name || el.tagName, outline: s.outlineColor,
          style: s.outlineStyle, width: parseFloat(s.outlineWidth), inner: ring && ring[0],
          header: !!el.closest('.hd')};
}"""


async def test_focus_ring_and_field_borders_stand_out(stack: Stack, browser: Browser) -> None:  # noqa: F811
    """WCAG 2.1 AA 1.4.11: the focus ring and the fields' borders have 3:1 against what they
    sit on (white in the panel, the desk's teal in the header) — issue 14."""
    teal, white = "rgb(13, 88, 104)", "rgb(255, 255, 255)"
    async with demo_page(
        browser, stack, locale="en-US", viewport={"width": 1280, "height": 800}
    ) as page:
        await page.locator("[data-refdesk=launcher]").click()
        await page.locator("[data-refdesk=ask]").click()
        form = page.locator("[data-refdesk=form]")
        await expect(form).to_be_visible()
        border = await form.locator("[name=email]").evaluate(
            "e => getComputedStyle(e).borderTopColor"
        )
        assert await page.evaluate(_CONTRAST, [border, white]) >= 3, border
        seen: dict[str, dict[str, object]] = {}
        await page.locator("[data-refdesk=language]").focus()
        await page.keyboard.press("Tab")  # from here on the keyboard moves the focus
        await page.keyboard.press("Shift+Tab")
        for _ in range(14):  # through the header's buttons and the form's fields, by keyboard
            focused = await page.evaluate(_FOCUSED)
            if focused is None:
                break  # on a desktop the panel is not modal: Tab goes on into the page
            seen[str(focused["ref"])] = focused
            await page.keyboard.press("Tab")
        assert len(seen) >= 5 and any(f["header"] for f in seen.values()), seen
        for ref, ring in seen.items():
            assert ring["style"] == "solid" and float(str(ring["width"])) >= 2, (ref, ring)
            against = teal if ring["header"] else white
            # The outline, or the ring inside it, must stand out from the surface.
            best = max(
                await page.evaluate(_CONTRAST, [ring["outline"], against]),
                await page.evaluate(_CONTRAST, [ring["inner"] or against, against]),
            )
            assert best >= 3, (ref, ring)


async def test_on_a_phone_the_open_panel_keeps_the_keyboard_focus(
    stack: Stack,
    browser: Browser,  # noqa: F811
) -> None:
    """The full-screen panel is a modal dialog: Tab and Shift+Tab go round inside it and never
    reach the page's links behind it (issue 14); on a desktop the panel is not modal."""
    context = await browser.new_context(locale="id-ID", viewport={"width": 390, "height": 844})
    page = await context.new_page()
    inside = (
        "() => document.activeElement && document.activeElement.tagName === 'REFDESK-WIDGET'"
        " && !!document.querySelector('refdesk-widget').shadowRoot.activeElement"
        "?.closest('[data-refdesk=panel]')"
    )
    try:
        await page.goto(f"{stack.widget_url}/demo")
        await page.locator("[data-refdesk=launcher]").click()
        panel = page.locator("[data-refdesk=panel]")
        await expect(panel).to_have_attribute("aria-modal", "true")
        await page.locator("[data-refdesk=ask]").click()
        await expect(page.locator("[data-refdesk=form]")).to_be_visible()
        visited = set()
        for key in ["Tab"] * 25 + ["Shift+Tab"] * 25:
            await page.keyboard.press(key)
            assert await page.evaluate(inside), key
            visited.add(
                await page.evaluate(
                    "() => { const e = document.querySelector('refdesk-widget')"
                    ".shadowRoot.activeElement; return e.name || e.dataset.refdesk || e.tagName; }"
                )
            )
        assert {"name", "email", "question", "start"} <= visited, visited
        await page.keyboard.press("Escape")  # closing gives the page its focus back
        await expect(panel).to_be_hidden()
        await page.set_viewport_size({"width": 1280, "height": 800})
        await page.locator("[data-refdesk=launcher]").click()
        await expect(panel).to_be_visible()
        await expect(panel).not_to_have_attribute("aria-modal", "true")
    finally:
        await context.close()


async def test_times_are_the_librarys_and_named_when_the_browser_is_elsewhere(
    stack: Stack,
    browser: Browser,  # noqa: F811
) -> None:
    """The room and the transcript say 03.35 WIB: so does the widget, in any browser zone, and
    it names the zone when the browser is in another one (issue 14)."""
    for zone, named in (("Europe/London", True), ("Asia/Jakarta", False)):
        async with demo_page(browser, stack, locale="id-ID", timezone_id=zone) as page:
            await start_chat(page, "Wati", "wati@example.org", "Jam buka?", "other")
            stamp = bubbles(page, "visitor").first.locator("time")
            await expect(stamp).not_to_have_attribute("datetime", "")
            at = datetime.fromisoformat(str(await stamp.get_attribute("datetime")))
            jakarta = at.astimezone(ZoneInfo("Asia/Jakarta")).strftime("%H.%M")
            text = await stamp.inner_text()
            assert text.startswith(jakarta), (zone, text, jakarta)
            assert ("WIB" in text) is named, (zone, text)


async def test_an_english_browser_gets_english_and_the_switch_works(
    stack: Stack,
    browser: Browser,  # noqa: F811
) -> None:
    """An en-US browser gets the widget in English, the holiday's name too; the visible switch
    changes everything to Indonesian and the choice holds for the visit (issue 14)."""
    desk = stack.desk.desk
    saved = desk.hours, desk.clock
    desk.hours = hours({"holidays": {"country": "ID"}})  # Perpusnas hours, Indonesian holidays
    desk.clock = lambda: datetime(2025, 12, 25, 3, 0, tzinfo=UTC)  # Christmas, 10.00 WIB
    context = await browser.new_context(locale="en-US")
    page = await context.new_page()
    try:
        await page.goto(f"{stack.widget_url}/demo")
        launcher = page.locator("[data-refdesk=launcher]")
        await expect(launcher).to_have_attribute("aria-label", "Chat with a librarian")
        await open_form(page)
        notice = page.locator("[data-refdesk=closed-notice]")
        await expect(notice).to_contain_text("(Christmas Day)")
        form = page.locator("[data-refdesk=form]")
        await expect(form.locator("label[for=rd-question]")).to_have_text("Your question *")
        switch = page.locator("[data-refdesk=language]")
        await expect(switch).to_have_text("ID")
        await expect(switch).to_have_attribute("aria-label", "Bahasa Indonesia")
        await switch.click()
        await expect(notice).to_contain_text("(Hari Raya Natal)")
        await expect(switch).to_have_text("EN")
        await expect(switch).to_be_focused()
        await expect(page.locator("[data-refdesk=panel]")).to_have_attribute("lang", "id")
        await expect(form.locator("[name=topic] option").first).to_have_text(
            "Penelusuran literatur / informasi / data"
        )
        await page.keyboard.press("Escape")  # closed, so the reload does not reopen it
        await page.reload()  # the same visit: the choice holds
        await open_form(page)
        await expect(notice).to_contain_text("(Hari Raya Natal)")
    finally:
        await context.close()
        desk.hours, desk.clock = saved
    # A new visit follows the browser again.
    async with demo_page(browser, stack, locale="en-US") as page:
        await open_form(page)
        await expect(page.locator("[data-refdesk=panel]")).to_have_attribute("lang", "en")


async def test_the_visitor_edits_and_deletes_from_the_widget(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    """Edit and delete from the widget reach the librarian as Element shows them: an edit
    (``m.replace``) and a redaction by the visitor's ghost (issue 14)."""
    sari = librarians["sari"]
    async with demo_page(browser, stack, locale="id-ID") as page:
        await start_chat(page, "Rudi", "rudi@example.org", "Ada buku Tan Malaka?", "literature")
        session_id, room_id = await join_session(stack, page, sari)
        ghost = stack.mxid(f"refdesk_v_{session_id}")
        original = await sari.wait_for(
            lambda s: s.room_id == room_id and s.body == "Ada buku Tan Malaka?"
        )
        bubble = bubbles(page, "visitor").first
        await bubble.locator("[data-refdesk=edit]").click()
        composer = page.locator("[data-refdesk=input]")
        await expect(composer).to_have_value("Ada buku Tan Malaka?")
        await expect(page.locator("[data-refdesk=editing]")).to_contain_text("Mengubah pesan")
        await audit(page, "editing a message")
        await composer.fill("Ada buku karya Tan Malaka?")
        await composer.press("Enter")
        await expect(bubble.locator("[data-refdesk=body]")).to_have_text(
            "Ada buku karya Tan Malaka?"
        )
        await expect(bubble.locator("[data-refdesk=edited]")).to_have_text("(diedit)")
        await expect(page.locator("[data-refdesk=editing]")).to_be_hidden()
        edit = await sari.wait_for(
            lambda s: s.room_id == room_id and s.sender == ghost and s.body.startswith("* ")
        )
        relation = edit.source["content"]["m.relates_to"]
        assert relation == {"rel_type": "m.replace", "event_id": original.event_id}
        assert edit.source["content"]["m.new_content"]["body"] == "Ada buku karya Tan Malaka?"

        await bubble.locator("[data-refdesk=delete]").click()
        await expect(bubble.locator("[data-refdesk=delete-cancel]")).to_be_focused()
        await bubble.locator("[data-refdesk=delete-confirm]").click()
        await expect(bubble).to_have_attribute("data-deleted", "true")
        await expect(bubble.locator("[data-refdesk=body]")).to_have_text("Pesan ini dihapus")
        await expect(bubble.locator("[data-refdesk=edit]")).to_have_count(0)
        redaction = await sari.wait_for(
            lambda s: s.room_id == room_id and s.source.get("type") == "m.room.redaction"
        )
        assert redaction.sender == ghost
        assert original.event_id in (
            redaction.source.get("redacts"),
            redaction.source.get("content", {}).get("redacts"),
        )


async def test_the_invitation_comes_once_and_stays_dismissed(
    stack: Stack,
    browser: Browser,  # noqa: F811
) -> None:
    """A configured "can we help?" prompt shows after its seconds on a matching page; closing it
    holds for the visit, a click on it opens the chat; other pages do not get it (issue 14)."""
    ctx = stack.desk.widget
    assert ctx is not None
    saved = ctx.settings
    ctx.settings = dataclasses.replace(
        saved,
        invitation=Invitation(1, ("*/demo*",), {"id": "Butuh bantuan?", "en": "Need a hand?"}),
    )
    try:
        async with demo_page(browser, stack, locale="en-US") as page:
            invitation = page.locator("[data-refdesk=invitation]")
            await expect(invitation).to_contain_text("Need a hand?", timeout=15_000)
            await audit(page, "invitation")
            await invitation.locator("[data-refdesk=invitation-close]").click()
            await expect(invitation).to_have_count(0)
            await expect(page.locator("[data-refdesk=launcher]")).to_be_focused()
            await page.reload()  # the same visit: it stays dismissed
            await page.wait_for_timeout(4000)
            await expect(invitation).to_have_count(0)

        async with demo_page(browser, stack, locale="id-ID") as page:  # a new visit
            invitation = page.locator("[data-refdesk=invitation]")
            await expect(invitation).to_contain_text("Butuh bantuan?", timeout=15_000)
            await invitation.locator("[data-refdesk=invitation-open]").click()
            await expect(page.locator("[data-refdesk=panel]")).to_be_visible()
            await expect(invitation).to_have_count(0)

        ctx.settings = dataclasses.replace(saved, invitation=Invitation(1, ("*/e-resources*",), {}))
        async with demo_page(browser, stack, locale="id-ID") as page:  # not a matching page
            await page.wait_for_timeout(4000)
            await expect(page.locator("[data-refdesk=launcher]")).to_be_visible()
            await expect(page.locator("[data-refdesk=invitation]")).to_have_count(0)
    finally:
        ctx.settings = saved


async def test_switching_language_during_a_chat_changes_the_desks_words_too(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    """After the switch, the desk's notices to the visitor come in the new language (issue 14)."""
    dewi = librarians["dewi"]
    async with demo_page(browser, stack, locale="id-ID") as page:
        await start_chat(page, "Yanti", "yanti@example.org", "Halo, saya butuh bantuan", "other")
        await page.locator("[data-refdesk=language]").click()
        await expect(page.locator("[data-refdesk=panel]")).to_have_attribute("lang", "en")
        session_id = await stored_session_id(page)
        await eventually(lambda: language_of(stack, session_id, "en"))
        _, room_id = await join_session(stack, page, dewi)
        await dewi.send(room_id, "!claim")
        notice = bubbles(page, "desk").filter(has_text="Dewi Librarian is now helping you.")
        await expect(notice).to_have_count(1)


async def language_of(stack: Stack, session_id: str, language: str) -> bool:
    session = await stack.desk.desk.get_session(session_id)  # type: ignore[arg-type]
    return session.form.language == language

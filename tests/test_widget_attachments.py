"""Snap and send in Chromium (issue 11): a visitor attaches or pastes a picture, a librarian
receives it as an image; a librarian's image and PDF show in the widget and download."""

from __future__ import annotations

import io

from PIL import Image
from playwright.async_api import Browser, Page, expect

from tests.conftest import Stack
from tests.helpers import Librarian
from tests.test_attachments import GPS, photo_with_gps, picture
from tests.test_widget_browser import (  # noqa: F401
    audit,
    browser,
    bubbles,
    demo_page,
    start_chat,
)
from tests.test_widget_browser_more import join_session


async def paste_file(page: Page, data: bytes, name: str, mimetype: str) -> None:
    """A screenshot pasted into the message field, as the clipboard hands it over."""
    await page.locator("[data-refdesk=input]").evaluate(
        """(el, [bytes, name, type]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
            el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
        }""",
        [list(data), name, mimetype],
    )


async def drop_file(page: Page, data: bytes, name: str, mimetype: str) -> None:
    """A file dragged from the desktop and dropped on the conversation."""
    await page.locator("[data-refdesk=messages]").evaluate(
        """(el, [bytes, name, type]) => {
            const dt = new DataTransfer(), init = { dataTransfer: dt, bubbles: true };
            dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
            el.dispatchEvent(new DragEvent('dragover', { ...init, cancelable: true }));
            el.dispatchEvent(new DragEvent('drop', { ...init, cancelable: true }));
        }""",
        [list(data), name, mimetype],
    )


async def test_a_visitor_attaches_and_pastes_pictures_and_the_librarian_gets_images(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    sari = librarians["sari"]
    async with demo_page(browser, stack, locale="id-ID") as page:
        await start_chat(page, "Tono", "tono@example.org", "Login e-journal gagal", "eresources")
        _, room_id = await join_session(stack, page, sari)
        # The file picker (on a phone it offers the camera): a photo with its GPS position.
        await page.locator("[data-refdesk=file]").set_input_files(
            files=[{"name": "IMG_0042.jpg", "mimeType": "image/jpeg", "buffer": photo_with_gps()}]
        )
        preview = page.locator("[data-refdesk=attachment-preview]")
        await expect(preview).to_contain_text("IMG_0042.jpg")
        await audit(page, "a file ready to send")
        await page.locator("[data-refdesk=input]").fill("Ini pesan errornya")
        await page.locator("[data-refdesk=send]").click()
        await expect(preview).to_be_hidden()
        sent = bubbles(page, "visitor").filter(has_text="Ini pesan errornya")
        await expect(sent.locator("[data-refdesk=attachment-image]")).to_be_visible()
        photo = await sari.wait_for(
            lambda s: s.room_id == room_id and s.source["content"].get("msgtype") == "m.image"
        )
        content = photo.source["content"]
        assert content["body"] == "Ini pesan errornya" and content["filename"] == "IMG_0042.jpg"
        assert (content["info"]["w"], content["info"]["h"]) == (80, 120)  # upright
        download = await sari.client.download(mxc=content["url"])
        with Image.open(io.BytesIO(download.body)) as image:  # type: ignore[union-attr]
            assert GPS not in image.getexif()

        # A screenshot pasted from the clipboard, no caption: its name is the message.
        shot = picture("PNG", (300, 180))
        await paste_file(page, shot, "image.png", "image/png")
        await expect(preview).to_contain_text("image.png")
        await page.locator("[data-refdesk=attachment-remove]").click()  # changed their mind
        await expect(preview).to_be_hidden()
        await paste_file(page, shot, "image.png", "image/png")
        await page.locator("[data-refdesk=input]").press("Enter")
        pasted = await sari.wait_for(
            lambda s: (
                s.room_id == room_id
                and s.source["content"].get("msgtype") == "m.image"
                and s.source["content"].get("filename") == "image.png"
            )
        )
        got = await sari.client.download(mxc=pasted.source["content"]["url"])
        with Image.open(io.BytesIO(got.body)) as image:  # type: ignore[union-attr]
            assert image.size == (300, 180)
            assert image.getpixel((0, 0))[:3] == (255, 0, 0)  # the same picture, pixel for pixel
        assert sari.bodies(room_id).count("image.png") == 1  # sent once

        # A document dragged from the desktop onto the chat.
        await drop_file(page, b"%PDF-1.4\n%%EOF\n", "surat.pdf", "application/pdf")
        await expect(preview).to_contain_text("surat.pdf")
        await page.locator("[data-refdesk=send]").click()
        await sari.wait_for(
            lambda s: (
                s.room_id == room_id
                and s.source["content"].get("msgtype") == "m.file"
                and s.source["content"].get("filename") == "surat.pdf"
            )
        )

        # Not a picture at all, whatever its name says: refused, and the bubble says so.
        html = b"<!doctype html><script>alert(1)</script>"
        await page.locator("[data-refdesk=file]").set_input_files(
            files=[{"name": "cat.png", "mimeType": "image/png", "buffer": html}]
        )
        await page.locator("[data-refdesk=send]").click()
        refused = bubbles(page, "visitor").last
        await expect(refused.locator("[data-refdesk=attachment-image]")).to_have_attribute(
            "alt", "cat.png"
        )
        await expect(refused).to_contain_text("Jenis berkas ini tidak bisa dikirim.")


async def test_a_librarians_image_and_pdf_show_in_the_widget_and_download(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    dewi = librarians["dewi"]
    png = picture("PNG", (400, 300))
    pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
    async with demo_page(browser, stack, locale="id-ID", accept_downloads=True) as page:
        await start_chat(page, "Lia", "lia@example.org", "Denah ruang baca?", "other")
        _, room_id = await join_session(stack, page, dewi)
        await dewi.send_file(room_id, png, "image/png", "denah.png")
        await dewi.send_file(room_id, pdf, "application/pdf", "tata-tertib.pdf")
        image = bubbles(page, "librarian").locator("[data-refdesk=attachment-image]")
        await expect(image).to_have_attribute("alt", "denah.png")
        await expect(image).to_have_js_property("naturalWidth", 400)  # loaded with the token
        file = bubbles(page, "librarian").locator("[data-refdesk=attachment-file]")
        await expect(file).to_contain_text("tata-tertib.pdf")
        async with page.expect_download() as info:
            await file.click()
        saved = await (await info.value).path()
        assert saved.read_bytes() == pdf
        # The picture opens large, in a dialog; Escape closes it and focus comes back.
        opener = bubbles(page, "librarian").locator("button:has([data-refdesk=attachment-image])")
        await opener.click()
        viewer = page.locator("[data-refdesk=viewer]")
        await expect(viewer.locator("[data-refdesk=viewer-image]")).to_have_js_property(
            "naturalWidth", 400
        )
        await expect(page.locator("[data-refdesk=viewer-close]")).to_be_focused()
        await audit(page, "an image opened")
        await page.keyboard.press("Escape")
        await expect(viewer).to_have_count(0)
        await expect(opener).to_be_focused()


async def test_a_reload_in_the_middle_of_an_upload_loses_and_duplicates_nothing(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    """The file waits in IndexedDB until the desk has it: a reload while it is on its way sends it
    again with the same client_id, and the librarian gets it once; then nothing is kept."""
    agus = librarians["agus"]
    shot = picture("PNG", (200, 120))
    async with demo_page(browser, stack, locale="id-ID") as page:
        await start_chat(page, "Ani", "ani@example.org", "Tampilan katalog aneh", "other")
        _, room_id = await join_session(stack, page, agus)
        uploads = "**/api/sessions/*/attachments*"
        await page.route(uploads, lambda route: None)  # the connection stalls: no answer
        await page.locator("[data-refdesk=file]").set_input_files(
            files=[{"name": "katalog.png", "mimeType": "image/png", "buffer": shot}]
        )
        await page.locator("[data-refdesk=send]").click()
        await expect(bubbles(page, "visitor").last).to_contain_text("Mengirim")
        names = "async () => (await indexedDB.databases()).map(d => d.name)"
        await page.wait_for_function(f"({names})().then(n => n.length === 1)")
        await page.unroute(uploads)
        await page.reload()
        image = await agus.wait_for(
            lambda s: s.room_id == room_id and s.source["content"].get("filename") == "katalog.png"
        )
        assert image.source["content"]["msgtype"] == "m.image"
        sent = bubbles(page, "visitor").locator("[data-refdesk=attachment-image]")
        await expect(sent).to_have_count(1)
        await page.reload()  # and again: nothing is sent twice
        await expect(sent).to_have_count(1)
        await page.wait_for_timeout(1500)
        assert (
            sum(
                s.source["content"].get("filename") == "katalog.png"
                for s in agus.timeline
                if s.room_id == room_id
            )
            == 1
        )
        assert await page.evaluate(names) == []


async def test_a_phone_photo_is_made_smaller_in_the_browser_before_it_is_sent(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
) -> None:
    """A 4,000-pixel photo of several MB goes out at 2,048 pixels: quicker on mobile data, and
    still readable."""
    dewi = librarians["dewi"]
    noise = Image.effect_noise((4000, 3000), 60).convert("RGB")
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=95)
    photo = out.getvalue()
    assert len(photo) > 2 * 1024 * 1024
    async with demo_page(browser, stack, locale="id-ID") as page:
        await start_chat(page, "Eko", "eko@example.org", "Foto rak buku", "other")
        _, room_id = await join_session(stack, page, dewi)
        await page.locator("[data-refdesk=file]").set_input_files(
            files=[{"name": "IMG_9001.jpg", "mimeType": "image/jpeg", "buffer": photo}]
        )
        await expect(page.locator("[data-refdesk=attachment-preview]")).to_contain_text(
            "IMG_9001.jpg"
        )
        await page.locator("[data-refdesk=send]").click()
        sent = await dewi.wait_for(
            lambda s: s.room_id == room_id and s.source["content"].get("filename") == "IMG_9001.jpg"
        )
        info = sent.source["content"]["info"]
        assert (info["w"], info["h"]) == (2048, 1536)
        assert info["size"] < len(photo) / 2
        assert "thumbnail_url" in info  # the room shows a small version first

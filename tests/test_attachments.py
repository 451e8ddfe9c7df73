"""Files in a chat (issue 11): checked by content, images without metadata, to the room as the
visitor's m.image / m.file, and a librarian's files to the widget — only for that chat."""

from __future__ import annotations

import base64
import io
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rooms.attachments import AttachmentRefused, AttachmentRules, check, clean_filename, sniff
from rooms.desk import Desk, DeskRules
from rooms.privacy import Retention
from rooms.rights import export_page
from rooms.store import Database
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor, query
from tests.test_desk_in_element import eventually
from tests.test_privacy import closed_long_ago, nothing_pending
from tests.test_spine import open_chat

GPS = 0x8825  # the EXIF GPS directory


def picture(kind: str = "PNG", size: tuple[int, int] = (64, 40), **save: Any) -> bytes:
    image = Image.new("RGB", size, (20, 120, 200))
    image.putpixel((0, 0), (255, 0, 0))  # a corner to see which way is up
    out = io.BytesIO()
    image.save(out, kind, **save)
    return out.getvalue()


def photo_with_gps(size: tuple[int, int] = (120, 80)) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # camera make
    exif[0x0112] = 6  # orientation: turn 90° clockwise to show it upright
    exif[GPS] = {1: "S", 2: (6.0, 10.0, 30.0), 3: "E", 4: (106.0, 49.0, 0.0)}  # Jakarta
    return picture("JPEG", size, exif=exif.tobytes())


def docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


# -- the checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (picture("PNG"), "a.png", "image/png"),
        (picture("JPEG"), "a.png", "image/jpeg"),  # the content decides, not the name
        (picture("GIF"), "a.gif", "image/gif"),
        (picture("WEBP"), "a.webp", "image/webp"),
        (b"%PDF-1.7\n%...", "paper.pdf", "application/pdf"),
        (
            docx(),
            "letter.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (b"Nomor panggil: 899.221 TAN\n", "notes.txt", "text/plain"),
        (b"<!DOCTYPE html><script>alert(1)</script>", "cute.png", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg' onload='x()'/>", "logo.png", None),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff", "setup.png", None),
        (b"\x7fELF\x02\x01\x01\x00", "run.txt", None),
    ],
)
def test_the_type_comes_from_the_content(data: bytes, name: str, expected: str | None) -> None:
    assert sniff(data, name) == expected


def test_refusals_have_their_own_codes() -> None:
    rules = AttachmentRules(max_size=1000, types=("image",))
    for data, code in (
        (b"", "attachment_empty"),
        (b"x" * 1001, "attachment_too_large"),
        (b"%PDF-1.7 short", "attachment_type_not_allowed"),  # pdf: not taken by this desk
        (b"<html><body>hi</body></html>", "attachment_type_not_allowed"),
        (b"\x89PNG\r\n\x1a\n broken", "attachment_unreadable"),
    ):
        with pytest.raises(AttachmentRefused) as info:
            check(data, "x.png", rules)
        assert info.value.code == code


def test_a_photo_loses_its_metadata_and_comes_upright() -> None:
    checked = check(photo_with_gps(), "IMG_2031.JPG", AttachmentRules())
    assert checked.mimetype == "image/jpeg" and checked.filename == "IMG_2031.jpg"
    with Image.open(io.BytesIO(checked.data)) as image:
        exif = image.getexif()
        assert GPS not in exif and 0x010F not in exif and 0x0112 not in exif
        assert image.size == (80, 120) == (checked.width, checked.height)  # turned upright
        assert "exif" not in image.info and "xmp" not in image.info
    assert b"PhoneMaker" not in checked.data


def test_large_images_get_a_thumbnail_and_names_are_cleaned() -> None:
    checked = check(picture("PNG", (2400, 1200)), "../../etc/Layar.PNG", AttachmentRules())
    assert checked.filename == "Layar.png"
    assert (checked.thumb_width, checked.thumb_height) == (800, 400)
    assert checked.thumbnail is not None and sniff(checked.thumbnail) == checked.thumb_mimetype
    assert check(picture("PNG"), "small.png", AttachmentRules()).thumbnail is None
    assert clean_filename("a\x00b\u202e.exe", "application/pdf") == "ab.pdf"
    assert clean_filename("", "text/plain") == "file.txt"


# -- end to end ----------------------------------------------------------------------------------


async def upload(
    stack: Stack,
    visitor: Visitor,
    data: bytes,
    filename: str,
    *,
    caption: str | None = None,
    client_id: str | None = None,
    token: str | None = None,
) -> tuple[int, Any]:
    query = {"filename": filename, "client_id": client_id or uuid.uuid4().hex}
    if caption:
        query["caption"] = caption
    headers = {"Content-Type": "application/octet-stream"}
    if token is not None or visitor.token:
        headers["Authorization"] = f"Bearer {token or visitor.token}"
    async with ClientSession() as http:
        async with http.post(
            f"{stack.widget_url}/api/sessions/{visitor.session_id}/attachments",
            params=query,
            data=data,
            headers=headers,
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def fetch(stack: Stack, path: str, token: str | None) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with ClientSession() as http:
        async with http.get(f"{stack.widget_url}{path}", headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers


async def test_a_visitors_photo_reaches_the_room_as_an_image_without_its_gps(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Saya kirim foto layar errornya")
    ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
    client_id = uuid.uuid4().hex
    status, body = await upload(
        stack,
        visitor,
        photo_with_gps(),
        "IMG_2031.JPG",
        caption="Ini errornya",
        client_id=client_id,
    )
    assert status == 201, body
    sent = body["message"]
    assert sent["body"] == "Ini errornya" and sent["client_id"] == client_id
    described = sent["attachment"]
    assert described["name"] == "IMG_2031.jpg" and described["mimetype"] == "image/jpeg"
    assert (described["width"], described["height"]) == (80, 120)
    # A retry (the answer was lost) stores and sends nothing twice.
    status, again = await upload(
        stack, visitor, photo_with_gps(), "IMG_2031.JPG", client_id=client_id
    )
    assert status == 200 and again["message"]["id"] == sent["id"]

    event = await sari.wait_for(
        lambda s: s.room_id == room_id and s.source["content"].get("msgtype") == "m.image"
    )
    content = event.source["content"]
    assert event.sender == ghost and content["body"] == "Ini errornya"
    assert content["filename"] == "IMG_2031.jpg"
    assert content["info"] == {
        "mimetype": "image/jpeg",
        "size": described["size"],
        "w": 80,
        "h": 120,
    }
    download = await sari.client.download(mxc=content["url"])
    with Image.open(io.BytesIO(download.body)) as image:  # type: ignore[union-attr]
        assert GPS not in image.getexif() and image.size == (80, 120)
    # The visitor's own copy is the same file.
    status, data, headers = await fetch(stack, described["url"], visitor.token)
    assert status == 200 and data == download.body  # type: ignore[union-attr]
    assert (
        headers["Content-Type"] == "image/jpeg" and headers["X-Content-Type-Options"] == "nosniff"
    )
    assert headers["Content-Disposition"].startswith("inline;")
    await eventually(lambda: len(sari.bodies(room_id, sender=ghost)) >= 2)
    assert sari.bodies(room_id, sender=ghost).count("Ini errornya") == 1


async def test_refused_uploads_have_their_codes_and_store_nothing(
    stack: Stack, visitor: Visitor
) -> None:
    await visitor.start()
    await visitor.send("Halo")
    max_size = stack.desk.desk.rules.attachments.max_size
    cases = [
        (b"\x00" * (max_size + 1), "big.pdf", 413, "attachment_too_large"),
        (b"<!doctype html><script>steal()</script>", "cat.png", 415, "attachment_type_not_allowed"),
        (b"MZ\x90\x00" + b"\x00" * 64, "cat.png", 415, "attachment_type_not_allowed"),
        (b"", "empty.txt", 422, "attachment_empty"),
    ]
    for data, name, status, code in cases:
        got, body = await upload(stack, visitor, data, name)
        assert (got, body["error"]) == (status, code), (name, got, body)
    listed = await visitor.messages()
    assert [m["attachment"] for m in listed["messages"]] == [None]
    other = Visitor(stack.widget_url)
    try:
        await other.start()
        got, body = await upload(stack, visitor, picture(), "a.png", token=other.token)
        assert (got, body["error"]) == (403, "invalid_token")
        async with ClientSession() as http:  # no token at all
            async with http.post(
                f"{stack.widget_url}/api/sessions/{visitor.session_id}/attachments",
                params={"filename": "a.png", "client_id": "x"},
                data=picture(),
            ) as resp:
                assert resp.status == 401
    finally:
        await other.close()


async def test_a_librarians_image_and_pdf_reach_the_widget_only_for_that_chat(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    dewi = librarians["dewi"]
    room_id = await open_chat(stack, visitor, dewi, "Bisa kirim denah lantai 2?")
    png = picture("PNG", (300, 200))
    pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
    await dewi.send_file(room_id, png, "image/png", "denah.png")
    await dewi.send_file(room_id, pdf, "application/pdf", "aturan.pdf")
    shown = await visitor.wait_for(
        lambda m: (m.get("attachment") or {}).get("name") == "aturan.pdf"
    )
    image = await visitor.wait_for(lambda m: (m.get("attachment") or {}).get("name") == "denah.png")
    assert image["attachment"]["mimetype"] == "image/png"
    assert (image["attachment"]["width"], image["attachment"]["height"]) == (300, 200)
    status, data, headers = await fetch(stack, shown["attachment"]["url"], visitor.token)
    assert status == 200 and data == pdf
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''aturan.pdf"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Only that chat's token fetches it; another chat cannot name it, nor guess one.
    other = Visitor(stack.widget_url)
    try:
        await other.start()
        await other.send("Halo")
        status, _, _ = await fetch(stack, shown["attachment"]["url"], other.token)
        assert status == 403
        theirs = shown["attachment"]["url"].replace(visitor.session_id, other.session_id)
        status, _, _ = await fetch(stack, theirs, other.token)
        assert status == 404  # an id of another chat is no file of this one
        for guess in ("999999999", "0", "-1", "abc"):
            path = f"/api/sessions/{visitor.session_id}/attachments/{guess}"
            status, _, _ = await fetch(stack, path, visitor.token)
            assert status == 404
        status, _, _ = await fetch(stack, shown["attachment"]["url"], None)
        assert status == 401
    finally:
        await other.close()


async def test_a_file_sent_while_the_homeserver_is_down_arrives_after_it_restarts(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    """Stored before the answer: the upload is acknowledged with the homeserver down, and the
    file goes to the room once it is back (and refdesk restarted in between)."""
    agus = librarians["agus"]
    room_id = await open_chat(stack, visitor, agus, "Saya lampirkan berkasnya")
    config = stack.config
    await stack.synapse.stop()
    try:
        status, body = await upload(stack, visitor, b"Daftar pustaka\n", "daftar.txt")
        assert status == 201, body
        await stack.stop_refdesk()
        await stack.start_refdesk()
    finally:
        await stack.synapse.start()
        await stack.restore(config)
    event = await agus.wait_for(
        lambda s: s.room_id == room_id and s.source["content"].get("msgtype") == "m.file",
        timeout=90,
    )
    assert event.source["content"]["filename"] == "daftar.txt"
    download = await agus.client.download(mxc=event.source["content"]["url"])
    assert download.body == b"Daftar pustaka\n"  # type: ignore[union-attr]


async def test_the_transcript_names_files_and_the_purge_removes_them(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    agus = librarians["agus"]
    await open_chat(stack, visitor, agus, "Berkas tugas saya")
    status, body = await upload(stack, visitor, picture(), "tugas.png", caption="Halaman 3")
    assert status == 201, body
    await upload(stack, visitor, b"catatan\n", "catatan.txt")
    status, text = await visitor.request(
        "GET", f"/api/sessions/{visitor.session_id}/transcript?format=text"
    )
    assert status == 200, text
    assert "[Berkas: tugas.png] Halaman 3" in text and "[Berkas: catatan.txt]" in text
    # The page to download shows the picture itself (it stands alone: no link needs a token).
    status, page = await visitor.request("GET", f"/api/sessions/{visitor.session_id}/transcript")
    assert status == 200 and page.count('<img src="data:image/png;base64,') == 1
    assert 'alt="tugas.png"' in page
    # A visitor's export holds the files themselves.
    document = await stack.desk.desk.rights.export(session_id=visitor.session_id, by="cli")
    sent = [m["file"] for m in document["chats"][0]["messages"] if m["file"]]
    assert [f["name"] for f in sent] == ["tugas.png", "catatan.txt"]
    assert base64.b64decode(sent[1]["data_base64"]) == b"catatan\n"
    assert '<a href="data:text/plain;base64,' in export_page(document)
    await visitor.end()
    session_id = visitor.session_id or ""
    stored = await query(
        stack.desk.db, "SELECT id FROM attachments WHERE session_id = :s", {"s": session_id}
    )
    assert len(stored) == 2
    await eventually(lambda: nothing_pending(stack.desk.db, session_id))
    await closed_long_ago(stack.desk.db, session_id)
    assert (await stack.desk.desk.purger.run()).chats == 1
    gone = await query(
        stack.desk.db, "SELECT id FROM attachments WHERE session_id = :s", {"s": session_id}
    )
    assert gone == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=4096),
        st.sampled_from(
            [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"%PDF-", b"PK\x03\x04"]
        ).flatmap(lambda head: st.binary(max_size=2048).map(lambda rest: head + rest)),
    ),
    name=st.text(max_size=300),
)
def test_fuzz_any_bytes_are_taken_or_refused_with_a_code(data: bytes, name: str) -> None:
    """Whatever arrives (broken images, truncated archives, odd names), the checks answer with
    a file or one of the refusal codes: never another error."""
    try:
        checked = check(data, name, AttachmentRules(max_size=3000))
    except AttachmentRefused as exc:
        assert exc.code in (
            "attachment_empty",
            "attachment_too_large",
            "attachment_type_not_allowed",
            "attachment_unreadable",
        )
        return
    assert sniff(checked.data, checked.filename) == checked.mimetype or checked.mimetype.endswith(
        "msword"
    )
    assert "/" not in checked.filename and len(checked.filename) <= 110


async def test_files_kept_less_long_than_their_chats_go_first(store: Database) -> None:
    """``privacy.retention.attachments`` shorter than ``messages``: the files go (from the store,
    and from the homeserver through an intent), the chat and its words stay."""
    now = [datetime(2026, 1, 5, tzinfo=UTC)]
    retention = Retention(attachments=timedelta(days=30))
    desk = Desk(store, DeskRules(topics=("literature",), retention=retention), clock=lambda: now[0])
    session, _ = await desk.start_session(
        desk.validate_form({"name": "Rina", "email": "rina@example.org", "topic": "literature"})
    )
    message, _ = await desk.visitor_attachment(session, picture(), "peta.png", "Peta", "c1")
    assert message.attachment is not None
    await desk.attachment_uploaded(message.attachment.id, "mxc://hs/abc", None)
    await desk.end_session(session.id, by="visitor")
    await store.write(
        lambda tx: tx.execute(
            "UPDATE intents SET done_at = :at WHERE done_at IS NULL", {"at": now[0]}
        )
    )
    now[0] += timedelta(days=31)
    assert (await desk.purger.preview()).files == 1
    report = await desk.purger.run()
    assert (report.chats, report.files) == (0, 1)
    assert await desk.attachment(session.id, message.attachment.id) is None
    kept = await query(
        store, "SELECT body, attachment FROM messages WHERE id = :id", {"id": message.id}
    )
    assert [tuple(r) for r in kept] == [("Peta", None)]
    pending = await query(
        store,
        "SELECT kind, payload FROM intents WHERE lane = :l AND done_at IS NULL",
        {"l": session.id},
    )
    assert [tuple(r) for r in pending] == [("purge_media", '{"media":["mxc://hs/abc"]}')]


def test_the_offline_reply_email_names_a_librarians_file() -> None:
    from rooms.ids import MessageID, SessionID
    from rooms.offline import reply_email
    from rooms.session import Attachment, Message, Origin, Session, SessionState, VisitorForm

    when = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    session = Session(
        SessionID("s1"), SessionState.OPEN, VisitorForm("Rina", "rina@example.org", "other"), when
    )
    reply = Message(
        MessageID(5),
        SessionID("s1"),
        Origin.LIBRARIAN,
        "Ini denahnya",
        when,
        sender_name="Dewi",
        attachment=Attachment(3, "denah.png", "image/png", 2048, 400, 300),
    )
    _, text, page = reply_email(
        session,
        [reply],
        desk_name="Tanya Pustakawan",
        timezone="Asia/Jakarta",
        link="https://desk.example/demo?refdesk_resume=x",
        until=when + timedelta(days=14),
    )
    assert "[Berkas (buka percakapan untuk melihatnya): denah.png]\nIni denahnya" in text
    assert "denah.png" in page and "refdesk_resume=x" in page

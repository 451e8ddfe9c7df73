"""After the chat: feedback kept with the librarian, transcript download and email."""

from __future__ import annotations

import asyncio
import re

from tests.conftest import MailSink, Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_spine import open_chat


async def bot_saw(stack: Stack, room_id: str, text: str) -> bool:
    events = await stack.desk.bridge.client.recent_events(room_id, limit=50)
    return any(text in str(e.get("content", {}).get("body", "")) for e in events)


async def test_feedback_is_kept_with_the_librarian_even_if_the_visitor_leaves(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Terima kasih atas bantuannya")
    await sari.send(room_id, "Sama-sama!")
    await visitor.wait_for(lambda m: m["body"] == "Sama-sama!")  # her reply claimed the chat
    path = f"/api/sessions/{visitor.session_id}/feedback"
    status, body = await visitor.request("POST", path, {"rating": 5})
    assert (status, body["error"]) == (409, "session_open")

    await visitor.end()
    status, body = await visitor.request("POST", path, {"rating": 6, "comment": 3})
    assert status == 422 and set(body["fields"]) == {"rating", "comment"}
    # The rating is stored the moment it is given; the visitor closes the tab right after.
    status, body = await visitor.request("POST", path, {"rating": 4})
    assert status == 200 and body["feedback"]["rating"] == 4
    await visitor.close()
    stored = await stack.desk.desk.feedback(visitor.session_id)  # type: ignore[arg-type]
    assert stored is not None and stored.rating == 4 and stored.librarian == stack.mxid("sari")
    report = dict((lib, (n, avg)) for lib, n, avg in await stack.desk.desk.ratings_by_librarian())
    assert stack.mxid("sari") in report

    # The room and the desk room's queue notice show it.
    await eventually(lambda: bot_saw(stack, room_id, "Visitor feedback for Sari Librarian: ★★★★☆"))
    await sari.wait_for(lambda s: s.room_id == in_desk_room and "rated ★★★★☆ (4/5)" in s.body)


async def test_comment_after_rating_updates_it(stack: Stack, visitor: Visitor) -> None:
    await visitor.start()
    await visitor.send("Pertanyaan singkat")
    await visitor.end()
    path = f"/api/sessions/{visitor.session_id}/feedback"
    assert (await visitor.request("POST", path, {"rating": 2}))[0] == 200
    status, body = await visitor.request("POST", path, {"rating": 3, "comment": "Agak lama"})
    assert status == 200 and body["feedback"] == {
        "rating": 3,
        "comment": "Agak lama",
        "updated_at": body["feedback"]["updated_at"],
    }


async def test_transcript_download_and_email(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian], mail_sink: MailSink
) -> None:
    dewi = librarians["dewi"]
    visitor_email = "rina.transcript@example.org"
    await visitor.start(name="Rina", email=visitor_email, language="en")
    await visitor.send("Is <script>alert(1)</script> escaped?")
    room_id = await eventually(lambda: room_id_of(stack, visitor))
    await dewi.wait_for_invite(room_id)
    await dewi.join(room_id)
    await dewi.send(room_id, "Yes, it is.")
    await visitor.wait_for(lambda m: m["body"] == "Yes, it is.")
    # Element sends Markdown as HTML with the Markdown source as its body (issue 14).
    await dewi.send_content(
        room_id,
        {
            "msgtype": "m.text",
            "body": "Try **e-resources**:\n1. log in\n2. [search](https://lib.example/s)",
            "format": "org.matrix.custom.html",
            "formatted_body": "<p>Try <strong>e-resources</strong>:</p><ol><li>log in</li>"
            '<li><a href="https://lib.example/s">search</a></li></ol>'
            '<img src="x" onerror="alert(2)">',
        },
    )
    await visitor.wait_for(lambda m: m["body"].startswith("Try **e-resources**"))
    await visitor.end()

    status, text = await visitor.request(
        "GET", f"/api/sessions/{visitor.session_id}/transcript?format=text"
    )
    assert status == 200
    assert "Chat transcript" in text and "Asia/Jakarta" in text
    assert "You: Is <script>alert(1)</script> escaped?" in text
    assert re.search(r"\[\d\d:\d\d\] Dewi Librarian: Yes, it is\.", text)
    # A formatted message reads as its formatting, not as its Markdown markers.
    assert (
        "Dewi Librarian: Try e-resources:\n1. log in\n2. search (https://lib.example/s)\n" in text
    )
    assert "**" not in text
    # Times are the library's (WIB, UTC+7), not the server's UTC.
    session = await stack.desk.desk.get_session(visitor.session_id or "")
    assert f"{(session.created_at.hour + 7) % 24:02d}:" in text
    status, page = await visitor.request("GET", f"/api/sessions/{visitor.session_id}/transcript")
    assert status == 200 and "&lt;script&gt;" in page and "<script>" not in page
    assert "<strong>e-resources</strong>" in page and "<ol><li>log in</li>" in page
    assert "onerror" not in page and "<img" not in page and "**" not in page
    status, _ = await visitor.request(
        "GET", f"/api/sessions/{visitor.session_id}/transcript", token="forged"
    )
    assert status == 403

    path = f"/api/sessions/{visitor.session_id}/transcript/email"
    status, body = await visitor.request("POST", path, {})
    assert status == 202 and body["to"] == visitor_email
    await eventually(lambda: mail_sink.to(visitor_email))
    mail = mail_sink.to(visitor_email)[0]
    assert mail["Subject"] == "Your chat transcript from Tanya Pustakawan"
    assert mail["Reply-To"] == "layanan@perpustakaan.example"
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and "Yes, it is." in plain.get_content()
    assert html is not None and "&lt;script&gt;" in html.get_content()
    status, body = await visitor.request("POST", path, {})
    assert (status, body["error"]) == (429, "too_many_requests")
    await asyncio.sleep(0.2)
    assert len(mail_sink.to(visitor_email)) == 1


async def room_id_of(stack: Stack, visitor: Visitor) -> str | None:
    return (await stack.desk.desk.get_session(visitor.session_id or "")).room_id


async def test_mail_waits_for_the_relay_and_is_sent_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mailer.settings import MailSettings
    from mailer.smtp import Mailer
    from refdesk.homeserver import free_port
    from rooms.desk import Desk, DeskRules
    from rooms.session import VisitorForm
    from rooms.store import SqliteDatabase

    db = SqliteDatabase(tmp_path / "m.db")
    await db.open()
    desk = Desk(db, DeskRules(topics=("literature",), email_enabled=True))
    port = free_port()
    mailer = Mailer(MailSettings(host="127.0.0.1", port=port, security="none"), desk)
    session, _ = await desk.start_session(VisitorForm("Budi", "b@example.org", "literature"))
    await desk.email_transcript(session)
    # The relay is down: the mail stays in the outbox.
    assert not await mailer.deliver_pending()
    pending = await desk.pending_mail()
    assert len(pending) == 1 and pending[0].attempts == 1 and pending[0].last_error
    sink = MailSink()
    sink.port = port
    from aiosmtpd.controller import Controller

    sink.controller = Controller(sink, hostname="127.0.0.1", port=port)
    sink.controller.start()
    try:
        assert await mailer.deliver_pending()
        assert await mailer.deliver_pending()  # nothing left: no second copy
        assert await desk.pending_mail() == []
    finally:
        sink.controller.stop()
        await db.close()
    assert len(sink.to("b@example.org")) == 1

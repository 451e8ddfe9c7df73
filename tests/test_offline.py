"""Offline messages: queued quietly, answered from Element, replies emailed with a link back."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

from tests.conftest import LIBRARIANS, MailSink, Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_spine import room_of


async def test_offline_message_answered_by_email_and_resumed(
    stack: Stack,
    librarians: dict[str, Librarian],
    mail_sink: MailSink,
    in_desk_room: str,  # noqa: F811
    nobody_on_duty: None,
) -> None:
    sari = librarians["sari"]
    visitor = Visitor(stack.widget_url)
    status, config = await visitor.request("GET", "/api/config", token=False)
    assert status == 200 and config["hours"]["live"] is False
    assert config["hours"]["staffed"] is False

    address = "offline.visitor@example.org"
    await visitor.start(name="Wati", email=address, topic="membership")
    await visitor.send("Apakah kartu anggota bisa diperpanjang daring?")
    room_id = await room_of(stack, visitor.session_id or "")
    session = await stack.desk.desk.get_session(visitor.session_id or "")
    assert session.offline
    # Queued quietly: nobody is invited (no ringing), the desk room shows it.
    await sari.wait_for(lambda s: s.room_id == in_desk_room and "Offline message" in s.body)
    members = await stack.desk.bridge.client.members(room_id)
    assert not any(members.get(stack.mxid(n)) == "invite" for n in LIBRARIANS)

    # A librarian joins from the Space and answers in a burst: one email.
    await sari.join(room_id)
    await sari.send(room_id, "Halo Wati, bisa.")
    await sari.send(room_id, "Buka menu Keanggotaan di situs kami, lalu pilih Perpanjang.")
    await eventually(lambda: mail_sink.to(address), timeout=20)
    await eventually(lambda: False if len(mail_sink.to(address)) != 1 else True)
    mail = mail_sink.to(address)[0]
    assert mail["Subject"] == "Balasan dari Tanya Pustakawan"
    plain = mail.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "Halo Wati, bisa." in text and "pilih Perpanjang" in text
    link = re.search(r"http://\S+refdesk_resume=\S+", text)
    assert link is not None
    token = parse_qs(urlsplit(link.group(0)).query)["refdesk_resume"][0]

    # The link reopens the conversation, with its history, in a new browser.
    elsewhere = Visitor(stack.widget_url)
    status, body = await elsewhere.request("POST", "/api/resume", {"link": token}, token=False)
    assert status == 200 and body["session"]["id"] == visitor.session_id
    elsewhere.session_id, elsewhere.token = visitor.session_id, body["token"]
    history = [m["body"] for m in (await elsewhere.messages())["messages"]]
    assert "Halo Wati, bisa." in history
    assert "Apakah kartu anggota bisa diperpanjang daring?" in history
    # The old token no longer opens the session; a forged link opens nothing.
    status, _ = await visitor.request("GET", f"/api/sessions/{visitor.session_id}")
    assert status == 403
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    status, body = await elsewhere.request("POST", "/api/resume", {"link": forged}, token=False)
    assert (status, body["error"]) == (403, "invalid_link")
    # No second email for replies already sent.
    await elsewhere.send("Terima kasih!")
    assert len(mail_sink.to(address)) == 1
    await visitor.close()
    await elsewhere.close()

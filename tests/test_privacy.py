"""Retention and purge (issue 13): expired chats leave the store and the homeserver, open ones
stay, a purge stopped halfway finishes on the next run, and counts (never contents) are logged."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from nio import DownloadResponse, RoomMessagesResponse

from bridge.matrix_api import MatrixError
from refdesk.cli import main
from refdesk.config import ConfigError, parse_config
from refdesk.wiring import desk_rules
from rooms import privacy
from rooms.desk import Desk, DeskRules
from rooms.ids import RoomID
from rooms.intents import IntentKind
from rooms.privacy import Retention
from rooms.rights import export_page
from rooms.session import Session
from rooms.store import Database, open_database, verification_audit
from rooms.store import privacy as privacy_rows
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_config import good
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_spine import open_chat

FORM = {"name": "Budi Santoso", "email": "budi@example.org", "topic": "literature"}
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clocked(store: Database) -> AsyncIterator[tuple[Desk, Clock]]:
    clock = Clock()
    yield Desk(store, DeskRules(topics=("literature",)), clock=clock), clock


async def chat(desk: Desk, text: str, *, room: str | None = None) -> Session:
    session, _ = await desk.start_session(desk.validate_form(FORM))
    await desk.visitor_message(session, text, f"c-{text}")
    if room is not None:
        session = await desk.attach_room(session.id, RoomID(room))
    return session


async def row(desk: Desk, session: Session) -> dict[str, Any]:
    found = await desk.db.fetchone("SELECT * FROM sessions WHERE id = :id", {"id": session.id})
    assert found is not None
    return dict(found)


async def count(desk: Desk, table: str, session: Session) -> int:
    column = "lane" if table == "intents" else "session_id"
    found = await desk.db.fetchone(
        f"SELECT COUNT(*) AS n FROM {table} WHERE {column} = :id", {"id": session.id}
    )
    assert found is not None
    return int(found["n"])


async def finish_intents(desk: Desk, session: Session) -> None:
    """What the bridge would do: perform (here: mark done) the chat's pending intents."""
    await desk.db.write(
        lambda tx: tx.execute(
            "UPDATE intents SET done_at = :at WHERE lane = :id AND done_at IS NULL",
            {"at": T0, "id": session.id},
        )
    )


async def test_expired_chats_are_purged_open_and_recent_ones_kept(
    clocked: tuple[Desk, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    desk, clock = clocked
    old = await chat(desk, "Buku Pramoedya ada?", room="!old:hs")
    await desk.give_feedback(await desk.end_session(old.id, by="visitor"), {"rating": 5})
    await desk.give_feedback(old, {"rating": 5, "comment": "Pustakawannya ramah sekali"})
    await desk.db.write(lambda tx: verification_audit.add(tx, old.id, "k", None, "verified", T0))
    still_open = await chat(desk, "Masih menunggu", room="!open:hs")
    for session in (old, still_open):
        await finish_intents(desk, session)
    clock.now = T0 + timedelta(days=100)
    recent = await chat(desk, "Baru saja", room="!recent:hs")
    await desk.end_session(recent.id, by="visitor")
    await finish_intents(desk, recent)

    clock.now = T0 + timedelta(days=181)
    preview = await desk.purger.preview()
    assert (preview.chats, preview.feedback_comments, preview.verification_records) == (1, 1, 1)
    assert preview.messages == await count(desk, "messages", old) > 0
    assert await count(desk, "messages", old) > 0  # a preview changes nothing

    caplog.set_level(logging.INFO, logger="refdesk.privacy")
    report = await desk.purger.run()
    assert report == preview
    purged = await row(desk, old)
    assert purged["purged_at"] is not None
    assert (purged["visitor_name"], purged["email"], purged["token_hash"]) == ("", "", "")
    assert purged["page_url"] is None and purged["user_agent"] is None
    # What reports need stays: when, topic, language, the rating without its comment.
    assert purged["topic"] == "literature" and purged["closed_at"] is not None
    feedback = await desk.feedback(old.id)
    assert feedback is not None and (feedback.rating, feedback.comment) == (5, None)
    assert await count(desk, "messages", old) == 0
    assert await count(desk, "verification_audit", old) == 0
    pending = await desk.db.fetchall(
        "SELECT kind, payload FROM intents WHERE lane = :id AND done_at IS NULL", {"id": old.id}
    )
    assert [(r["kind"], r["payload"]) for r in pending] == [
        (IntentKind.PURGE_ROOM.value, '{"room_id":"!old:hs","media":[]}')
    ]
    # The open chat (however old) and the chat closed 81 days ago are untouched.
    for kept in (still_open, recent):
        assert (await row(desk, kept))["visitor_name"] == "Budi Santoso"
        assert await count(desk, "messages", kept) > 0
    # The log has counts, never a name, an address or a message.
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "1 chats" in logged
    assert not any(secret in logged for secret in ("Budi", "budi@", "Pramoedya", "ramah"))
    # A second run finds nothing.
    assert await desk.purger.run() == privacy.PurgeReport()


async def test_a_chat_whose_room_still_waits_for_the_homeserver_is_left_for_later(
    clocked: tuple[Desk, Clock],
) -> None:
    desk, clock = clocked
    session = await chat(desk, "Halo", room="!waiting:hs")
    await desk.end_session(session.id, by="visitor")  # its notices are not performed yet
    clock.now = T0 + timedelta(days=200)
    assert (await desk.purger.run()).chats == 0
    await finish_intents(desk, session)
    assert (await desk.purger.run()).chats == 1


async def test_a_purge_stopped_halfway_finishes_on_the_next_run(
    clocked: tuple[Desk, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, clock = clocked
    chats = [await chat(desk, f"Pertanyaan {n}", room=f"!r{n}:hs") for n in range(3)]
    for session in chats:
        await desk.end_session(session.id, by="visitor")
        await finish_intents(desk, session)
    clock.now = T0 + timedelta(days=181)
    monkeypatch.setattr(privacy, "BATCH", 1)
    real = privacy_rows.purge_chat
    calls = 0

    async def dies_on_the_second(tx: Any, session_id: str, at: datetime) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("killed")
        return await real(tx, session_id, at)

    monkeypatch.setattr(privacy_rows, "purge_chat", dies_on_the_second)
    with pytest.raises(RuntimeError):
        await desk.purger.run()
    states = [(await row(desk, s))["purged_at"] is not None for s in chats]
    assert sorted(states) == [False, False, True]  # one whole chat purged, two whole and kept
    kept = [s for s, purged in zip(chats, states, strict=True) if not purged]
    assert all([await count(desk, "messages", s) > 0 for s in kept])
    monkeypatch.setattr(privacy_rows, "purge_chat", real)
    assert (await desk.purger.run()).chats == 2
    kinds = await desk.db.fetchall(
        "SELECT lane FROM intents WHERE kind = 'purge_room' AND done_at IS NULL ORDER BY id"
    )
    assert sorted(r["lane"] for r in kinds) == sorted(s.id for s in chats)  # one each, no more


async def test_forever_keeps_everything_and_the_daily_run_is_daily(store: Database) -> None:
    clock = Clock()
    forever = Retention(
        messages=None, attachments=None, feedback_comments=None, verification_audit=None
    )
    desk = Desk(store, DeskRules(topics=("literature",), retention=forever), clock=clock)
    session = await chat(desk, "Simpan selamanya")
    await desk.end_session(session.id, by="visitor")
    await finish_intents(desk, session)
    clock.now = T0 + timedelta(days=5000)
    assert await desk.purger.run() == privacy.PurgeReport()
    daily = Desk(store, DeskRules(topics=("literature",)), clock=clock)
    assert await daily.purger.run_if_due() is not None
    assert (await row(desk, session))["purged_at"] is not None
    clock.now += timedelta(hours=23)
    assert await daily.purger.run_if_due() is None
    restarted = Desk(store, DeskRules(topics=("literature",)), clock=clock)  # reads the last run
    assert await restarted.purger.run_if_due() is None
    clock.now += timedelta(hours=2)
    assert await restarted.purger.run_if_due() is not None


@pytest.mark.parametrize(
    ("retention", "path", "words"),
    [
        ({"messages": 0}, "privacy.retention.messages", "between 1 and 36500"),
        ({"messages": "never"}, "privacy.retention.messages", "integer"),
        ({"transcripts": 30}, "privacy.retention.transcripts", "not a known setting"),
    ],
)
def test_retention_settings_name_the_key(retention: dict[str, Any], path: str, words: str) -> None:
    data = good()
    data["privacy"] = {"retention": retention}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == path and words in info.value.problem


def test_retention_defaults_to_180_days_and_forever_is_explicit() -> None:
    assert parse_config(good()).privacy.retention == dict.fromkeys(
        ("messages", "attachments", "feedback_comments", "verification_audit"), 180
    )
    data = good()
    data["privacy"] = {"retention": {"messages": "forever", "verification_audit": 30}}
    kept = parse_config(data).privacy.retention
    assert kept == {
        "messages": None,
        "attachments": 180,
        "feedback_comments": 180,
        "verification_audit": 30,
    }


# -- end to end: the homeserver ---------------------------------------------------------------


async def room_bodies(librarian: Librarian, room_id: str) -> list[str] | None:
    """The message bodies a librarian can read in the room's history; None if she cannot."""
    bodies: list[str] = []
    start = ""
    while True:
        page = await librarian.client.room_messages(room_id, start=start, limit=100)
        if not isinstance(page, RoomMessagesResponse):
            return None
        bodies += [str(e.source["content"]["body"]) for e in page.chunk
                   if "body" in e.source.get("content", {})]  # fmt: skip
        if not page.chunk or not page.end:
            return bodies
        start = page.end


async def closed_chat(stack: Stack, visitor: Visitor, sari: Librarian, text: str) -> str:
    room_id = await open_chat(stack, visitor, sari, text)
    await sari.send(room_id, f"Jawaban: {text}")
    await visitor.wait_for(lambda m: m["body"] == f"Jawaban: {text}")
    await visitor.end()
    await eventually(lambda: nothing_pending(stack.desk.db, visitor.session_id or ""))
    return room_id


async def nothing_pending(db: Database, lane: str) -> bool:
    found = await db.fetchone(
        "SELECT COUNT(*) AS n FROM intents WHERE lane = :l AND done_at IS NULL", {"l": lane}
    )
    return found is not None and int(found["n"]) == 0


async def closed_long_ago(db: Database, session_id: str | None) -> None:
    """As if the chat had closed 200 days ago (only it: the stack's other chats are recent)."""
    at = datetime.now(UTC) - timedelta(days=200)
    await db.write(
        lambda tx: tx.execute(
            "UPDATE sessions SET closed_at = :at WHERE id = :id", {"at": at, "id": session_id}
        )
    )


async def test_purge_redacts_the_room_or_deletes_it_with_the_admin_api_across_restarts(
    stack: Stack,
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    """Without admin rights the bot redacts every message and leaves; a server admin, it deletes
    the room. The second purge runs on the store while refdesk is stopped (as ``refdesk purge``
    does), the homeserver restarts, and the room goes once refdesk is back."""
    sari = librarians["sari"]
    config = stack.config
    first, second = Visitor(stack.widget_url), Visitor(stack.widget_url)
    try:
        redacted = await closed_chat(stack, first, sari, "Koleksi Hamka")
        assert "Jawaban: Koleksi Hamka" in (await room_bodies(sari, redacted) or [])
        # The desk room's own history (queue lines, alarms, answers to !queue) is kept no
        # longer than the chats: its m.room.retention, applied by the homeserver.
        client = stack.desk.bridge.client  # type: ignore[union-attr]
        retention = await client.request(
            "GET", f"/_matrix/client/v3/rooms/{in_desk_room}/state/m.room.retention"
        )
        assert retention == {"max_lifetime": 180 * 86_400_000}
        desk_before = await room_bodies(sari, in_desk_room) or []
        assert any("Koleksi Hamka" in body for body in desk_before)  # its queue line
        await closed_long_ago(stack.desk.db, first.session_id)
        assert (await stack.desk.desk.purger.run()).chats == 1
        await eventually(lambda: nothing_pending(stack.desk.db, first.session_id or ""))
        # The room is still there (readable), with every message in it redacted; the desk
        # room's line about the chat, and every edit of it, are redacted too.
        assert await room_bodies(sari, redacted) == []
        desk_after = await room_bodies(sari, in_desk_room)
        assert desk_after is not None and not any("Koleksi Hamka" in b for b in desk_after)

        deleted = await open_chat(stack, second, sari, "Arsip koran")
        # A file in the chat: the purge takes it from the homeserver's media repository too.
        async with ClientSession() as http:
            async with http.post(
                f"{stack.widget_url}/api/sessions/{second.session_id}/attachments",
                params={"filename": "kliping.txt", "client_id": "f1"},
                data=b"Kliping koran 1965\n",
                headers={"Authorization": f"Bearer {second.token}"},
            ) as resp:
                assert resp.status == 201
        shared = await sari.wait_for(
            lambda s: s.room_id == deleted and s.source["content"].get("msgtype") == "m.file"
        )
        media = shared.source["content"]["url"]
        assert isinstance(await sari.client.download(mxc=media), DownloadResponse)
        await second.end()
        await eventually(lambda: nothing_pending(stack.desk.db, second.session_id or ""))
        await stack.stop_refdesk()
        db = open_database(stack.config.database.target)
        await db.open()
        try:
            await closed_long_ago(db, second.session_id)
            desk = Desk(db, desk_rules(stack.config))
            assert (await desk.purger.run()).chats == 1
            assert not await nothing_pending(db, second.session_id or "")  # the room: still to do
        finally:
            await db.close()
        await stack.synapse.stop()
        await stack.synapse.start()
        token = await stack.synapse.admin_token()
        stack.config = replace(config, homeserver=replace(config.homeserver, admin_token=token))
        await stack.start_refdesk()
        await eventually(lambda: nothing_pending(stack.desk.db, second.session_id or ""), 60)
        client = stack.desk.bridge.client  # type: ignore[union-attr]
        with pytest.raises(MatrixError) as info:
            await client.request("GET", f"/_synapse/admin/v1/rooms/{deleted}", admin=True)
        assert info.value.status == 404  # gone from the homeserver's database
        assert await room_bodies(sari, deleted) is None
        assert not isinstance(await sari.client.download(mxc=media), DownloadResponse)
    finally:
        await stack.restore(config)
        await first.close()
        await second.close()


def test_the_purge_command_counts_first(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge", "--config", str(stack.config_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Would remove 0 chats (0 messages)") and "Nothing was changed" in out
    assert "messages 180 days" in out


# -- a visitor's rights: export and erase -------------------------------------------------------


async def test_export_holds_everything_about_the_person_and_no_secrets(
    clocked: tuple[Desk, Clock],
) -> None:
    desk, _ = clocked
    first = await chat(desk, "Apakah ada buku Tan Malaka?", room="!one:hs")
    await desk.end_session(first.id, by="visitor")
    await desk.give_feedback(first, {"rating": 4, "comment": "Cepat"})
    await desk.db.write(lambda tx: verification_audit.add(tx, first.id, "k1", None, "mismatch", T0))
    second = await chat(desk, "Jam buka Sabtu?")
    other, _ = await desk.start_session(desk.validate_form({**FORM, "email": "lain@example.org"}))
    document = await desk.rights.export(email="BUDI@example.org", by="cli")
    assert [c["id"] for c in document["chats"]] == [first.id, second.id]
    chat_one = document["chats"][0]
    assert chat_one["name"] == "Budi Santoso" and chat_one["email"] == "budi@example.org"
    assert [m["text"] for m in chat_one["messages"] if m["from"] == "visitor"] == [
        "Apakah ada buku Tan Malaka?"
    ]
    assert chat_one["feedback"]["comment"] == "Cepat"
    assert chat_one["membership_checks"] == [{"at": T0.isoformat(), "outcome": "mismatch"}]
    text = json.dumps(document)
    assert other.id not in text
    token_hash = (await row(desk, first))["token_hash"]
    assert token_hash not in text and "k1" not in text  # secrets, not data about the person
    page = export_page(document)
    assert "Tan Malaka" in page and "<script>" not in page.replace("<script type=", "")
    embedded = page.split('id="refdesk-export">', 1)[1].split("</script>", 1)[0]
    assert json.loads(embedded) == document
    log_rows = await desk.db.fetchall("SELECT action, actor, sessions FROM privacy_log")
    assert [tuple(r) for r in log_rows] == [("export", "cli", 2)]


async def test_erase_removes_everything_closes_what_is_open_and_is_idempotent(
    clocked: tuple[Desk, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    desk, _ = clocked
    closed = await chat(desk, "Buku Pramoedya", room="!closed:hs")
    await desk.end_session(closed.id, by="visitor")
    await desk.give_feedback(closed, {"rating": 2, "comment": "Lama sekali"})
    still_open = await chat(desk, "Masih bertanya", room="!open:hs")
    caplog.set_level(logging.INFO)
    erased = await desk.rights.erase(email="budi@example.org", by="@kepala:hs")
    assert erased.sessions == 2 and erased.items > 0
    for session in (closed, still_open):
        found = await row(desk, session)
        assert found["state"] == "closed" and found["purged_at"] is not None
        assert (found["visitor_name"], found["email"]) == ("", "")
        assert await count(desk, "messages", session) == 0
        assert await count(desk, "feedback", session) == 0
        purge = await desk.db.fetchall(
            "SELECT payload FROM intents WHERE lane = :l AND kind = 'purge_room' "
            "AND done_at IS NULL",
            {"l": session.id},
        )
        assert len(purge) == 1  # the room goes too, after nothing else (the rest was dropped)
        pending = await desk.db.fetchall(
            "SELECT kind FROM intents WHERE lane = :l AND done_at IS NULL", {"l": session.id}
        )
        assert [r["kind"] for r in pending] == ["purge_room"]
    assert await desk.rights.find(email="budi@example.org") == []
    again = await desk.rights.erase(email="budi@example.org", by="@kepala:hs")
    assert (again.sessions, again.items) == (0, 0)
    log_rows = await desk.db.fetchall("SELECT action, actor, sessions FROM privacy_log ORDER BY id")
    assert [tuple(r) for r in log_rows] == [("erase", "@kepala:hs", 2), ("erase", "@kepala:hs", 0)]
    logged = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert not any(secret in logged for secret in ("Budi", "budi@", "Pramoedya", "Lama sekali"))


def test_the_export_and_erase_commands(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(stack.config_path)
    out = tmp_path / "export.html"
    args = ["export-visitor", "--config", config, "--email", "nobody@example.org"]
    assert main([*args, "--output", str(out)]) == 0
    assert "0 chat(s)" in capsys.readouterr().out and out.stat().st_mode & 0o077 == 0
    assert main([*args, "--output", str(tmp_path / "export.json")]) == 0
    assert json.loads((tmp_path / "export.json").read_text())["chats"] == []
    erase = ["erase-visitor", "--config", config, "--email", "nobody@example.org"]
    assert main(erase) == 2  # no terminal to ask on: --yes is needed
    assert "--yes" in capsys.readouterr().err
    assert main([*erase, "--yes"]) == 0
    assert "Erased 0 chat(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["erase-visitor", "--config", config, "--yes"])  # whom: required


async def test_a_supervisor_exports_and_erases_from_element(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    """``!privacy export`` sends the file to the supervisor in a private room with the bot, never
    into the shared desk room; ``!privacy erase`` removes the chat; librarians may do neither."""
    sari, kepala = librarians["sari"], librarians["kepala"]
    address = "privasi.pengunjung@example.org"
    await visitor.start(email=address)
    await visitor.send("Apakah koleksi Balai Pustaka bisa dipinjam?")
    room_id = await eventually(lambda: room_of_session(stack, visitor.session_id))
    await sari.send(in_desk_room, f"!privacy export {address}")
    await sari.wait_for(
        lambda s: s.room_id == in_desk_room and s.body.startswith("Only a supervisor")
    )
    await kepala.send(in_desk_room, f"!privacy export {address}")
    await kepala.wait_for(lambda s: s.room_id == in_desk_room and "Exporting 1 chat" in s.body)
    private = await eventually(lambda: privacy_room_of(stack, stack.mxid("kepala")))
    await kepala.wait_for_invite(private)
    await kepala.join(private)
    sent = await kepala.wait_for(
        lambda s: s.room_id == private and s.source["content"].get("msgtype") == "m.file"
    )
    members = await stack.desk.bridge.client.members(private)  # type: ignore[union-attr]
    assert set(members) == {stack.config.bot_mxid, stack.mxid("kepala")}
    download = await kepala.client.download(mxc=sent.source["content"]["url"])
    page = download.body.decode("utf-8")  # type: ignore[union-attr]
    assert "Balai Pustaka" in page and address in page
    # Nothing of it reached the shared desk room.
    assert not any("Balai Pustaka" in body for body in sari.bodies(in_desk_room))

    await kepala.send(in_desk_room, f"!privacy erase {address}")
    await kepala.wait_for(lambda s: s.room_id == in_desk_room and "Erased 1 chat(s)" in s.body)
    assert await stack.desk.desk.rights.find(email=address) == []
    await eventually(lambda: nothing_pending(stack.desk.db, visitor.session_id or ""))
    assert await room_bodies(sari, room_id) in ([], None)


async def room_of_session(stack: Stack, session_id: str | None) -> str | None:
    session = await stack.desk.desk.get_session(session_id)  # type: ignore[arg-type]
    return session.room_id


async def privacy_room_of(stack: Stack, user_id: str) -> str | None:
    """The private room of the bot and a supervisor, by its alias."""
    bridge = stack.desk.bridge
    assert bridge is not None
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:16]
    alias = f"#{bridge.rooms.alias_prefix}privacy_{digest}:{stack.domain}"
    return await bridge.client.resolve_alias(alias)

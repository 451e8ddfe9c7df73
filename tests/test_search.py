"""Past-chat search (issue 12): `!search` finds closed chats by the stems of their words, in
Indonesian and English, on SQLite and PostgreSQL alike; the index follows the chat (close, a
later note, an edit) and leaves with it (purge, erasure); chats kept from before the index are
indexed once the desk runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.commands import Context, dispatch
from bridge.commands.search import room_link
from refdesk import migrate_db
from rooms.desk import Desk, DeskRules
from rooms.ids import MessageID, RoomID, UserID
from rooms.queue import QueueRules
from rooms.search import query_words, shorten
from rooms.session import Message, Origin, Session, SessionState, hash_token, new_session_id
from rooms.store import Database, messages, open_database, sessions
from rooms.store import privacy as privacy_rows
from rooms.store import search as index_rows
from rooms.store.migrations import MIGRATIONS
from rooms.words import stems
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401
from tests.test_spine import open_chat

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
SARI = UserID("@sari:hs")
LABELS = {
    "membership": {"id": "Keanggotaan", "en": "Membership"},
    "literature": {"id": "Penelusuran literatur", "en": "Literature search"},
}
RULES = DeskRules(
    topics=("membership", "literature"),
    topic_labels=LABELS,
    queue=QueueRules(librarians=(str(SARI),)),
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def desk(store: Database) -> AsyncIterator[Desk]:
    yield Desk(store, RULES, clock=Clock())


async def served(
    desk: Desk,
    question: str,
    answer: str,
    *,
    topic: str = "membership",
    language: str = "id",
    close: bool = True,
) -> Session:
    """A chat: the visitor's question, Sari's answer, closed by her."""
    form = {"name": "Budi", "email": "budi@example.org", "topic": topic, "language": language}
    session, _ = await desk.start_session(desk.validate_form(form))
    await desk.visitor_message(session, question, f"c-{uuid.uuid4().hex}")
    session = await desk.attach_room(session.id, RoomID(f"!{session.id}:hs"))
    await desk.librarian_message(session, SARI, "Sari", answer, remote_id=f"$a-{session.id}")
    if close:
        session = await desk.end_session(session.id, by=str(SARI))
    return session


async def found(desk: Desk, query: str) -> list[str]:
    return [f.session.id for f in (await desk.search.find(query)).found]


def test_indonesian_and_english_word_forms_share_a_stem() -> None:
    for form in ("perpanjang", "memperpanjang", "diperpanjang", "perpanjangan"):
        assert "panjang" in stems(form), form
    for form in ("renew", "renewing", "renewed", "renewal"):
        assert "renew" in stems(form), form
    assert query_words("Perpanjang, PERPANJANG… kartu!") == [stems("perpanjang"), stems("kartu")]
    assert query_words("?! …") == []


def test_a_snippet_is_cut_around_the_match_at_spaces() -> None:
    text = " ".join(f"kata{n}" for n in range(100)) + " memperpanjang " + "akhir " * 50
    start = text.index("memperpanjang")
    snippet = shorten(text, start, start + len("memperpanjang"), width=60)
    assert "memperpanjang" in snippet and snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet) <= 62 and " kata" not in snippet[:2] and "\n" not in snippet
    assert shorten("Pendek saja", 0, 6) == "Pendek saja"


async def test_an_inflected_indonesian_word_finds_the_chat(desk: Desk) -> None:
    renew = await served(
        desk,
        "Bagaimana cara memperpanjang pinjaman buku?",
        "Bisa lewat katalog daring, menu Akun.",
    )
    other = await served(desk, "Jam buka hari Sabtu?", "Sabtu buka 09.00-15.30.")
    assert await found(desk, "perpanjang") == [renew.id]
    assert await found(desk, "diperpanjang pinjam") == [renew.id]
    assert await found(desk, "sabtu") == [other.id]
    results = await desk.search.find("perpanjang")
    hit = results.found[0]
    assert results.every_word and hit.librarians == ("Sari",)
    assert hit.snippet == "Bagaimana cara memperpanjang pinjaman buku?"
    assert hit.snippet_from.kind == "visitor"
    # The topic's label, in each of the desk's languages, finds it too.
    assert set(await found(desk, "keanggotaan")) == {renew.id, other.id}
    assert set(await found(desk, "membership")) == {renew.id, other.id}


async def test_english_word_forms_and_ranking(desk: Desk) -> None:
    once = await served(
        desk,
        "Can I renew a book online? I also have a question about fines for a late return.",
        "Yes, on the catalogue.",
        language="en",
    )
    often = await served(
        desk,
        "Renewing my loan failed",
        "Renewals: the loan can be renewed twice; renew it at the desk.",
        language="en",
    )
    unrelated = await served(desk, "Where is the toilet?", "Ground floor.", language="en")
    assert await found(desk, "renewing") == [often.id, once.id]  # the chat about it first
    assert unrelated.id not in await found(desk, "renew loan")
    assert await found(desk, "renew loan") == [often.id]  # only it has both words
    # No chat has all the words: the chats with some of them.
    results = await desk.search.find("renew toilet")
    assert not results.every_word
    assert set(f.session.id for f in results.found) == {once.id, often.id, unrelated.id}


async def test_open_chats_wait_and_later_notes_and_edits_reindex(desk: Desk) -> None:
    session = await served(desk, "Kartu hilang", "Lapor ke loket.", close=False)
    assert await found(desk, "kartu") == []  # past chats only
    await desk.end_session(session.id, by=str(SARI), note="dikirim surat keterangan")
    assert await found(desk, "kartu") == [session.id]
    assert await found(desk, "keterangan") == [session.id]  # the closing note
    await desk.add_note(session, SARI, "Pengganti kartu dicetak ulang")
    assert await found(desk, "mencetak") == [session.id]
    hit = (await desk.search.find("cetak ulang")).found[0]
    assert hit.snippet_from.kind == "note" and hit.snippet == "Pengganti kartu dicetak ulang"
    # The librarian's answer edited, then deleted, after the close: the index follows.
    await desk.librarian_edit(f"$a-{session.id}", "Lapor ke loket layanan anggota.")
    assert await found(desk, "layanan") == [session.id]
    await desk.message_deleted(f"$a-{session.id}")
    assert await found(desk, "loket") == []


async def test_purge_and_erasure_remove_the_chat_from_the_index(desk: Desk) -> None:
    kept = await served(desk, "Memperpanjang pinjaman", "Bisa.")
    purged = await served(desk, "Memperpanjang pinjaman lagi", "Bisa juga.")
    erased = await served(desk, "Perpanjangan kartu", "Di loket.")
    assert set(await found(desk, "perpanjang")) == {kept.id, purged.id, erased.id}

    await desk.db.write(lambda tx: privacy_rows.purge_chat(tx, purged.id, T0))
    await desk.rights.erase(session_id=erased.id, by="@kepala:hs")
    assert await found(desk, "perpanjang") == [kept.id]
    entries = await desk.db.read(index_rows.count)
    assert entries == 1
    # The index is not rebuilt for a purged chat, whatever changes it later.
    await desk.db.write(lambda tx: desk.search.reindex(tx, purged.id))
    assert await desk.db.read(index_rows.count) == 1


async def test_the_retention_purge_removes_entries(store: Database) -> None:
    clock = Clock()
    desk = Desk(store, RULES, clock=clock)
    old = await served(desk, "Memperpanjang pinjaman", "Bisa.")
    await desk.db.write(
        lambda tx: tx.execute("UPDATE intents SET done_at = :at", {"at": clock.now})
    )
    clock.now += timedelta(days=200)
    assert (await desk.purger.run()).chats == 1
    assert await found(desk, "perpanjang") == []
    assert await desk.db.read(index_rows.count) == 0
    assert old.id not in await desk.db.read(lambda tx: index_rows.backlog(tx, 10))


async def test_chats_closed_before_the_index_are_indexed_once_the_desk_runs(
    store_target: str,
) -> None:
    """A desk upgraded to v12: its closed chats wait in the backlog, then the desk's clock
    indexes them (open and purged chats are not)."""
    before = tuple(m for m in MIGRATIONS if m.version < 12)
    old = open_database(store_target, before)
    await old.open()
    made: dict[str, str] = {}
    try:
        for name, text, state in (
            ("closed", "Apakah bisa memperpanjang keanggotaan?", "closed"),
            ("open", "Saya mau memperpanjang kartu", "open"),
        ):
            session = Session(
                id=new_session_id(),
                state=SessionState.OPEN,
                form=Desk(old, RULES).validate_form(
                    {"name": "Rina", "email": "rina@example.org", "topic": "membership"}
                ),
                created_at=T0,
            )

            async def unit(tx: object, session: Session = session, text: str = text) -> None:
                await sessions.insert(tx, session, hash_token("t"))  # type: ignore[arg-type]
                await messages.insert(
                    tx,  # type: ignore[arg-type]
                    Message(
                        id=MessageID(0),
                        session_id=session.id,
                        origin=Origin.VISITOR,
                        body=text,
                        created_at=T0,
                        sender_name="Rina",
                    ),
                )

            await old.write(unit)
            if state == "closed":
                # In SQL: the code's own queries read columns of later versions.
                await old.write(
                    lambda tx, s=session: tx.execute(
                        "UPDATE sessions SET state = 'closed', closed_at = :at,"
                        " closed_by = 'visitor' WHERE id = :id",
                        {"id": s.id, "at": T0},
                    )
                )
            made[name] = session.id
    finally:
        await old.close()

    db = open_database(store_target)
    await db.open()
    try:
        desk = Desk(db, RULES, clock=Clock())
        assert await db.read(lambda tx: index_rows.backlog(tx, 10)) == [made["closed"]]
        assert await found(desk, "perpanjang") == []
        await desk.tick()
        assert await found(desk, "perpanjang") == [made["closed"]]
        assert await db.read(lambda tx: index_rows.backlog(tx, 10)) == []
        assert await desk.search.backfill() == 0  # caught up: nothing more to do
    finally:
        await db.close()


async def test_a_desk_moved_to_postgresql_indexes_its_past_chats_again(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite = open_database(tmp_path / "refdesk.db")
    await sqlite.open()
    try:
        session = await served(Desk(sqlite, RULES, clock=Clock()), "Memperpanjang kartu?", "Bisa.")
    finally:
        await sqlite.close()
    await migrate_db.migrate(str(tmp_path / "refdesk.db"), postgres_url)
    postgres = open_database(postgres_url)
    await postgres.open()
    try:
        desk = Desk(postgres, RULES, clock=Clock())
        await desk.tick()
        assert await found(desk, "perpanjang") == [session.id]
    finally:
        await postgres.close()


async def test_the_command_answers_librarians_only_with_a_usage_line(desk: Desk) -> None:
    session = await served(desk, "Cara memperpanjang pinjaman?", "Lewat katalog.")

    def context(sender: UserID, room: Session | None = None) -> Context:
        async def names(user: str) -> str:
            return user

        return Context(
            desk=desk,
            client=None,  # type: ignore[arg-type]  # !search never calls the homeserver
            room_id="!desk:hs",
            sender=sender,
            sender_name="Sari",
            event_id="$e",
            session=room,
            names=names,
            timezone="Asia/Jakarta",
            topic_labels={k: v["id"] for k, v in LABELS.items()},
        )

    stranger = await dispatch(context(UserID("@stranger:hs")), "!search perpanjang")
    assert stranger == "Only the desk's librarians can search past chats."
    for empty in ("!search", "!search   ", "!search ?!"):
        assert (await dispatch(context(SARI), empty) or "").startswith("Usage: !search words")
    answer = await dispatch(context(SARI), "!search perpanjang")
    assert answer is not None
    local = session.closed_at.astimezone(UTC) + timedelta(hours=7)  # type: ignore[union-attr]
    assert answer.splitlines() == [
        "Past chats with “perpanjang”, best first:",
        f"1. {local:%Y-%m-%d} · Keanggotaan · Sari",
        "   Visitor: Cara memperpanjang pinjaman?",
        f"   Room: {room_link(f'!{session.id}:hs')}",
    ]
    assert room_link("!abc:hs.example") == "https://matrix.to/#/%21abc%3Ahs.example?via=hs.example"
    # In a session room too, and with a transcript link when the desk can make one.
    ctx = context(SARI, room=session)
    ctx.transcript_link = lambda s, who: f"https://desk.example/t/{s.id}?for={who}"
    answer = await dispatch(ctx, "!search pinjam")
    assert answer is not None and f"   Transcript: https://desk.example/t/{session.id}" in answer
    assert await dispatch(context(SARI), "!search zzzqqq") == "No past chat matches “zzzqqq”."


async def test_search_from_element_finds_a_chat_by_an_inflected_word(
    stack: Stack,
    visitor: Visitor,
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    sari = librarians["sari"]
    # A word of this test only, so the chats of other tests do not crowd the answer.
    unique = f"naskah{uuid.uuid4().hex[:8]}"
    question = f"Bagaimana cara memperpanjang pinjaman {unique}?"
    room_id = await open_chat(stack, visitor, sari, question)
    await sari.send(room_id, "Bisa diperpanjang lewat katalog daring.")
    await visitor.wait_for(lambda m: m["body"] == "Bisa diperpanjang lewat katalog daring.")
    await sari.send(room_id, "!close sudah dijelaskan")
    assert visitor.session_id is not None
    session = await eventually(lambda: closed(stack, visitor.session_id or ""))

    await sari.send(in_desk_room, f"!search perpanjang {unique}")
    bot = stack.config.bot_mxid
    answer = await sari.wait_for(
        lambda s: s.room_id == in_desk_room and s.sender == bot and s.body.startswith("Past")
    )
    assert answer.msgtype == "m.notice"
    local = session.closed_at.astimezone(UTC) + timedelta(hours=7)
    assert answer.body.splitlines() == [
        f"Past chats with “perpanjang {unique}”, best first:",
        f"1. {local:%Y-%m-%d} · {stack.desk.bridge.rooms.topic_labels[session.form.topic]}"
        " · Sari Librarian",
        f"   Visitor: {question}",
        f"   Room: {room_link(room_id)}",
    ]

    # From another visitor's chat (how was this answered before?).
    other = Visitor(stack.widget_url)
    try:
        other_room = await open_chat(stack, other, sari, "Mau perpanjang pinjaman juga")
        await sari.send(other_room, f"!search diperpanjang {unique}")
        await sari.wait_for(
            lambda s: (
                s.room_id == other_room
                and s.sender == bot
                and f"Room: {room_link(room_id)}" in s.body
            )
        )
        await other.end()
    finally:
        await other.close()


async def closed(stack: Stack, session_id: str) -> Session | None:
    session = await stack.desk.desk.get_session(session_id)
    return None if session.is_open else session

"""`refdesk migrate-db`: a SQLite desk moves into an empty PostgreSQL database, verified by counts;
the desk carries on there (tokens, cursors, ids and sequence numbers kept)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rooms.desk import Desk, DeskRules
from rooms.ids import RoomID, UserID
from rooms.queue import QueueRules
from rooms.session import VisitorForm
from rooms.store import PostgresDatabase, SqliteDatabase
from rooms.store import outbox as outbox_rows

ROOT = Path(__file__).resolve().parent.parent
SARI = UserID("@sari:hs")
RULES = DeskRules(topics=("literature",), queue=QueueRules(librarians=(SARI,)))


def migrate(source: Path, target: str) -> subprocess.CompletedProcess[str]:
    command = ["-m", "refdesk.cli", "migrate-db", "--from", f"sqlite:{source}", "--to", target]
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


async def test_a_sqlite_desk_moves_to_postgresql(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "refdesk.db"
    sqlite = SqliteDatabase(path)
    await sqlite.open()
    desk = Desk(sqlite, RULES)
    session, token = await desk.start_session(VisitorForm("Budi", "b@example.org", "literature"))
    first, _ = await desk.visitor_message(session, "halo", "c1")
    await desk.attach_room(session.id, RoomID("!r:hs"))
    answer = await desk.librarian_message(session, SARI, "Sari", "selamat siang", "$e1")
    assert answer is not None
    key = await desk.client_key("192.0.2.7")
    before = await desk.messages_after(session.id, 0)
    pending = await sqlite.read(outbox_rows.pending)
    await sqlite.close()

    done = migrate(path, postgres_url)
    assert done.returncode == 0, done.stderr
    assert "every table counted the same on both sides" in done.stdout

    postgres = PostgresDatabase(postgres_url)
    await postgres.open()
    try:
        moved = Desk(postgres, RULES)
        # The visitor's token, the messages with their ids and cursors, the pending intents and
        # the desk's secrets (the same client keys) all came along.
        assert (await moved.authenticate(session.id, token)).form.name == "Budi"
        assert [(m.id, m.seq, m.body) for m in await moved.messages_after(session.id, 0)] == [
            (m.id, m.seq, m.body) for m in before
        ]
        assert [i.id for i in await postgres.read(outbox_rows.pending)] == [i.id for i in pending]
        assert await moved.client_key("192.0.2.7") == key
        # New rows go after the copied ones.
        later, _ = await moved.visitor_message(session, "masih di sini?", "c2")
        assert later.id > max(m.id for m in before) and later.seq > max(m.seq for m in before)
    finally:
        await postgres.close()

    again = migrate(path, postgres_url)
    assert again.returncode == 1 and "already holds a desk" in again.stderr
    assert first.id in [m.id for m in before]


async def test_migrate_db_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    missing = migrate(tmp_path / "nothing.db", "postgresql://refdesk@127.0.0.1:1/x")
    assert missing.returncode == 1 and "no SQLite store" in missing.stderr
    path = tmp_path / "refdesk.db"
    sqlite = SqliteDatabase(path)
    await sqlite.open()
    await sqlite.close()
    not_postgres = migrate(path, "mysql://db/refdesk")
    assert not_postgres.returncode == 1 and "postgresql://" in not_postgres.stderr


def test_serve_says_clearly_when_postgresql_cannot_be_reached(tmp_path: Path) -> None:
    from refdesk.embedded import embedded_config_data, write_yaml
    from refdesk.homeserver import free_port

    data = embedded_config_data(
        widget_port=free_port(), homeserver_port=free_port(), appservice_port=free_port(),
        librarians=[],
    )  # fmt: skip
    data["database"] = {"url": f"postgresql://refdesk:s3cret@127.0.0.1:{free_port()}/refdesk"}
    write_yaml(tmp_path / "refdesk.yaml", data)
    served = subprocess.run(
        [sys.executable, "-m", "refdesk.cli", "serve", "--config", str(tmp_path / "refdesk.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert served.returncode == 1
    assert "database error: cannot reach PostgreSQL at" in served.stderr
    assert "s3cret" not in served.stderr + served.stdout
    assert "Traceback" not in served.stderr

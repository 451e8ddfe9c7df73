"""Verification in a real chat: the librarian asks, the visitor answers in the widget API, the
room gets the outcome; no secret reaches the room, the logs or the store."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually
from tests.test_spine import open_chat

SECRETS = ("1990-05-01", "1968-07-09", "1999-12-31", "01/05/1990")


async def verify(visitor: Visitor, member: str, dob: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    return await visitor.request(
        "POST",
        f"/api/sessions/{visitor.session_id}/verification",
        {"fields": {"member_number": member, "date_of_birth": dob}},
    )


async def everything_stored(stack: Stack) -> bytes:
    """The store's raw bytes (SQLite: the file and its write-ahead log), or on PostgreSQL the
    text of every row of every table."""
    path = stack.config.database.path
    if path is not None:
        files = (Path(path), Path(f"{path}-wal"))
        return b"".join(p.read_bytes() for p in files if p.exists())
    tables = await stack.desk.db.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    rows = []
    for table in tables:
        rows += await stack.desk.db.fetchall(f"SELECT * FROM {table['table_name']}")
    return repr([tuple(row) for row in rows]).encode()


async def room_bodies(stack: Stack, room_id: str) -> list[str]:
    events = await stack.desk.bridge.client.recent_events(room_id, limit=100)
    return [str(e.get("content", {}).get("body", "")) for e in events]


async def test_verification_outcomes_and_no_secret_anywhere(
    stack: Stack,
    librarians: dict[str, Librarian],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dewi = librarians["dewi"]
    visitor = Visitor(stack.widget_url)
    room_id = await open_chat(stack, visitor, dewi, "Saya anggota, mau perpanjang pinjaman")
    status, body = await verify(visitor, "A-123", "1990-05-01")
    assert (status, body["error"]) == (409, "verification_not_requested")

    await dewi.send(room_id, "!verify")
    await visitor.wait_for(lambda m: m["origin"] == "desk" and "keanggotaan" in m["body"])
    view = (await visitor.messages())["session"]
    assert view["verification"] == {
        "state": "requested",
        "fields": ["member_number", "date_of_birth"],
    }
    await dewi.wait_for(lambda s: s.room_id == room_id and "to confirm membership" in s.body)

    status, body = await verify(visitor, "a-123", "01/05/1990")  # other spellings are fine
    assert status == 200 and body["outcome"] == "verified"
    notice = await dewi.wait_for(lambda s: s.room_id == room_id and s.body.startswith("Verified"))
    assert "Budi Santoso" in notice.body and "Mahasiswa" in notice.body
    assert "2027-06-30" in notice.body
    assert (await visitor.messages())["session"]["verification"]["state"] == "verified"

    # A second chat walks through every other outcome up to the lock.
    other = Visitor(stack.widget_url)
    other_room = await open_chat(stack, other, dewi, "Kartu saya sepertinya kedaluwarsa")
    await dewi.send(other_room, "!verify")
    await eventually(lambda: requested(stack, other))
    outcomes = []
    for member, dob in (
        ("U-7788", "1968-07-09"),
        ("Z-0000", "1999-12-31"),
        ("A-123", "1999-12-31"),
    ):
        status, body = await verify(other, member, dob)
        assert status == 200
        outcomes.append((body["outcome"], body["attempts_left"], body["locked"]))
    assert outcomes == [("expired", 2, False), ("not_found", 1, False), ("mismatch", 0, False)]
    status, body = await verify(other, "A-123", "1990-05-01")
    assert status == 200 and body["outcome"] == "locked" and body["locked"]
    await dewi.wait_for(lambda s: s.room_id == other_room and s.body.startswith("Locked"))
    status, body = await other.request(
        "POST", f"/api/sessions/{other.session_id}/verification", {"fields": "x"}
    )
    assert status == 422

    # No secret in the rooms, the logs or the store (database and its write-ahead log).
    bodies = await room_bodies(stack, room_id) + await room_bodies(stack, other_room)
    assert any("Membership expired" in b or "expired" in b.lower() for b in bodies)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    stored = await everything_stored(stack)
    for secret in SECRETS:
        assert not any(secret in b for b in bodies), secret
        assert secret not in logged, secret
        assert secret.encode() not in stored, secret
    audit = await stack.desk.db.fetchall(
        "SELECT outcome FROM verification_audit WHERE session_id = :s", {"s": other.session_id}
    )
    assert [r["outcome"] for r in audit] == ["expired", "not_found", "mismatch", "locked"]
    await visitor.close()
    await other.close()


async def requested(stack: Stack, visitor: Visitor) -> bool:
    return (await stack.desk.desk.get_session(visitor.session_id or "")).verification == "requested"

"""``refdesk migrate-db``: move a desk's store from SQLite to PostgreSQL.

The source is read as one snapshot; the target must be empty (it is created and migrated to the
latest schema first) and is written in one transaction, so an interrupted copy leaves nothing
half-done. Every table is copied with its ids (messages keep their ids and sequence numbers:
visitors' cursors and the links in emails stay valid), the target's counters are moved past
them, and the copy is verified by counting every table on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rooms.store import Database, Tx, open_database
from rooms.store.values import moment

# Parents before children (foreign keys), then everything else.
TABLES = (
    "sessions",
    "messages",
    "attachments",
    "notes",
    "feedback",
    "mail_outbox",
    "verification_audit",
    "bans",
    "roster",
    "intents",
    "privacy_log",
    "desk_state",
    "bridge_state",
    "bridge_inbound_events",
    "bridge_inbound_failures",
)
# Identity counters to move past the copied rows, and the message sequence.
COUNTERS = (
    ("sessions", "arrival"),
    ("messages", "id"),
    ("attachments", "id"),
    ("notes", "id"),
    ("mail_outbox", "id"),
    ("verification_audit", "id"),
    ("intents", "id"),
    ("privacy_log", "id"),
)


class MigrationRefused(Exception):
    """The copy was not started (or was rolled back): the message says why."""


def parse_source(text: str) -> Path:
    """``sqlite:PATH`` (or a plain path) → the SQLite file."""
    path = Path(text.removeprefix("sqlite:"))
    if not path.is_file():
        raise MigrationRefused(f"no SQLite store at {path}")
    return path


async def _columns(tx: Tx, table: str) -> dict[str, str]:
    rows = await tx.fetchall(
        """
        SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = :t
        """,
        {"t": table},
    )
    return {row["column_name"]: row["data_type"] for row in rows}


def _convert(value: Any, data_type: str) -> Any:
    """A SQLite value as PostgreSQL's column wants it."""
    if value is None:
        return None
    if data_type.startswith("timestamp"):
        return value if isinstance(value, datetime) else moment(value)
    if data_type == "boolean":
        return bool(value)
    if data_type in ("bigint", "integer", "smallint"):
        return int(value)
    return value


Snapshot = dict[str, tuple[list[str], list[Sequence[Any]]]]


async def _read_all(source: Database) -> Snapshot:
    async def unit(tx: Tx) -> Snapshot:
        found: Snapshot = {}
        for table in TABLES:
            rows = await tx.fetchall(f"SELECT * FROM {table}")
            names = list(rows[0].keys()) if rows else []  # type: ignore[attr-defined]
            found[table] = (names, [tuple(row) for row in rows])  # type: ignore[arg-type]
        return found

    return await source.read(unit)


async def _count(db: Database) -> dict[str, int]:
    async def unit(tx: Tx) -> dict[str, int]:
        return {t: int(await tx.fetchval(f"SELECT COUNT(*) FROM {t}") or 0) for t in TABLES}

    return await db.read(unit)


async def copy_store(source: Database, target: Database) -> dict[str, int]:
    """Copy every table from ``source`` into the empty ``target``; returns rows per table."""
    if any((await _count(target)).values()):
        raise MigrationRefused("the target database already holds a desk; give an empty one")
    data = await _read_all(source)

    async def unit(tx: Tx) -> None:
        for table in TABLES:
            names, rows = data[table]
            if not rows:
                continue
            types = await _columns(tx, table)
            missing = [n for n in names if n not in types]
            if missing:
                raise MigrationRefused(f"{table}: the target has no column {missing[0]}")
            columns = ", ".join(names)
            values = ", ".join(f":{n}" for n in names)
            sql = f"INSERT INTO {table} ({columns}) VALUES ({values})"
            for row in rows:
                params = {n: _convert(v, types[n]) for n, v in zip(names, row, strict=True)}
                await tx.execute(sql, params)
        for table, column in COUNTERS:
            await tx.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
        await tx.execute(
            "SELECT setval('messages_seq', COALESCE((SELECT MAX(seq) FROM messages), 0) + 1, false)"
        )
        # The search index is not copied (its form differs by engine): the desk indexes these
        # chats again once it runs on PostgreSQL.
        await tx.execute(
            """
            INSERT INTO search_backlog (session_id)
            SELECT id FROM sessions WHERE state = 'closed' AND purged_at IS NULL
            """
        )

    await target.write(unit)
    copied, kept = await _count(target), await _count(source)
    if copied != kept:
        wrong = [t for t in TABLES if copied[t] != kept[t]]
        raise MigrationRefused(f"the counts differ after the copy in {', '.join(wrong)}")
    return copied


async def migrate(source_text: str, target_url: str) -> dict[str, int]:
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise MigrationRefused("--to must be a postgresql:// URL")
    source = open_database(parse_source(source_text))
    target = open_database(target_url)
    await source.open()
    try:
        await target.open()
        try:
            return await copy_store(source, target)
        finally:
            await target.close()
    finally:
        await source.close()

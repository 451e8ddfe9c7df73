"""One aiosqlite connection, configured safely, migrated on open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from rooms.store.migrations import MIGRATIONS, Migration

log = logging.getLogger("refdesk.rooms.store")


class DatabaseTooNew(Exception):
    """The database was written by a newer refdesk; refuse to touch it."""


class Database:
    """A single connection; writes are serialised by an asyncio lock and run in transactions."""

    def __init__(self, path: Path | str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self.path = path
        self._migrations = migrations
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._conn.execute("PRAGMA busy_timeout=5000")
        await self._conn.execute("PRAGMA synchronous=NORMAL")
        await self._migrate()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _migrate(self) -> None:
        conn = self.conn
        await conn.execute("CREATE TABLE IF NOT EXISTS version (version INTEGER NOT NULL)")
        async with conn.execute("SELECT version FROM version") as cur:
            row = await cur.fetchone()
        current = row[0] if row else 0
        if row is None:
            await conn.execute("INSERT INTO version (version) VALUES (0)")
        latest = self._migrations[-1].version if self._migrations else 0
        if current > latest:
            raise DatabaseTooNew(
                f"{self.path}: schema version {current} is newer than this refdesk knows "
                f"({latest}); upgrade refdesk"
            )
        for migration in self._migrations:
            if migration.version <= current:
                continue
            log.info("migrating store to v%d: %s", migration.version, migration.description)
            await conn.execute("BEGIN IMMEDIATE")
            try:
                await _executescript(conn, migration.sql)
                await conn.execute("UPDATE version SET version = ?", (migration.version,))
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialise a group of writes and commit them together (or not at all)."""
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")

    async def fetchone(self, sql: str, params: dict | tuple = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: dict | tuple = ()) -> list[aiosqlite.Row]:
        # One trip to the database thread (execute + fetch + close would be three).
        return list(await self.conn.execute_fetchall(sql, params))


async def _executescript(conn: aiosqlite.Connection, script: str) -> None:
    """Run each statement of a migration inside the already open transaction."""
    for statement in script.split(";"):
        if statement.strip():
            await conn.execute(statement)

"""One aiosqlite connection, configured safely, migrated on open.

Every unit of work holds the connection for its whole length: a transaction (``transaction()``)
or a single read (``fetchall``). Units nest: a store method called inside an open transaction of
the same task joins it (as a savepoint), so the desk can store a state change and the intents it
causes in one transaction. No read ever sees another unit's uncommitted writes.

Work that must only happen once a transaction has committed (waking listeners) is registered
with ``after_commit``; it is dropped if the transaction rolls back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from rooms.store.migrations import MIGRATIONS, Migration

log = logging.getLogger("refdesk.rooms.store")


class DatabaseTooNew(Exception):
    """The database was written by a newer refdesk; refuse to touch it."""


class Database:
    """A single connection; each unit of work holds it alone, writes run in transactions."""

    def __init__(self, path: Path | str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self.path = path
        self._migrations = migrations
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[object] | None = None
        # One list of after-commit callbacks per open (save)point, innermost last.
        self._pending: list[list[Callable[[], None]]] = []

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

    def _held_here(self) -> bool:
        return self._holder is not None and self._holder is asyncio.current_task()

    @property
    def in_transaction(self) -> bool:
        """True inside a transaction opened by the current task."""
        return self._held_here() and bool(self._pending)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run a group of writes as one transaction (or a savepoint inside the current one)."""
        if self._held_here():
            async with self._savepoint() as conn:
                yield conn
            return
        async with self._lock:
            self._holder = asyncio.current_task()
            conn = self.conn
            self._pending.append([])
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
                callbacks = self._pending.pop()
            finally:
                self._pending.clear()
                self._holder = None
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    @asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = self.conn
        name = f"sp{len(self._pending)}"
        await conn.execute(f"SAVEPOINT {name}")
        self._pending.append([])
        try:
            yield conn
        except BaseException:
            self._pending.pop()
            await conn.execute(f"ROLLBACK TO {name}")
            await conn.execute(f"RELEASE {name}")
            raise
        inner = self._pending.pop()
        await conn.execute(f"RELEASE {name}")
        self._pending[-1].extend(inner)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current task's transaction commits (now if none is open)."""
        if self.in_transaction:
            self._pending[-1].append(callback)
        else:
            callback()

    async def fetchone(self, sql: str, params: dict | tuple = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: dict | tuple = ()) -> list[aiosqlite.Row]:
        # One trip to the database thread (execute + fetch + close would be three). A read
        # outside a transaction waits for the one in progress: it never sees uncommitted rows.
        if self._held_here():
            return list(await self.conn.execute_fetchall(sql, params))
        async with self._lock:
            return list(await self.conn.execute_fetchall(sql, params))


async def _executescript(conn: aiosqlite.Connection, script: str) -> None:
    """Run each statement of a migration inside the already open transaction."""
    for statement in script.split(";"):
        if statement.strip():
            await conn.execute(statement)

"""The store's engine: a whole unit of work in one trip, on SQLite or on PostgreSQL.

A *unit of work* is an ``async def unit(tx)`` that runs the statements of one change (or one
consistent read) through ``tx``; ``Database.write(unit)`` runs it as one transaction and
``Database.read(unit)`` as one read. Units nest: a unit started inside another one joins it,
so the desk composes its operations (a first message, the ring it starts, the intents both
cause) into one transaction without knowing who called it.

* **SQLite**: one connection owned by one thread. A unit is one trip to that thread: the unit
  coroutine is driven there to its end, so it may await only ``tx`` (never the network; doing so
  is an error). The thread runs one unit at a time: no read ever sees another unit's
  uncommitted writes.
* **PostgreSQL** (asyncpg): a unit gets one pooled connection for its whole length. A write unit
  is one transaction (read committed); a read unit runs without one, since at read committed
  each statement sees what was committed when it started either way.

Work that must wait until a change is committed (announcing it) is registered with
``after_commit``; it runs on the event loop once the transaction has committed, and is dropped if
it rolls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from rooms.store.migrations import MIGRATIONS, Migration

log = logging.getLogger("refdesk.rooms.store")

T = TypeVar("T")
Row = Mapping[str, Any]
Params = Mapping[str, Any]
SQLITE = "sqlite"
POSTGRES = "postgres"
NOTIFY_CHANNEL = "refdesk"


class DatabaseTooNew(Exception):
    """The database was written by a newer refdesk; refuse to touch it."""


class DatabaseUnavailable(Exception):
    """The database cannot be reached (a PostgreSQL server down, a wrong URL)."""


class Tx(ABC):
    """The statements of one unit of work. SQL uses ``:name`` parameters on both engines."""

    dialect: str

    def __init__(self, writing: bool) -> None:
        self.writing = writing
        self.committed: list[Callable[[], None]] = []
        self.savepoints = 0
        self.notices: list[str] = []

    def notify(self, payload: str) -> None:
        """Tell the store's other processes ``payload`` when this unit commits (PostgreSQL
        ``NOTIFY``; a SQLite store has one process, so there is nobody to tell)."""
        self.notices.append(payload)

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed.append(callback)

    @abstractmethod
    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run a statement; returns the number of rows it changed."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Params | None = None) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]  # type: ignore[index]

    @abstractmethod
    async def lock_session(self, session_id: str) -> None:
        """Serialise the writers of one chat (PostgreSQL: a row lock; SQLite has one writer).

        Units that add messages or intents to a chat take it first, so that ids and sequence
        numbers of one chat are committed in the order they were given.
        """


async def _in_savepoint(tx: Tx, unit: Callable[[Tx], Awaitable[T]]) -> T:
    tx.savepoints += 1
    name = f"refdesk_sp{tx.savepoints}"
    announced = len(tx.committed)
    await tx.execute(f"SAVEPOINT {name}")
    try:
        result = await unit(tx)
    except BaseException:
        await tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
        await tx.execute(f"RELEASE SAVEPOINT {name}")
        del tx.committed[announced:]
        raise
    await tx.execute(f"RELEASE SAVEPOINT {name}")
    return result


_CURRENT: contextvars.ContextVar[Tx | None] = contextvars.ContextVar("refdesk_tx", default=None)
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


def current_tx() -> Tx | None:
    """The unit of work the caller runs in, if any."""
    return _CURRENT.get()


class Database(ABC):
    """One store. ``read``/``write`` run a unit of work; ``after_commit`` defers work."""

    dialect: str
    # Only this process writes the store (SQLite): units commit one after the other, here, so
    # what a unit saw at its commit still holds when its ``after_commit`` work runs.
    sole_writer = False

    def __init__(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self._migrations = migrations

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def read(self, unit: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._run(unit, writing=False)

    async def write(self, unit: Callable[[Tx], Awaitable[T]], *, savepoint: bool = False) -> T:
        """Run ``unit`` as one transaction, or inside the unit it is called from. With
        ``savepoint``, a nested unit that fails leaves nothing of itself behind (the caller
        may catch the error and go on)."""
        return await self._run(unit, writing=True, savepoint=savepoint)

    async def _run(
        self, unit: Callable[[Tx], Awaitable[T]], writing: bool, savepoint: bool = False
    ) -> T:
        current = _CURRENT.get()
        if current is not None:
            if writing and not current.writing:
                raise RuntimeError("a write inside a read-only unit of work")
            if not savepoint:
                return await unit(current)  # joins the unit it was called from
            return await _in_savepoint(current, unit)
        tx, result = await self._run_alone(unit, writing)
        for callback in tx.committed:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")
        return result

    @abstractmethod
    async def _run_alone(
        self, unit: Callable[[Tx], Awaitable[T]], writing: bool
    ) -> tuple[Tx, T]: ...

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        """One query as a unit of its own (reports, tests, the odd look-up)."""
        return await self.read(lambda tx: tx.fetchall(sql, params))

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        return await self.read(lambda tx: tx.fetchone(sql, params))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current unit commits (at once outside a unit)."""
        tx = _CURRENT.get()
        if tx is not None and tx.writing:
            tx.after_commit(callback)
        else:
            callback()

    def _check_version(self, current: int, where: str) -> None:
        latest = self._migrations[-1].version if self._migrations else 0
        if current > latest:
            raise DatabaseTooNew(
                f"{where}: schema version {current} is newer than this refdesk knows "
                f"({latest}); upgrade refdesk"
            )


# -- SQLite ---------------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    return value


class SqliteTx(Tx):
    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection, writing: bool) -> None:
        super().__init__(writing)
        self.conn = conn

    @staticmethod
    def _params(params: Params | None) -> dict[str, Any]:
        return {k: _sqlite_value(v) for k, v in (params or {}).items()}

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return self.conn.execute(sql, self._params(params)).rowcount

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return self.conn.execute(sql, self._params(params)).fetchall()

    async def lock_session(self, session_id: str) -> None:
        return None  # one writer at a time already


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a unit's coroutine to its end right here (it awaits only the database)."""
    try:
        awaited = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except RuntimeError as exc:
        if "event loop" not in str(exc):
            raise
        raise RuntimeError(f"a unit of work may only await the database ({exc})") from None
    coro.close()
    raise RuntimeError(f"a unit of work may only await the database, not {awaited!r}")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the event loop: hand a job's outcome to whoever awaits it (if anyone still does)."""
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Worker:
    """The store's own thread: runs one job at a time, in the order given.

    A trip is one ``SimpleQueue.put`` there and one ``call_soon_threadsafe`` back: about a
    third of what ``run_in_executor`` costs (its executor's locks, semaphore and the two
    chained futures of every call), which on the message path was more than the SQL itself.
    A job whose caller was cancelled before it started is skipped, as an executor skips it.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return future

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, future, loop = job
            if future.cancelled():
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass
            del job, fn, future, result, error

    def stop(self) -> None:
        """Finish the jobs given so far, then end the thread."""
        self._jobs.put(None)
        self._thread.join()


class SqliteDatabase(Database):
    """One connection, used by one thread only; each unit of work is one trip there."""

    dialect = SQLITE
    sole_writer = True

    def __init__(self, path: Path | str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        super().__init__(migrations)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._worker: _Worker | None = None

    async def open(self) -> None:
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._worker = _Worker("refdesk-sqlite")
        await self._call(self._connect)

    async def _call(self, fn: Callable[[], T]) -> T:
        assert self._worker is not None, "database is not open"
        return await self._worker.call(fn)

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._conn = conn
        self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM version").fetchone()
        if row is None:
            conn.execute("INSERT INTO version (version) VALUES (0)")
        current = row[0] if row else 0
        self._check_version(current, str(self.path))
        for migration in self._migrations:
            if migration.version <= current:
                continue
            log.info("migrating store to v%d: %s", migration.version, migration.description)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.statements(SQLITE):
                    conn.execute(statement)
                conn.execute("UPDATE version SET version = ?", (migration.version,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    async def close(self) -> None:
        if self._worker is None:
            return
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        worker, self._worker = self._worker, None
        worker.stop()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def _run_alone(self, unit: Callable[[Tx], Awaitable[T]], writing: bool) -> tuple[Tx, T]:
        return await self._call(lambda: self._in_thread(unit, writing))

    def _in_thread(self, unit: Callable[[Tx], Awaitable[T]], writing: bool) -> tuple[Tx, T]:
        conn = self.conn
        tx = SqliteTx(conn, writing)
        token = _CURRENT.set(tx)
        try:
            # A read is a transaction too: one snapshot, even with another process writing.
            conn.execute("BEGIN IMMEDIATE" if writing else "BEGIN")
            try:
                result: T = _drive(unit(tx))  # type: ignore[arg-type]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            _CURRENT.reset(token)
        return tx, result


# -- PostgreSQL -----------------------------------------------------------------------------

_TRANSLATED: dict[str, tuple[str, tuple[str, ...]]] = {}


def _postgres_sql(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` parameters become ``$1…`` (cached): the SQL is written once for both."""
    found = _TRANSLATED.get(sql)
    if found is None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        found = _TRANSLATED[sql] = (_NAMED.sub(number, sql), tuple(names))
    return found


class PostgresTx(Tx):
    dialect = POSTGRES

    def __init__(self, conn: Any, writing: bool) -> None:
        super().__init__(writing)
        self.conn = conn

    @staticmethod
    def _args(names: Sequence[str], params: Params | None) -> list[Any]:
        given = params or {}
        return [given[name] for name in names]

    async def execute(self, sql: str, params: Params | None = None) -> int:
        text, names = _postgres_sql(sql)
        status = await self.conn.execute(text, *self._args(names, params))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        text, names = _postgres_sql(sql)
        return list(await self.conn.fetch(text, *self._args(names, params)))

    async def lock_session(self, session_id: str) -> None:
        await self.execute("SELECT 1 FROM sessions WHERE id = :id FOR UPDATE", {"id": session_id})


def _quoted(text: str) -> str:
    """``text`` as an SQL string literal, dollar-quoted with a tag it does not contain (so no
    escaping rules, whatever ``standard_conforming_strings`` says)."""
    tag = "rd"
    while f"${tag}$" in text:
        tag += "_"
    return f"${tag}${text}${tag}$"


def _commit(notices: Sequence[str]) -> str:
    """COMMIT, after the unit's notices (delivered by PostgreSQL when, and if, it commits):
    one round trip for all of them (the simple query protocol takes several statements)."""
    channel = _quoted(NOTIFY_CHANNEL)
    return "".join(f"SELECT pg_notify({channel}, {_quoted(n)}); " for n in notices) + "COMMIT"


async def _keep_session(conn: Any) -> None:
    """What the pool does to a connection it takes back, beyond ending a transaction left open:
    nothing. asyncpg's default is one more round trip per unit of work (``RESET ALL``,
    ``UNLISTEN *``, …) for session state that units never set (they only run statements inside
    their transaction; listening has a connection of its own)."""


class PostgresDatabase(Database):
    """An asyncpg pool; each unit of work holds one connection, in one transaction."""

    dialect = POSTGRES

    def __init__(self, url: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        super().__init__(migrations)
        self.url = url
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=10, reset=_keep_session
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(
                f"cannot reach PostgreSQL at {_safe(self.url)}: {exc}"
            ) from None
        async with self._pool.acquire() as conn:
            await self._migrate(conn)

    async def _migrate(self, conn: Any) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS version (version INTEGER NOT NULL)")
        async with conn.transaction():
            await conn.execute("LOCK TABLE version IN EXCLUSIVE MODE")  # one migrator at a time
            current = await conn.fetchval("SELECT version FROM version")
            if current is None:
                await conn.execute("INSERT INTO version (version) VALUES (0)")
                current = 0
        self._check_version(current, _safe(self.url))
        for migration in self._migrations:
            if migration.version <= current:
                continue
            log.info("migrating store to v%d: %s", migration.version, migration.description)
            async with conn.transaction():
                await conn.execute("LOCK TABLE version IN EXCLUSIVE MODE")
                if await conn.fetchval("SELECT version FROM version") >= migration.version:
                    continue  # another process did it meanwhile
                for statement in migration.statements(POSTGRES):
                    await conn.execute(statement)
                await conn.execute("UPDATE version SET version = $1", migration.version)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("database is not open")
        return self._pool

    async def _run_alone(self, unit: Callable[[Tx], Awaitable[T]], writing: bool) -> tuple[Tx, T]:
        """A write unit is BEGIN, its statements, then its notices with COMMIT: two round trips
        besides the statements. A read unit runs its statements outside a transaction: at READ
        COMMITTED each statement sees what was committed when it started, inside a transaction
        or not, so BEGIN and COMMIT would add two round trips and nothing else."""
        async with self.pool.acquire() as conn:
            tx = PostgresTx(conn, writing)
            token = _CURRENT.set(tx)
            try:
                if not writing:
                    return tx, await unit(tx)
                await conn.execute("BEGIN")
                try:
                    result = await unit(tx)
                    await conn.execute(_commit(tx.notices))
                except BaseException:
                    if not conn.is_closed() and conn.is_in_transaction():
                        # Else the pool rolls back when it takes the connection back.
                        with contextlib.suppress(Exception):
                            await conn.execute("ROLLBACK")
                    raise
                return tx, result
            finally:
                _CURRENT.reset(token)

    async def notify(self, payload: str) -> None:
        """Tell the other processes at once (for what is not stored, such as typing)."""
        await self.pool.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload)

    async def listen(self, callback: Callable[[str], None]) -> Callable[[], Awaitable[None]]:
        """Call ``callback`` with every payload the store's processes notify; returns the
        coroutine function that stops listening."""
        import asyncpg

        conn = await asyncpg.connect(self.url)

        def received(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            callback(payload)

        await conn.add_listener(NOTIFY_CHANNEL, received)

        async def stop() -> None:
            await conn.remove_listener(NOTIFY_CHANNEL, received)
            await conn.close()

        return stop


def _safe(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)


def open_database(where: str | Path, migrations: tuple[Migration, ...] = MIGRATIONS) -> Database:
    """The database for a ``postgresql://`` URL, or the SQLite file at a path."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text, migrations)
    return SqliteDatabase(where, migrations)

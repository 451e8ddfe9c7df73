"""Persistence for the desk: one module per table, units of work on SQLite or PostgreSQL.

``database.py`` runs units of work (one trip each); the table modules (``sessions``,
``messages``, ``roster``, ``notes``, ``feedback``, ``mail``, ``verification_audit``, ``bans``,
``outbox``, ``desk_state``) hold each table's row type and queries, as functions of a ``Tx``.
"""

import sqlite3

from rooms.store.database import (
    Database,
    DatabaseTooNew,
    DatabaseUnavailable,
    PostgresDatabase,
    SqliteDatabase,
    Tx,
    current_tx,
    open_database,
)

# Store errors worth retrying (a locked or unreachable database), as opposed to errors in the
# data itself.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
try:  # PostgreSQL: a dropped connection, the server shutting down
    import asyncpg

    TRANSIENT_ERRORS += (
        asyncpg.PostgresConnectionError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.AdminShutdownError,
        asyncpg.exceptions.SerializationError,
        asyncpg.exceptions.DeadlockDetectedError,
        asyncpg.InterfaceError,
    )
except ImportError:  # pragma: no cover - asyncpg is a dependency
    pass

__all__ = [
    "TRANSIENT_ERRORS",
    "Database",
    "DatabaseTooNew",
    "DatabaseUnavailable",
    "PostgresDatabase",
    "SqliteDatabase",
    "Tx",
    "current_tx",
    "open_database",
]

"""Persistence for the desk: SQLite (aiosqlite, WAL) with numbered migrations."""

import sqlite3

from rooms.store.database import Database, DatabaseTooNew
from rooms.store.repository import Store

# Store errors worth retrying (a locked or briefly unavailable database), as opposed to errors
# in the data itself.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)

__all__ = ["TRANSIENT_ERRORS", "Database", "DatabaseTooNew", "Store"]

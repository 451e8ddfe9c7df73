"""Persistence for the desk: SQLite (aiosqlite, WAL) with numbered migrations."""

from rooms.store.database import Database, DatabaseTooNew
from rooms.store.repository import Store

__all__ = ["Database", "DatabaseTooNew", "Store"]

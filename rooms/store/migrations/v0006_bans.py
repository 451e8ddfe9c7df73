"""v6: banned clients."""

DESCRIPTION = "banned clients"

SQLITE = """
ALTER TABLE sessions ADD COLUMN client_key TEXT;
CREATE TABLE bans (
    client_key TEXT PRIMARY KEY,
    reason     TEXT,
    banned_by  TEXT NOT NULL,
    session_id TEXT,
    until      TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""

# PostgreSQL desks start from the whole v7 schema (v0007_intents.py).
POSTGRES = ""

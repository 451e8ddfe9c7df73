"""v2: queue, owner, roster, notes, message versions and adapter state."""

DESCRIPTION = "queue, owner, roster, notes, message versions and adapter state"

SQLITE = """
ALTER TABLE sessions ADD COLUMN owner TEXT;
ALTER TABLE sessions ADD COLUMN owner_name TEXT;
ALTER TABLE sessions ADD COLUMN claimed_at TEXT;
ALTER TABLE sessions ADD COLUMN queued_at TEXT;
ALTER TABLE sessions ADD COLUMN escalated_at TEXT;
ALTER TABLE sessions ADD COLUMN read_up_to INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_queue ON sessions (queued_at) WHERE state = 'open' AND owner IS NULL;
ALTER TABLE messages ADD COLUMN seq INTEGER;
ALTER TABLE messages ADD COLUMN html TEXT;
ALTER TABLE messages ADD COLUMN edited_at TEXT;
ALTER TABLE messages ADD COLUMN deleted_at TEXT;
UPDATE messages SET seq = id;
CREATE UNIQUE INDEX messages_seq ON messages (seq);
CREATE INDEX messages_session_seq ON messages (session_id, seq);
CREATE TABLE roster (
    user_id    TEXT PRIMARY KEY,
    on_duty    INTEGER NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE notes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    author     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE adapter_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
)
"""

# PostgreSQL desks start from the whole v7 schema (v0007_intents.py).
POSTGRES = ""

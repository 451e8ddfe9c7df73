"""v1: sessions, messages and inbound dedup."""

DESCRIPTION = "sessions, messages and inbound dedup"

SQLITE = """
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    visitor_name  TEXT NOT NULL,
    email         TEXT NOT NULL,
    member_number TEXT,
    topic         TEXT NOT NULL,
    language      TEXT NOT NULL,
    page_url      TEXT,
    user_agent    TEXT,
    created_at    TEXT NOT NULL,
    closed_at     TEXT,
    closed_by     TEXT,
    room_id       TEXT UNIQUE
);
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id   TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    origin       TEXT NOT NULL CHECK (origin IN ('visitor', 'librarian', 'desk')),
    body         TEXT NOT NULL,
    sender_name  TEXT,
    sender_id    TEXT,
    client_id    TEXT,
    remote_id    TEXT UNIQUE,
    needs_delivery INTEGER NOT NULL DEFAULT 0,
    delivered_at TEXT,
    created_at   TEXT NOT NULL,
    UNIQUE (session_id, client_id)
);
CREATE INDEX messages_session ON messages (session_id, id);
CREATE INDEX messages_pending ON messages (id)
    WHERE needs_delivery = 1 AND delivered_at IS NULL;
CREATE TABLE inbound_batches (
    batch_id    TEXT PRIMARY KEY,
    received_at TEXT NOT NULL
);
CREATE TABLE inbound_events (
    event_id    TEXT PRIMARY KEY,
    handled_at  TEXT NOT NULL
);
"""

# PostgreSQL desks start from the whole v7 schema (v0007_intents.py).
POSTGRES = ""

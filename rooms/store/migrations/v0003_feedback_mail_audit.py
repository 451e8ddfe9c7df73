"""v3: feedback, outgoing mail, verification audit."""

DESCRIPTION = "feedback, outgoing mail, verification audit"

SQLITE = """
CREATE TABLE feedback (
    session_id TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment    TEXT,
    librarian  TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX feedback_librarian ON feedback (librarian);
CREATE TABLE mail_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id   TEXT REFERENCES sessions (id) ON DELETE SET NULL,
    kind         TEXT NOT NULL,
    dedup_key    TEXT UNIQUE,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    text_body    TEXT NOT NULL,
    html_body    TEXT,
    created_at   TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    sent_at      TEXT
);
CREATE INDEX mail_pending ON mail_outbox (id) WHERE sent_at IS NULL;
CREATE TABLE verification_audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    client_key TEXT NOT NULL,
    requested_by TEXT,
    outcome    TEXT NOT NULL,
    created_at TEXT NOT NULL
)
"""

# PostgreSQL desks start from the whole v7 schema (v0007_intents.py).
POSTGRES = ""

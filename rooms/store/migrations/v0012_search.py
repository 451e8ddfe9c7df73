"""v12: past-chat search — one index entry per closed chat, and the chats still to index.

The index holds the chat's words already stemmed in Python (rooms/words.py), so both engines
match the same words: SQLite in an FTS5 table (ranked with bm25), PostgreSQL in a ``tsvector``
column with a GIN index (ranked with ts_rank). The stems cannot be made in SQL, so this migration
only lists the closed chats kept so far in ``search_backlog``; the desk indexes them in short
batches once it runs (``rooms.search.Search.backfill``).
"""

DESCRIPTION = "past-chat search index"

_BACKLOG = """
CREATE TABLE search_backlog (
    session_id  TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE
);
INSERT INTO search_backlog (session_id)
    SELECT id FROM sessions WHERE state = 'closed' AND purged_at IS NULL
"""

# SQLite: search_docs maps a chat to its FTS5 row (an FTS5 table has only an integer rowid);
# the FTS5 table keeps the stemmed words themselves (``body``).
SQLITE = (
    """
CREATE TABLE search_docs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL UNIQUE REFERENCES sessions (id) ON DELETE CASCADE,
    indexed_at  TEXT NOT NULL
);
CREATE VIRTUAL TABLE search_index USING fts5 (body, tokenize = 'unicode61 remove_diacritics 2');
"""
    + _BACKLOG
)

POSTGRES = (
    """
CREATE TABLE search_docs (
    session_id  TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    body        TSVECTOR NOT NULL,
    indexed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX search_docs_body ON search_docs USING GIN (body);
"""
    + _BACKLOG
)

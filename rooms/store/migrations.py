"""Numbered schema migrations. Append only: never edit one that has shipped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "sessions, messages and inbound dedup",
        """
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
        """,
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "queue, owner, roster, notes, message versions and adapter state",
        """
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
        """,
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "feedback, outgoing mail, verification audit",
        """
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
        """,
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "verification state and offline sessions",
        """
        ALTER TABLE sessions ADD COLUMN verification TEXT;
        ALTER TABLE sessions ADD COLUMN offline INTEGER NOT NULL DEFAULT 0
        """,
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "what the visitor has seen and what was emailed",
        """
        ALTER TABLE sessions ADD COLUMN visitor_seen_up_to INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE sessions ADD COLUMN emailed_up_to INTEGER NOT NULL DEFAULT 0
        """,
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "banned clients",
        """
        ALTER TABLE sessions ADD COLUMN client_key TEXT;
        CREATE TABLE bans (
            client_key TEXT PRIMARY KEY,
            reason     TEXT,
            banned_by  TEXT NOT NULL,
            session_id TEXT,
            until      TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """,
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "durable intents; inbound dedup by event id only; poison events",
        """
        CREATE TABLE intents (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            lane       TEXT NOT NULL,
            kind       TEXT NOT NULL,
            payload    TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts   INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            done_at    TEXT,
            failed_at  TEXT
        );
        CREATE INDEX intents_pending ON intents (lane, id)
            WHERE done_at IS NULL AND failed_at IS NULL;
        INSERT INTO intents (lane, kind, payload, created_at)
            SELECT session_id, 'message', json_object('message_id', id), created_at
            FROM messages WHERE needs_delivery = 1 AND delivered_at IS NULL ORDER BY id;
        DROP INDEX messages_pending;
        DROP TABLE inbound_batches;
        CREATE TABLE inbound_failures (
            event_id   TEXT PRIMARY KEY,
            room_id    TEXT,
            event_type TEXT,
            reason     TEXT NOT NULL,
            failed_at  TEXT NOT NULL
        )
        """,
    ),
)

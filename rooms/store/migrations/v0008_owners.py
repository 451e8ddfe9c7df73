"""v8: each table with its owner; sessions keep their order of arrival on every engine."""

DESCRIPTION = "the bridge's own tables; the desk's secrets; order of arrival"

_SHARED = """
ALTER TABLE adapter_state RENAME TO bridge_state;
ALTER TABLE inbound_events RENAME TO bridge_inbound_events;
ALTER TABLE inbound_failures RENAME TO bridge_inbound_failures;
CREATE TABLE desk_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO desk_state (key, value)
    SELECT key, value FROM bridge_state WHERE key IN ('client_key_salt', 'resume_link_secret');
DELETE FROM bridge_state WHERE key IN ('client_key_salt', 'resume_link_secret')
"""

SQLITE = (
    _SHARED
    + """;
ALTER TABLE sessions ADD COLUMN arrival INTEGER;
UPDATE sessions SET arrival = rowid;
CREATE UNIQUE INDEX sessions_arrival ON sessions (arrival)
"""
)

POSTGRES = _SHARED

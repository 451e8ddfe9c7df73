"""v4: verification state and offline sessions."""

DESCRIPTION = "verification state and offline sessions"

SQLITE = """
ALTER TABLE sessions ADD COLUMN verification TEXT;
ALTER TABLE sessions ADD COLUMN offline INTEGER NOT NULL DEFAULT 0
"""

# PostgreSQL desks start from the whole v7 schema (v0007_intents.py).
POSTGRES = ""

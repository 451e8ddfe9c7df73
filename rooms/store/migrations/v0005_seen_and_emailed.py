"""v5: what the visitor has seen and what was emailed."""

DESCRIPTION = "what the visitor has seen and what was emailed"

SQLITE = """
ALTER TABLE sessions ADD COLUMN visitor_seen_up_to INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN emailed_up_to INTEGER NOT NULL DEFAULT 0
"""

# PostgreSQL desks start from the whole v7 schema (v0007_intents.py).
POSTGRES = ""

"""Librarian commands: declared once (name, arguments, help, where), dispatched, !help generated.

The registry and the dispatch live in :mod:`bridge.commands.base`; this package only collects
the topic modules, so that importing it registers every command.
"""

from __future__ import annotations

from bridge.commands import desk, privacy, reports, search, session
from bridge.commands.base import DESK, REGISTRY, SESSION, Context, dispatch, help_text

__all__ = [
    "DESK",
    "REGISTRY",
    "SESSION",
    "Context",
    "desk",
    "dispatch",
    "help_text",
    "privacy",
    "reports",
    "search",
    "session",
]

"""One template formats and parses ghost user IDs and session room aliases."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rooms.ids import SessionID


@dataclass(frozen=True)
class GhostTemplate:
    """``@{prefix}{session_id}:{domain}``: the visitor of one session."""

    prefix: str
    domain: str

    def localpart(self, session_id: SessionID) -> str:
        return f"{self.prefix}{session_id}"

    def format(self, session_id: SessionID) -> str:
        return f"@{self.localpart(session_id)}:{self.domain}"

    def parse(self, mxid: str) -> SessionID | None:
        match = re.fullmatch(
            rf"@{re.escape(self.prefix)}([a-z0-9]+):{re.escape(self.domain)}", mxid
        )
        return SessionID(match.group(1)) if match else None

    def is_ghost(self, mxid: str) -> bool:
        return self.parse(mxid) is not None

    def alias_localpart(self, session_id: SessionID) -> str:
        """Room alias of the session's room: lets a retried room creation find the first one."""
        return f"{self.prefix}s_{session_id}"

    def user_regex(self) -> str:
        return f"@{re.escape(self.prefix)}.*:{re.escape(self.domain)}"

    def alias_regex(self) -> str:
        return f"#{re.escape(self.prefix)}.*:{re.escape(self.domain)}"

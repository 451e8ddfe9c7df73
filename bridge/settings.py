"""What the bridge needs to know, given to it by the composition root (``refdesk/wiring.py``).

The bridge never reads the config file or its types: it gets this one object, so the Matrix
adapter and the config can change apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BridgeSettings:
    homeserver_url: str
    """Where the client-server API is reached (``http://127.0.0.1:8008``)."""
    domain: str
    """The homeserver's server name: the part after ``:`` in user ids and aliases."""
    appservice_id: str
    appservice_url: str
    """Where the homeserver reaches the appservice (for the registration)."""
    listen_host: str
    listen_port: int
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)
    bot_localpart: str
    bot_displayname: str
    ghost_prefix: str
    desk_name: str
    librarians: tuple[str, ...]
    supervisors: tuple[str, ...]
    timezone: str
    """The library's time zone (an IANA name), for times shown in rooms."""
    topic_labels: Mapping[str, str]
    """Each topic id's label in the desk's default language."""
    desk_room_history_days: int | None = None
    """How long the desk room's own history is kept (the chats' retention; None: forever): set
    as its ``m.room.retention``, which a homeserver with retention enabled applies."""
    dashboard_url: str | None = None
    """Where the report dashboard is served (``https://desk.example/reports``): ``!report``
    sends viewers a signed link into it. None: no dashboard links."""
    admin_token: str | None = field(default=None, repr=False)
    """A homeserver admin's token: a purged chat's room is deleted with Synapse's admin API
    (without one, its messages are redacted)."""

    @property
    def bot_mxid(self) -> str:
        return f"@{self.bot_localpart}:{self.domain}"

    @property
    def staff(self) -> tuple[str, ...]:
        """Librarians, then supervisors, each once: who is in the desk's Space and room."""
        return tuple(dict.fromkeys((*self.librarians, *self.supervisors)))

"""What the widget server needs to know, given to it by the composition root
(``refdesk/wiring.py``).

The widget server never reads the config file or its types: it gets this one object, so the
visitor adapter and the config can change apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from rooms.language import Language
from widget_server.client import IPNetwork


@dataclass(frozen=True)
class Invitation:
    """The widget's "can we help?" prompt: after ``after`` seconds on a page matching one of
    ``pages`` (``*`` is any text; none: every page), with ``text`` in the visitor's language."""

    after: int
    pages: tuple[str, ...]
    text: Mapping[str, str]


@dataclass(frozen=True)
class WidgetSettings:
    own_origin: str
    """The origin of the desk's public URL (``https://desk.lib.example``), where /demo is
    served: always allowed."""
    allowed_origins: tuple[str, ...]
    """Normalised origins (``https://lib.example``, lower case, no default port) or ``*``."""
    trusted_proxies: tuple[IPNetwork, ...]
    forwarded_header: str
    """``x-forwarded-for`` or ``forwarded``: what trusted proxies say the visitor's address is."""
    max_message_length: int
    new_sessions_per_minute: int
    desk_name: str
    default_language: str
    timezone: str
    """The library's time zone (an IANA name), for the next opening in the visitor's words."""
    topics: Mapping[str, Mapping[str, str]]
    """Each topic id's label per language, in the pre-chat form's order."""
    languages: tuple[Language, ...]
    """The languages offered to visitors, the default first: the widget's words come from them."""
    when_closed: str = "offline_form"
    """What the widget does while the desk is closed: ``offline_form`` or ``hide``."""
    sole_writer: bool = False
    """This process alone writes the store (SQLite): its desk events are every change there is,
    in commit order (see ``SessionSignals``)."""
    invitation: Invitation | None = None
    """Off (None) unless the config turns it on."""
    retention_days: int | None = 180
    """How long a closed chat is kept (None: forever), for the widget's privacy line."""
    privacy_notice: Mapping[str, str] = field(default_factory=dict)
    """The library's own privacy line per language (empty: the widget's words)."""
    privacy_link: str | None = None
    """The library's privacy policy page, linked from the widget."""
    dashboard: bool = False
    """Serve the report dashboard under /reports (widget_server/dashboard.py)."""
    verify_openid: Callable[[str, str], Awaitable[str | None]] | None = field(
        default=None, repr=False
    )
    """(OpenID access token, server name) → the user the homeserver vouches for, or None: how
    the dashboard pinned in Element knows its viewer."""

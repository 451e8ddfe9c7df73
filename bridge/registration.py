"""The appservice registration a homeserver admin installs (as mautrix bridges generate it)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from bridge.ghosts import GhostTemplate
from bridge.settings import BridgeSettings


def new_token() -> str:
    return secrets.token_urlsafe(48)


def registration(settings: BridgeSettings) -> dict[str, Any]:
    """Registration YAML content for the bridge's tokens and namespaces."""
    ghosts = GhostTemplate(settings.ghost_prefix, settings.domain)
    return {
        "id": settings.appservice_id,
        "url": settings.appservice_url,
        "as_token": settings.as_token,
        "hs_token": settings.hs_token,
        "sender_localpart": settings.bot_localpart,
        "rate_limited": False,
        "namespaces": {
            "users": [
                {"exclusive": True, "regex": ghosts.user_regex()},
                {
                    "exclusive": True,
                    "regex": f"@{re.escape(settings.bot_localpart)}:{re.escape(ghosts.domain)}",
                },
            ],
            "aliases": [
                {"exclusive": True, "regex": ghosts.alias_regex()},
                {
                    "exclusive": True,
                    "regex": f"#{re.escape(settings.bot_localpart)}_.*:{re.escape(ghosts.domain)}",
                },
            ],
            "rooms": [],
        },
        "receive_ephemeral": True,
        "de.sorunome.msc2409.push_ephemeral": True,
    }

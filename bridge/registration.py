"""The appservice registration a homeserver admin installs (as mautrix bridges generate it)."""

from __future__ import annotations

import re
import secrets
from typing import Any

from bridge.ghosts import GhostTemplate
from refdesk.config import Config


def new_token() -> str:
    return secrets.token_urlsafe(48)


def registration(config: Config) -> dict[str, Any]:
    """Registration YAML content for this config's tokens and namespaces."""
    asc = config.appservice
    ghosts = GhostTemplate(asc.ghost_prefix, config.homeserver.domain)
    return {
        "id": asc.id,
        "url": asc.url,
        "as_token": asc.as_token,
        "hs_token": asc.hs_token,
        "sender_localpart": asc.bot_localpart,
        "rate_limited": False,
        "namespaces": {
            "users": [
                {"exclusive": True, "regex": ghosts.user_regex()},
                {
                    "exclusive": True,
                    "regex": f"@{re.escape(asc.bot_localpart)}:{re.escape(ghosts.domain)}",
                },
            ],
            "aliases": [
                {"exclusive": True, "regex": ghosts.alias_regex()},
                {
                    "exclusive": True,
                    "regex": f"#{re.escape(asc.bot_localpart)}_.*:{re.escape(ghosts.domain)}",
                },
            ],
            "rooms": [],
        },
        "receive_ephemeral": True,
        "de.sorunome.msc2409.push_ephemeral": True,
    }

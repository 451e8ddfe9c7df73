"""Who an OpenID token from the Matrix widget API belongs to, asked of our own homeserver
(``/_matrix/federation/v1/openid/userinfo``): how the report dashboard pinned in Element knows
its viewer without a password. Tokens of other servers are refused: viewers are our users."""

from __future__ import annotations

import logging
from urllib.parse import quote

import aiohttp

log = logging.getLogger("refdesk.openid")


class OpenIDVerifier:
    def __init__(self, homeserver_url: str, domain: str) -> None:
        self.homeserver_url = homeserver_url.rstrip("/")
        self.domain = domain

    async def __call__(self, access_token: str, server_name: str) -> str | None:
        if server_name != self.domain:
            return None
        url = (
            f"{self.homeserver_url}/_matrix/federation/v1/openid/userinfo"
            f"?access_token={quote(access_token, safe='')}"
        )
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
                if response.status != 200:
                    return None
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("the homeserver could not check an OpenID token: %s", exc)
            return None
        user_id = body.get("sub") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not user_id.endswith(f":{self.domain}"):
            return None
        return user_id

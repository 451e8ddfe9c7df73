"""Koha's REST API as the member directory.

One call per check: ``GET /api/v1/patrons?cardnumber=…&_match=exact`` (Koha's default match is
"contains", so ``_match=exact`` matters), authenticated with HTTP Basic (the ``RESTBasicAuth``
system preference) or an OAuth2 client-credentials token from ``POST /api/v1/oauth/token``
(``RESTOAuth2ClientCredentials``), cached until shortly before it expires. The API user needs
the ``borrowers`` permission (view patron records).

Koha is asked only for the card number; the date of birth or phone the visitor typed is
compared here against the patron's ``date_of_birth``, ``phone``, ``mobile`` and ``sms_number``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import aiohttp

from directories.http_json import JsonClient, Unavailable
from rooms.directory import (
    LookupResult,
    MemberRecord,
    Outcome,
    check,
    date_of,
    normalise_card,
    phones_of,
)

log = logging.getLogger("refdesk.directories.koha")

TOKEN_MARGIN = 30.0
"""Seconds before its announced expiry at which a cached OAuth token is renewed."""

PHONE_FIELDS = ("mobile", "phone", "sms_number")


@dataclass(frozen=True)
class KohaBasicAuth:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class KohaOAuth:
    client_id: str
    client_secret: str = field(repr=False)


KohaAuth = KohaBasicAuth | KohaOAuth


def api_root(base_url: str) -> str:
    """``https://staff.lib.example`` and ``…/api/v1`` both give the API root."""
    root = base_url.rstrip("/")
    return root if root.endswith("/api/v1") else f"{root}/api/v1"


class KohaDirectory:
    def __init__(
        self,
        base_url: str,
        auth: KohaAuth,
        *,
        timeout: float = 5.0,
        category_names: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api_root(base_url)
        self._auth = auth
        self.category_names = dict(category_names or {})
        self._client = JsonClient(timeout, session)
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self.token_requests = 0  # how many tokens were fetched (visible to tests and metrics)

    def __repr__(self) -> str:
        kind = "basic" if isinstance(self._auth, KohaBasicAuth) else "oauth"
        return f"KohaDirectory(api={self.api!r}, auth={kind})"

    async def verify(self, fields: Mapping[str, str], today: date) -> LookupResult:
        card = " ".join(fields.get("member_number", "").split())
        if not card:
            return check(None, fields, today)
        try:
            patrons = await self._search(card)
        except Unavailable as exc:
            log.warning("Koha at %s unavailable: %s", self.api, exc.reason)
            return LookupResult(Outcome.UNAVAILABLE)
        wanted = normalise_card(card)
        matches = [
            p
            for p in patrons
            if isinstance(p, dict)
            and isinstance(p.get("cardnumber"), str)
            and normalise_card(p["cardnumber"]) == wanted
        ]
        if len(matches) > 1:
            log.warning("Koha has %d patrons with the same card number", len(matches))
        return check(self._record(matches[0]) if matches else None, fields, today)

    async def _search(self, card: str) -> list[Any]:
        params = {"cardnumber": card, "_match": "exact", "_per_page": "5"}
        for retry in (False, True):
            headers = {"Accept": "application/json", "Authorization": await self._authorization()}
            status, data = await self._client.request(
                "GET", f"{self.api}/patrons", headers=headers, params=params
            )
            if status == 401 and isinstance(self._auth, KohaOAuth) and not retry:
                self._token = None  # revoked or expired early: fetch a new one, once
                continue
            if status in (401, 403):
                raise Unavailable(
                    f"HTTP {status}: Koha refused the API user "
                    "(check verification.directory.auth and its borrowers permission)"
                )
            if status != 200:
                raise Unavailable(f"HTTP {status} from the patrons search")
            if not isinstance(data, list):
                raise Unavailable("the patrons search did not answer with a list")
            return data
        raise Unavailable("HTTP 401 with a fresh OAuth token")

    async def _authorization(self) -> str:
        if isinstance(self._auth, KohaBasicAuth):
            pair = f"{self._auth.username}:{self._auth.password}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        return "Bearer " + await self._bearer_token(self._auth)

    async def _bearer_token(self, auth: KohaOAuth) -> str:
        async with self._token_lock:
            if self._token is not None and self._monotonic() < self._token_until:
                return self._token
            self.token_requests += 1
            status, body = await self._client.request(
                "POST",
                f"{self.api}/oauth/token",
                headers={"Accept": "application/json"},
                data={
                    "grant_type": "client_credentials",
                    "client_id": auth.client_id,
                    "client_secret": auth.client_secret,
                },
            )
            if status != 200:
                raise Unavailable(
                    f"HTTP {status} from the OAuth token endpoint "
                    "(check verification.directory.auth.client_id and client_secret)"
                )
            token = body.get("access_token") if isinstance(body, dict) else None
            expires_in = body.get("expires_in", 3600) if isinstance(body, dict) else 0
            if not isinstance(token, str) or not token:
                raise Unavailable("the OAuth token endpoint answered without an access_token")
            if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
                expires_in = 0
            self._token = token
            self._token_until = self._monotonic() + max(0.0, expires_in - TOKEN_MARGIN)
            return token

    def _record(self, patron: dict[str, Any]) -> MemberRecord:
        names = [
            patron.get("preferred_name") or patron.get("firstname"),
            patron.get("surname"),
        ]
        name = " ".join(" ".join(n.split()) for n in names if isinstance(n, str) and n.strip())
        category = patron.get("category_id")
        return MemberRecord(
            card_number=str(patron["cardnumber"]),
            name=name or str(patron["cardnumber"]),
            member_type=(
                self.category_names.get(category, category) if isinstance(category, str) else None
            ),
            expires=date_of(patron.get("expiry_date")),
            date_of_birth=date_of(patron.get("date_of_birth")),
            phones=phones_of(patron.get(key) for key in PHONE_FIELDS),
        )

    async def close(self) -> None:
        await self._client.close()

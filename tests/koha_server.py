"""A small Koha REST API for tests, in the shape Koha documents (api/v1/swagger).

* ``POST /api/v1/oauth/token``: form ``grant_type=client_credentials``, ``client_id``,
  ``client_secret``; answers ``{access_token, token_type: "Bearer", expires_in}``; a wrong
  client is 403 ``{"error": "unauthorized_client"}``, another grant type 400.
* ``GET /api/v1/patrons``: HTTP Basic or a bearer token; query parameters filter patrons
  case-insensitively with Koha's ``_match`` (``contains`` by default, ``exact``,
  ``starts_with``, ``ends_with``) and paginate with ``_page``/``_per_page``; answers a JSON list
  of patron objects and ``X-Total-Count``. No or bad credentials: 401 ``{"error": ...}``.

Runs in-process on a free loopback port (:class:`aiohttp.test_utils.TestServer`). Knobs for
tests: ``delay`` (seconds before answering patrons), ``fail_status`` (answer patrons with that
status), ``token_lifetime``, :meth:`revoke_tokens`; counters ``token_requests`` and
``patron_requests``.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

USERNAME = "refdesk-api"
PASSWORD = "s3cret-Basic-pass!"
CLIENT_ID = "refdesk-client"
CLIENT_SECRET = "0c1b2a-client-secret-xyz"

PATRONS: list[dict[str, Any]] = [
    {
        "patron_id": 11,
        "cardnumber": "KOHA-001",
        "firstname": "Budi",
        "surname": "Santoso",
        "preferred_name": None,
        "category_id": "MHS",
        "library_id": "PUSAT",
        "date_of_birth": "1990-05-01",
        "phone": None,
        "mobile": "+62 812-3456-7890",
        "sms_number": None,
        "email": "budi@example.org",
        "expiry_date": "2027-06-30",
        "date_enrolled": "2023-07-01",
        "restricted": False,
        "lang": "id",
    },
    {
        "patron_id": 12,
        "cardnumber": "KOHA-0012",  # "contains" KOHA-001: only _match=exact tells them apart
        "firstname": None,
        "surname": "Sukarni",
        "preferred_name": None,
        "category_id": "UMUM",
        "library_id": "PUSAT",
        "date_of_birth": "1958-03-12",
        "phone": "(021) 555-0199",
        "mobile": None,
        "sms_number": None,
        "email": None,
        "expiry_date": "2024-01-31",
        "date_enrolled": "2020-02-01",
        "restricted": False,
        "lang": "id",
    },
    {
        "patron_id": 13,
        "cardnumber": "koha-100",
        "firstname": "Agus",
        "surname": "Wibowo",
        "preferred_name": "Pak Agus",
        "category_id": "DOSEN",
        "library_id": "CABANG",
        "date_of_birth": None,
        "phone": None,
        "mobile": "081299990000",
        "sms_number": None,
        "email": None,
        "expiry_date": None,
        "date_enrolled": "2019-09-01",
        "restricted": False,
        "lang": "id",
    },
]

RESERVED = {"_match", "_page", "_per_page", "_order_by", "q"}


class KohaServer:
    def __init__(self, patrons: list[dict[str, Any]] | None = None) -> None:
        self.patrons = [dict(p) for p in (patrons if patrons is not None else PATRONS)]
        self.tokens: set[str] = set()
        self.token_lifetime = 3600
        self.delay = 0.0
        self.fail_status: int | None = None
        self.token_requests = 0
        self.patron_requests = 0
        self.last_query: dict[str, str] = {}
        app = web.Application()
        app.router.add_post("/api/v1/oauth/token", self._token)
        app.router.add_get("/api/v1/patrons", self._patrons)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def start(self) -> KohaServer:
        await self.server.start_server()
        return self

    async def close(self) -> None:
        await self.server.close()

    async def __aenter__(self) -> KohaServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return self._error(400, "Unimplemented grant type")
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return self._error(403, "unauthorized_client")
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        )

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value in self.tokens
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return user == USERNAME and password == PASSWORD
        return False

    async def _patrons(self, request: web.Request) -> web.Response:
        self.patron_requests += 1
        self.last_query = dict(request.query)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self._authorised(request):
            return self._error(401, "Authentication failure.")
        if self.fail_status is not None:
            return self._error(
                self.fail_status, "Something went wrong, check Koha logs for details."
            )
        match = request.query.get("_match", "contains")
        if match not in ("contains", "exact", "starts_with", "ends_with"):
            return self._error(400, "Invalid value for _match")
        found = [
            p
            for p in self.patrons
            if all(
                _matches(p.get(key), value, match)
                for key, value in request.query.items()
                if key not in RESERVED
            )
        ]
        per_page = int(request.query.get("_per_page", "20"))
        page = int(request.query.get("_page", "1"))
        chunk = found[(page - 1) * per_page : page * per_page]
        return web.json_response(
            chunk,
            headers={
                "X-Total-Count": str(len(found)),
                "X-Base-Total-Count": str(len(self.patrons)),
            },
        )


def _matches(field: Any, wanted: str, match: str) -> bool:
    if field is None:
        return False
    have, want = str(field).lower(), wanted.lower()
    if match == "exact":
        return have == want
    if match == "starts_with":
        return have.startswith(want)
    if match == "ends_with":
        return have.endswith(want)
    return want in have

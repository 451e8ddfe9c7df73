"""Any HTTP service that answers a member number with JSON (a campus system, a custom API).

The service is asked only for the member number (``GET`` on a URL template); the date of birth
or phone the visitor typed is compared here, against the fields the mapping picks out of the
answer, so those secrets never travel. A 404 answer means "no such member".

Mapping paths are dotted keys into the JSON answer; a number picks a list item:
``data.member.name``, ``0.phone``, ``contacts.1.number``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from rooms.directory import LookupResult, MemberRecord, Outcome, check, date_of, phones_of

log = logging.getLogger("refdesk.directories.http")

PLACEHOLDER = "{member_number}"
_MISSING = object()
_MAX_BODY = 1_000_000


class Unavailable(Exception):
    """The directory could not answer; ``reason`` is safe to log (no secret, no query)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JsonClient:
    """One lazily opened aiohttp session with a total timeout per request.

    Every failure (connection, timeout, redirect, non-JSON body) becomes :class:`Unavailable`
    with a short reason; request URLs and headers never appear in it.
    """

    def __init__(self, timeout: float, session: aiohttp.ClientSession | None = None) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owned = session is None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
            self._owned = True
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send one request; answer ``(status, parsed JSON or None)``."""
        try:
            async with self._get_session().request(
                method,
                url,
                headers=dict(headers),
                params=params,
                data=data,
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    return response.status, None
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > _MAX_BODY:
                        raise Unavailable("answer too large")
                try:
                    return response.status, json.loads(bytes(body)) if body.strip() else None
                except ValueError:
                    raise Unavailable(f"HTTP {response.status} answer is not JSON") from None
        except TimeoutError:
            raise Unavailable(f"no answer within {self.timeout.total:g}s") from None
        except aiohttp.ClientConnectionError as exc:
            raise Unavailable(f"cannot connect ({type(exc).__name__})") from None
        except aiohttp.ClientError as exc:
            raise Unavailable(f"HTTP client error ({type(exc).__name__})") from None

    async def close(self) -> None:
        if self._owned and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


@dataclass(frozen=True)
class FieldMapping:
    """Where each member field sits in the service's JSON answer (dotted paths)."""

    name: str
    member_type: str | None = None
    expires: str | None = None
    date_of_birth: str | None = None
    phone: tuple[str, ...] = ()


def resolve(data: Any, path: str) -> Any:
    """Follow a dotted path through dicts and lists; ``_MISSING`` when it leads nowhere."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _flat(value: Any) -> list[Any]:
    if value is _MISSING or value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


class HttpJsonDirectory:
    def __init__(
        self,
        url_template: str,
        mapping: FieldMapping,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if PLACEHOLDER not in url_template:
            raise ValueError(f"the URL template must contain {PLACEHOLDER}")
        self._url_template = url_template
        self._headers = {"Accept": "application/json", **(headers or {})}
        self.mapping = mapping
        self._client = JsonClient(timeout, session)
        self._host = urlsplit(url_template).hostname or "?"

    def __repr__(self) -> str:
        # The URL and headers may carry an API key: only the host is shown.
        return f"HttpJsonDirectory(host={self._host!r})"

    async def verify(self, fields: Mapping[str, str], today: date) -> LookupResult:
        card = " ".join(fields.get("member_number", "").split())
        if not card:
            return check(None, fields, today)
        url = self._url_template.replace(PLACEHOLDER, quote(card, safe=""))
        try:
            status, data = await self._client.request("GET", url, headers=self._headers)
            record = self._record(card, status, data)
        except Unavailable as exc:
            log.warning("member directory at %s unavailable: %s", self._host, exc.reason)
            return LookupResult(Outcome.UNAVAILABLE)
        return check(record, fields, today)

    def _record(self, card: str, status: int, data: Any) -> MemberRecord | None:
        if status == 404:
            return None
        if status != 200:
            raise Unavailable(f"HTTP {status}")
        if data is None or data == [] or data == {}:
            return None
        name = resolve(data, self.mapping.name)
        if not isinstance(name, str) or not name.strip():
            raise Unavailable("the answer has no name at mapping.name")
        member_type = resolve(data, self.mapping.member_type) if self.mapping.member_type else None
        return MemberRecord(
            card_number=card,
            name=" ".join(name.split()),
            member_type=str(member_type) if isinstance(member_type, str | int) else None,
            expires=date_of(resolve(data, self.mapping.expires)) if self.mapping.expires else None,
            date_of_birth=(
                date_of(resolve(data, self.mapping.date_of_birth))
                if self.mapping.date_of_birth
                else None
            ),
            phones=phones_of(v for path in self.mapping.phone for v in _flat(resolve(data, path))),
        )

    async def close(self) -> None:
        await self._client.close()

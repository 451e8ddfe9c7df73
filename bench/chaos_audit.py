"""After the chaos: read both sides' full histories and count what went wrong.

The Matrix side is read by a fresh matrix-nio client acting as the desk bot (the appservice's
``as_token``; the bot created every session room and never leaves one), paging
``/messages`` from the end to the start. The visitor side is read through the visitor API
(``GET /api/sessions/{id}/messages``, paging by cursor). The counting functions are pure.

Definitions, per session and direction:

* **lost**: sent but never there;
* **duplicated**: extra copies (a body there three times counts 2);
* **out of order**: the fewest messages that would have to move for the first copies to be in
  the order they were sent (count − the longest increasing subsequence); the messages not in
  that subsequence are the offenders.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nio import AsyncClient, AsyncClientConfig, RoomMessagesResponse, RoomResolveAliasResponse

from bench.actors import BenchError

EXAMPLES = 5


def longest_increasing(ranks: Sequence[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence of ``ranks`` (O(n log n))."""
    tails: list[int] = []  # tails[k]: rank ending the best subsequence of length k + 1
    tail_at: list[int] = []  # ... and its index in ranks
    before: list[int] = [-1] * len(ranks)
    for i, rank in enumerate(ranks):
        k = bisect.bisect_left(tails, rank)
        if k == len(tails):
            tails.append(rank)
            tail_at.append(i)
        else:
            tails[k] = rank
            tail_at[k] = i
        before[i] = tail_at[k - 1] if k > 0 else -1
    keep: set[int] = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep.add(i)
        i = before[i]
    return keep


@dataclass
class Tally:
    """What arrived of ``expected`` (in the order it was sent) and how."""

    expected: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)  # body → extra copies
    out_of_order: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # there, but never sent

    @property
    def duplicates(self) -> int:
        return sum(self.duplicated.values())

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order)

    def add(self, other: Tally, prefix: str = "") -> None:
        self.expected += other.expected
        self.lost += [prefix + b for b in other.lost]
        self.duplicated.update({prefix + b: n for b, n in other.duplicated.items()})
        self.out_of_order += [prefix + b for b in other.out_of_order]
        self.unexpected += [prefix + b for b in other.unexpected]

    def json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "lost": len(self.lost),
            "duplicated": self.duplicates,
            "out_of_order": len(self.out_of_order),
            "examples": {
                "lost": self.lost[:EXAMPLES],
                "duplicated": [f"{b} ×{n + 1}" for b, n in list(self.duplicated.items())[:5]],
                "out_of_order": self.out_of_order[:EXAMPLES],
                "unexpected": self.unexpected[:EXAMPLES],
            },
        }


def tally(expected: Sequence[str], observed: Iterable[str]) -> Tally:
    """Compare what was sent (``expected``, in order) with what arrived (``observed``, in
    the order it is shown)."""
    rank = {body: i for i, body in enumerate(expected)}
    counts: Counter[str] = Counter()
    firsts: list[str] = []
    unexpected: list[str] = []
    for body in observed:
        if body not in rank:
            unexpected.append(body)
            continue
        if counts[body] == 0:
            firsts.append(body)
        counts[body] += 1
    keep = longest_increasing([rank[b] for b in firsts])
    return Tally(
        expected=len(expected),
        lost=[b for b in expected if counts[b] == 0],
        duplicated={b: n - 1 for b, n in counts.items() if n > 1},
        out_of_order=[b for i, b in enumerate(firsts) if i not in keep],
        unexpected=unexpected,
    )


def unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- what the Matrix side shows ------------------------------------------------------------


def content(event: dict[str, Any]) -> dict[str, Any]:
    value = event.get("content")
    return value if isinstance(value, dict) else {}


def is_edit(event: dict[str, Any]) -> bool:
    relates = content(event).get("m.relates_to")
    return isinstance(relates, dict) and relates.get("rel_type") == "m.replace"


def messages_from(events: Iterable[dict[str, Any]], sender: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e.get("type") == "m.room.message"
        and e.get("sender") == sender
        and isinstance(content(e).get("body"), str)
    ]


def bot_notices(events: Iterable[dict[str, Any]], bot: str) -> list[dict[str, Any]]:
    """The bot's notices that are not edits of an earlier one."""
    return [
        e
        for e in messages_from(events, bot)
        if content(e).get("msgtype") == "m.notice" and not is_edit(e)
    ]


def ring_gaps(events: Sequence[dict[str, Any]], librarians: Sequence[str], bot: str) -> list[str]:
    """What is missing for the chat to have rung each librarian: an invite to the room and a
    bot notice that mentions them (``m.mentions.user_ids``). Empty when it rang everyone."""
    invited = {
        e.get("state_key")
        for e in events
        if e.get("type") == "m.room.member" and content(e).get("membership") == "invite"
    }
    mentioned: set[str] = set()
    for event in bot_notices(events, bot):
        mentions = content(event).get("m.mentions")
        if isinstance(mentions, dict) and isinstance(mentions.get("user_ids"), list):
            mentioned.update(u for u in mentions["user_ids"] if isinstance(u, str))
    gaps = []
    for user_id in librarians:
        if user_id not in invited:
            gaps.append(f"{user_id} not invited")
        if user_id not in mentioned:
            gaps.append(f"{user_id} not mentioned")
    return gaps


def repeated_bodies(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Bodies that occur more than once, with their count."""
    counts = Counter(str(content(e).get("body")) for e in events)
    return {body: n for body, n in counts.items() if n > 1}


def queue_notices(desk_events: Iterable[dict[str, Any]], bot: str, name: str) -> int:
    """How many queue notices the desk room has for the visitor called ``name`` (not counting
    their ``m.replace`` edits). The notice reads ``<state> · <name> · <topic> · …``."""
    needle = f" · {name} · "
    return sum(1 for e in bot_notices(desk_events, bot) if needle in str(content(e).get("body")))


# -- reading ------------------------------------------------------------------------------


class Unreadable(BenchError):
    """The homeserver refuses the bot this room's history (the bot is not in it)."""


class Reader:
    """A fresh matrix-nio client with the appservice's token: it reads as the desk bot."""

    def __init__(self, homeserver: str, bot_mxid: str, as_token: str) -> None:
        config = AsyncClientConfig(
            store_sync_tokens=False, encryption_enabled=False, max_timeouts=3, request_timeout=30
        )
        self.client = AsyncClient(homeserver, bot_mxid, config=config)
        self.client.user_id = bot_mxid
        self.client.access_token = as_token

    async def close(self) -> None:
        await self.client.close()

    async def resolve(self, alias: str) -> str | None:
        resp = await self.client.room_resolve_alias(alias)
        if isinstance(resp, RoomResolveAliasResponse):
            return str(resp.room_id)
        if getattr(resp, "status_code", None) == "M_NOT_FOUND":
            return None
        raise BenchError(f"resolve {alias}: {resp}")

    async def history(
        self, room_id: str, page: int = 500, pages: int = 400
    ) -> list[dict[str, Any]]:
        """Every event of the room, oldest first."""
        events: list[dict[str, Any]] = []
        start: str | None = None
        for _ in range(pages):
            resp = await self.client.room_messages(room_id, start=start, limit=page)
            if getattr(resp, "status_code", None) == "M_FORBIDDEN":
                raise Unreadable(f"the desk bot may not read {room_id}: {resp}")
            if not isinstance(resp, RoomMessagesResponse):
                raise BenchError(f"read {room_id}: {resp}")
            events.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        else:
            raise BenchError(f"read {room_id}: more than {pages} pages")
        events.reverse()
        return events

    async def room(self, alias: str) -> tuple[str | None, list[dict[str, Any]], str | None]:
        """The room an alias points to, its events, and why they could not be read (None when
        they could)."""
        room_id = await self.resolve(alias)
        if room_id is None:
            return None, [], f"no room has the alias {alias}"
        try:
            return room_id, await self.history(room_id), None
        except Unreadable as exc:
            return room_id, [], str(exc)


async def visitor_history(
    http: aiohttp.ClientSession, base_url: str, session_id: str, token: str
) -> list[dict[str, Any]]:
    """The visitor's whole conversation through the visitor API, in ``seq`` order (the last
    version of each message)."""
    by_id: dict[int, dict[str, Any]] = {}
    after = 0
    for _ in range(1000):
        async with http.get(
            f"{base_url}/api/sessions/{session_id}/messages?after={after}&limit=500",
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise BenchError(f"history of {session_id}: HTTP {resp.status} {data}")
        messages = data.get("messages") or []
        for message in messages:
            by_id[message["id"]] = message
        if not messages:
            break
        after = data["cursor"]
    return sorted(by_id.values(), key=lambda m: int(m["seq"]))

"""Who takes part in a run, and how their conversations are set up.

``Actors`` holds the running stack and the Matrix users; the functions open chats through
refdesk (visitor ↔ librarian) and plain rooms (alice ↔ bob) the same way, so that every
measurement has a baseline of the same shape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import latency
from bench.actors import MatrixUser, Visitor, wait_arrival
from bench.latency import Chat, Leg
from bench.proc import CpuMeter
from bench.stack import Stack
from bench.throughput import Sender


@dataclass
class Actors:
    """The running stack, the Matrix users, and the chats and rooms opened so far."""

    stack: Stack
    http: aiohttp.ClientSession
    alice: MatrixUser
    bob: MatrixUser
    librarian: MatrixUser
    carol: MatrixUser  # sends without syncing (the throughput baseline's writer)
    chats: list[Visitor] = field(default_factory=list)
    baseline_rooms: list[str] = field(default_factory=list)  # alice's, bob joined
    writer_rooms: list[str] = field(default_factory=list)  # carol's, bob joined

    def meter(self) -> CpuMeter:
        pids = {"refdesk": self.stack.refdesk_pid, "synapse": self.stack.synapse_pid}
        if self.stack.postgres_pid is not None:  # refdesk's store, with its backends
            pids["postgres"] = self.stack.postgres_pid
        return CpuMeter({**pids, "bench": None}, trees=frozenset({"postgres"}))


async def limited(
    items: list[Any], work: Callable[[Any], Awaitable[None]], concurrency: int
) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> None:
        async with sem:
            await work(item)

    await asyncio.gather(*(one(item) for item in items))


async def open_chat(actors: Actors, name: str, timeout: float = 120) -> Visitor:
    """A visitor who wrote once, in a room the librarian joined and answered (claimed) in."""
    visitor = Visitor(actors.http, actors.stack.widget_url, name)
    await visitor.start_session()
    await visitor.connect()
    body = f"hello from {name}"
    future = actors.librarian.inbox.expect(body)
    await visitor.send(body, f"open-{visitor.session_id}")
    arrival = await wait_arrival(future, timeout, f"first message of {name}")
    assert arrival.room_id is not None
    visitor.room_id = arrival.room_id
    answer = f"hello {name}, how can I help?"
    future = visitor.inbox.expect(answer)
    await actors.librarian.send(arrival.room_id, answer)
    await wait_arrival(future, timeout, f"first answer to {name}")
    return visitor


def visitor_chat(actors: Actors, visitor: Visitor) -> Chat:
    room_id = visitor.room_id
    assert room_id is not None
    librarian = actors.librarian
    return Chat(
        forward=Leg(lambda body: visitor.send(body, body), librarian.inbox),
        back=Leg(lambda body: librarian.send(room_id, body), visitor.inbox),
    )


def matrix_chat(a: MatrixUser, b: MatrixUser, room_id: str) -> Chat:
    return Chat(
        forward=Leg(lambda body: a.send(room_id, body), b.inbox),
        back=Leg(lambda body: b.send(room_id, body), a.inbox),
    )


def visitor_senders(actors: Actors) -> list[Sender]:
    """Each active chat's visitor, writing over the WebSocket (stored when the ack comes)."""

    def sender(visitor: Visitor) -> Sender:
        async def send(body: str) -> None:
            await visitor.send(body, body)

        return Sender(send, visitor.acks)

    return [sender(v) for v in actors.chats]


def librarian_senders(actors: Actors) -> list[Sender]:
    """The librarian answering in each active chat's room (stored when room_send returns)."""

    def sender(room_id: str) -> Sender:
        async def send(body: str) -> None:
            await actors.librarian.send(room_id, body)

        return Sender(send)

    rooms = [v.room_id for v in actors.chats]
    return [sender(room_id) for room_id in rooms if room_id is not None]


def writer_senders(actors: Actors) -> list[Sender]:
    """Carol writing in each of her rooms (stored when room_send returns)."""

    def sender(room_id: str) -> Sender:
        async def send(body: str) -> None:
            await actors.carol.send(room_id, body)

        return Sender(send)

    return [sender(r) for r in actors.writer_rooms]


async def baseline_rooms(actors: Actors, count: int, owner: MatrixUser | None = None) -> list[str]:
    """``count`` rooms of alice's (or ``owner``'s) that bob has joined."""
    rooms: list[str] = []
    owner = owner or actors.alice

    async def make(_: int) -> None:
        room_id = await owner.create_room([actors.bob.user_id])
        await actors.bob.wait_joined(room_id)
        if owner is actors.alice:
            await actors.alice.wait_joined(room_id)
        rooms.append(room_id)

    await limited(list(range(count)), make, 8)
    return rooms


async def new_visitor_chat(actors: Actors, name: str) -> float:
    """A whole short chat: first message (room, queue), answer (claim), end; its set-up time."""
    start = time.perf_counter()
    visitor = await open_chat(actors, name)
    took = time.perf_counter() - start
    await visitor.end()
    await visitor.close()
    return took


async def new_matrix_chat(actors: Actors, name: str) -> float:
    """The plain-Matrix counterpart: a new room, a message each way, a goodbye."""
    start = time.perf_counter()
    (room_id,) = await baseline_rooms(actors, 1)
    chat = matrix_chat(actors.alice, actors.bob, room_id)
    await latency.trip(chat.forward, f"{name} hello")
    await latency.trip(chat.back, f"{name} answer")
    took = time.perf_counter() - start
    await actors.alice.send(room_id, f"{name} bye")
    return took

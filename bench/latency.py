"""Send → receive latency along one leg (a sender and the receiver's inbox), alone or in chats.

A sample also splits the latency at the time stamped on the way (wall clock, same machine):
for a Matrix receiver the event's ``origin_server_ts`` (when the homeserver built the event), for
a visitor the message's ``created_at`` (when refdesk took the librarian's event in).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.actors import Inbox, wait_arrival
from bench.stats import Summary, median


@dataclass(frozen=True)
class Leg:
    """One direction of a conversation: how to send a body, and who must receive it."""

    send: Callable[[str], Awaitable[None]]
    inbox: Inbox


@dataclass(frozen=True)
class Sample:
    latency: float  # seconds, send → receiver saw it
    before_stamp: float | None  # seconds, send → stamped on the way
    after_stamp: float | None  # seconds, stamped → receiver saw it


@dataclass(frozen=True)
class Chat:
    """Both directions of one conversation; ``forward`` opens each round."""

    forward: Leg
    back: Leg


async def trip(leg: Leg, body: str, timeout: float = 30) -> Sample:
    """Send one body along ``leg`` and wait until its receiver sees it."""
    future = leg.inbox.expect(body)
    wall = time.time()
    start = time.perf_counter()
    await leg.send(body)
    arrival = await wait_arrival(future, timeout, f"message {body!r}")
    stamped = arrival.stamped
    return Sample(
        latency=arrival.at - start,
        before_stamp=None if stamped is None else stamped - wall,
        after_stamp=None if stamped is None else arrival.wall - stamped,
    )


async def sequential(
    leg: Leg, count: int, prefix: str, *, warmup: int = 5, gap: float = 0.02
) -> list[Sample]:
    """``count`` trips one after another (after ``warmup`` unrecorded ones)."""
    samples = []
    for i in range(warmup + count):
        sample = await trip(leg, f"{prefix}-{i}")
        if i >= warmup:
            samples.append(sample)
        await asyncio.sleep(gap)
    return samples


async def chats(
    conversations: Sequence[Chat],
    rounds: int,
    prefix: str,
    *,
    think: tuple[float, float],
    seed: int = 6,
) -> tuple[list[Sample], list[Sample]]:
    """All conversations at once, each ``rounds`` times: forward, think, back, think.

    Returns the forward and the back samples. Start times are staggered so the conversations do
    not move in lock step.
    """
    rng = random.Random(seed)
    forward: list[Sample] = []
    back: list[Sample] = []

    async def converse(index: int, chat: Chat, delay: float) -> None:
        await asyncio.sleep(delay)
        for r in range(rounds):
            forward.append(await trip(chat.forward, f"{prefix}-{index}-{r}-f"))
            await asyncio.sleep(rng.uniform(*think))
            back.append(await trip(chat.back, f"{prefix}-{index}-{r}-b"))
            await asyncio.sleep(rng.uniform(*think))

    await asyncio.gather(
        *(converse(i, chat, rng.uniform(0, think[1])) for i, chat in enumerate(conversations))
    )
    return forward, back


def summary(samples: Sequence[Sample]) -> Summary:
    return Summary.of([s.latency for s in samples])


def split(samples: Sequence[Sample]) -> dict[str, Any]:
    """Median milliseconds before and after the stamp (None if nothing was stamped)."""
    before = [s.before_stamp for s in samples if s.before_stamp is not None]
    after = [s.after_stamp for s in samples if s.after_stamp is not None]
    return {
        "before_stamp_p50_ms": round(median(before) * 1000, 2) if before else None,
        "after_stamp_p50_ms": round(median(after) * 1000, 2) if after else None,
    }

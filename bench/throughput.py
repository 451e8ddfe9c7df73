"""Offered load: messages at a fixed rate, open loop, counted where they must arrive.

The same driver runs the baseline (nio sender → Synapse → nio receiver over plain rooms) and
refdesk (visitor WebSockets → refdesk → Synapse → the librarian's /sync), so the two ramps show
refdesk's rate next to the homeserver's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from bench.actors import Arrival, Inbox
from bench.proc import CpuMeter
from bench.stats import Summary

# A rate is sustained when every message arrived, and arrived at (nearly) the rate it was sent:
# delivered / (last arrival − first send) ≥ KEEP_UP × offered. With a step of D seconds this
# allows a steady latency of up to D × (1/KEEP_UP − 1): 0.5 s for 10 s steps, 0.16 s for 3 s.
KEEP_UP = 0.95


@dataclass(frozen=True)
class Sender:
    """Sends one body. ``acks``: where the sender hears it was stored (None: when send returns)."""

    send: Callable[[str], Coroutine[Any, Any, None]]
    acks: Inbox | None = None


@dataclass
class StepResult:
    rate: int
    seconds: float
    sent: int
    acked: int
    delivered: int
    duplicates: int
    lag: float  # last send → last arrival, seconds (infinite if some never arrived)
    achieved: float  # delivered / (last arrival − first send)
    intake: float  # stored / (last stored − first send): how fast senders were acknowledged
    latency: Summary  # send → the receiver saw it
    stored: Summary  # send → the sender heard it was stored (ack frame, or room_send returned)
    cpu: dict[str, float]  # % of one core during the step and its drain
    cpu_seconds: dict[str, float]  # the same, in CPU seconds
    cpu_ms_per_message: dict[str, float]
    send_overrun: float  # how far the sender fell behind its own schedule, seconds

    @property
    def lost(self) -> int:
        return self.sent - self.delivered

    @property
    def sustained(self) -> bool:
        return self.lost == 0 and self.acked == self.sent and self.achieved >= KEEP_UP * self.rate

    def json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "acked": self.acked,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "lag_s": round(self.lag, 3),
            "achieved_per_s": round(self.achieved, 1),
            "intake_per_s": round(self.intake, 1),
            "sustained": self.sustained,
            "latency_ms": self.latency.json(),
            "stored_ms": self.stored.json(),
            "cpu_percent": self.cpu,
            "cpu_seconds": {name: round(used, 3) for name, used in self.cpu_seconds.items()},
            "cpu_ms_per_message": self.cpu_ms_per_message,
            "send_overrun_s": round(self.send_overrun, 3),
        }


async def offered_load(
    senders: Sequence[Sender],
    receiver: Inbox,
    *,
    rate: int,
    seconds: float,
    prefix: str,
    meter: CpuMeter,
    drain_timeout: float,
) -> StepResult:
    """Send ``rate`` bodies/s for ``seconds``, round-robin over ``senders``; wait for all."""
    total = max(1, round(rate * seconds))
    bodies = [f"{prefix}-{k}" for k in range(total)]
    arrivals = receiver.expect_many(bodies)
    acks = [
        None if (inbox := senders[k % len(senders)].acks) is None else inbox.expect(body)
        for k, body in enumerate(bodies)
    ]
    duplicates_before = receiver.duplicates
    sent_at = [0.0] * total
    sends: list[asyncio.Task[float]] = []
    meter.start()
    start = time.perf_counter()
    deadline = start + seconds + 30
    k = 0
    while k < total and time.perf_counter() < deadline:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while k < due:
            sent_at[k] = time.perf_counter()
            sends.append(asyncio.create_task(_timed(senders[k % len(senders)].send, bodies[k])))
            k += 1
        await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
    sent = k
    last_send = sent_at[sent - 1]
    overrun = last_send - (start + (total - 1) / rate)
    waiting: list[asyncio.Future[Any]] = [*arrivals[:sent], *sends]
    waiting += [a for a in acks[:sent] if a is not None]
    pending = [f for f in waiting if not f.done()]
    if pending:
        await asyncio.wait(pending, timeout=drain_timeout)
    cpu_seconds = meter.seconds()
    cpu = meter.read()
    got: list[Arrival | None] = [f.result() if f.done() else None for f in arrivals[:sent]]
    latencies = [a.at - sent_at[i] for i, a in enumerate(got) if a is not None]
    last_arrival = max((a.at for a in got if a is not None), default=last_send)
    stored_at = [t for i in range(sent) if (t := _stored_at(sends[i], acks[i])) is not None]
    stored = [
        t - sent_at[i] for i in range(sent) if (t := _stored_at(sends[i], acks[i])) is not None
    ]
    for task in sends:
        task.cancel()
    receiver.forget(bodies)
    for sender in senders:
        if sender.acks is not None:
            sender.acks.forget(bodies)
    delivered = len(latencies)
    return StepResult(
        rate=rate,
        seconds=seconds,
        sent=sent,
        acked=len(stored),
        delivered=delivered,
        duplicates=receiver.duplicates - duplicates_before,
        lag=last_arrival - last_send if delivered == sent else float("inf"),
        achieved=delivered / max(last_arrival - start, 1e-6),
        intake=len(stored_at) / max(max(stored_at, default=start) - start, 1e-6),
        latency=Summary.of(latencies),
        stored=Summary.of(stored),
        cpu=cpu,
        cpu_seconds=cpu_seconds,
        cpu_ms_per_message={
            name: round(1000 * used / max(delivered, 1), 2) for name, used in cpu_seconds.items()
        },
        send_overrun=max(0.0, overrun),
    )


async def _timed(send: Callable[[str], Coroutine[Any, Any, None]], body: str) -> float:
    await send(body)
    return time.perf_counter()


def _stored_at(send: asyncio.Task[float], ack: asyncio.Future[Arrival] | None) -> float | None:
    """When the sender learnt the message was stored; None if it did not (yet)."""
    if not send.done() or send.cancelled() or send.exception() is not None:
        return None
    if ack is None:
        return send.result()
    return ack.result().at if ack.done() and not ack.cancelled() else None


def saturation(step: StepResult, cores: int) -> str:
    """Which process ran out of CPU at this step, in words."""
    ranked = sorted(
        ((name, pct) for name, pct in step.cpu.items() if name != "others"), key=lambda i: -i[1]
    )
    shares = ", ".join(f"{name} {pct:.0f}%" for name, pct in ranked) + " of one core"
    others = step.cpu.get("others", 0.0)
    shares += f"; other processes {others:.0f}%"
    total = sum(step.cpu.values())
    busiest, top = ranked[0]
    if top >= 85:
        return f"{busiest} is CPU-bound ({shares})"
    if total >= 90 * cores:
        return f"all {cores} cores are busy ({shares})"
    return f"no process is CPU-bound ({shares}): it waits on I/O or locks"

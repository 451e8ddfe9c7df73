"""The benchmark's phases, in order, against one Synapse and one refdesk process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import latency, profiling, startup
from bench.actors import BenchError, Inbox, MatrixUser, Visitor
from bench.conversations import (
    Actors,
    baseline_rooms,
    librarian_senders,
    limited,
    matrix_chat,
    new_matrix_chat,
    new_visitor_chat,
    open_chat,
    visitor_chat,
    visitor_senders,
    writer_senders,
)
from bench.latency import Chat, Sample
from bench.proc import REPO, peak_rss_mb, raise_fd_limit
from bench.stack import BASELINE_RECEIVER, BASELINE_SENDER, BASELINE_WRITER, LIBRARIAN, Stack
from bench.stats import Summary, ratio
from bench.throughput import StepResult, offered_load, saturation

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Plan:
    """How much of everything to do; ``quick()`` is the short smoke run."""

    mode: str = "full"
    sequential: int = 200  # messages per direction, one at a time
    chats: int = 100  # active chats during the capacity steps and the throughput test
    chat_rounds: int = 3  # round trips per active chat per capacity step
    think: tuple[float, float] = (2.0, 6.0)  # seconds between two messages of one chat
    new_chat_every: float = 5.0  # seconds: chats start and end while the active ones talk
    idle_steps: tuple[int, ...] = (0, 1000, 5000, 10_000)
    rates: tuple[int, ...] = (25, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200, 300, 400)
    rate_seconds: float = 10.0
    drain_seconds: float = 60.0
    profile_seconds: float = 20.0
    burst: int = 1000  # visitor messages sent at once
    trips_messages: int = 50  # per direction, for bench.sqlite_calls
    warm_start: bool = True
    budget_seconds: float = 1500.0  # per store
    log_level: str = "INFO"
    synapse_extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            mode="quick",
            sequential=50,
            chats=10,
            chat_rounds=2,
            think=(0.5, 1.5),
            new_chat_every=2.0,
            idle_steps=(0, 300),
            rates=(25, 50, 100),
            rate_seconds=3.0,
            drain_seconds=20.0,
            profile_seconds=5.0,
            burst=200,
            trips_messages=20,
            warm_start=False,
            budget_seconds=200.0,
        )


def _json_summary(samples: list[Sample]) -> dict[str, Any]:
    return {**latency.summary(samples).json(), **latency.split(samples)}


def _ratios(value: Summary, base: Summary) -> dict[str, float]:
    return {
        "p50": round(ratio(value.p50, base.p50), 3),
        "p99": round(ratio(value.p99, base.p99), 3),
    }


async def talk_with_turnover(
    actors: Actors,
    plan: Plan,
    conversations: list[Chat],
    prefix: str,
    new_chat: Callable[[Actors, str], Awaitable[float]],
) -> tuple[list[Sample], list[Sample], list[float]]:
    """The active chats' rounds, while a new chat starts and ends every ``new_chat_every`` s."""
    stop = asyncio.Event()

    async def turnover() -> list[float]:
        took: list[float] = []
        for i in range(1000):  # bounded; ends when the rounds end
            took.append(await new_chat(actors, f"{prefix} new {i}"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), plan.new_chat_every)
            if stop.is_set():
                break
        return took

    task = asyncio.create_task(turnover())
    try:
        fwd, back = await latency.chats(conversations, plan.chat_rounds, prefix, think=plan.think)
    finally:
        stop.set()
    return fwd, back, await task


# -- phases ------------------------------------------------------------------------------


async def phase_latency(actors: Actors, plan: Plan) -> dict[str, Any]:
    """Sequential latency, interleaved in chunks so that background noise hits all three."""
    (room_id,) = await baseline_rooms(actors, 1)
    visitor = await open_chat(actors, "Bench sequential")
    chat = visitor_chat(actors, visitor)
    legs = {
        "baseline": matrix_chat(actors.alice, actors.bob, room_id).forward,
        "visitor_to_librarian": chat.forward,
        "librarian_to_visitor": chat.back,
    }
    samples: dict[str, list[Sample]] = {name: [] for name in legs}
    chunk = 50
    for c in range(math.ceil(plan.sequential / chunk)):
        n = min(chunk, plan.sequential - c * chunk)
        for name, leg in legs.items():
            samples[name] += await latency.sequential(
                leg, n, f"seq-{name[:4]}-{c}", warmup=5 if c == 0 else 1
            )
    await visitor.close()
    base = latency.summary(samples["baseline"])
    result: dict[str, Any] = {name: _json_summary(s) for name, s in samples.items()}
    for name in ("visitor_to_librarian", "librarian_to_visitor"):
        result[name]["ratio"] = _ratios(latency.summary(samples[name]), base)
    return result


async def phase_open_chats(actors: Actors, plan: Plan) -> dict[str, Any]:
    start = time.monotonic()
    opened: list[Visitor] = []

    async def one(i: int) -> None:
        opened.append(await open_chat(actors, f"Bench chat {i}"))

    await limited(list(range(plan.chats)), one, 10)
    actors.chats = opened
    return {"chats": len(opened), "seconds": round(time.monotonic() - start, 2)}


async def _connect_idle(actors: Actors, idle: list[Visitor], target: int) -> dict[str, float]:
    fresh = [
        Visitor(actors.http, actors.stack.widget_url, f"Idle {i}") for i in range(len(idle), target)
    ]
    start = time.monotonic()
    await limited(fresh, lambda v: v.start_session(), 32)
    made = time.monotonic()
    await limited(fresh, lambda v: v.connect(), 64)
    done = time.monotonic()
    idle.extend(fresh)
    n = max(len(fresh), 1)
    return {
        "sessions_per_s": round(n / max(made - start, 1e-6), 1),
        "connects_per_s": round(n / max(done - made, 1e-6), 1),
    }


async def phase_capacity(
    actors: Actors, plan: Plan, out_dir: Path, prefix: str = ""
) -> dict[str, Any]:
    """Idle visitors step up while the active chats talk; RSS and latency at every step.

    refdesk is sampled with py-spy during the last (largest) step.
    """
    stack = actors.stack
    rooms = actors.baseline_rooms = await baseline_rooms(actors, len(actors.chats))
    meter = actors.meter()
    meter.start()
    fwd, back, new = await talk_with_turnover(
        actors,
        plan,
        [matrix_chat(actors.alice, actors.bob, r) for r in rooms],
        "cap-base",
        new_matrix_chat,
    )
    baseline_cpu = meter.read()
    base_fwd, base_back = latency.summary(fwd), latency.summary(back)
    result: dict[str, Any] = {
        "active_chats": len(actors.chats),
        "rounds_per_chat": plan.chat_rounds,
        "think_s": list(plan.think),
        "new_chat_every_s": plan.new_chat_every,
        "baseline": {
            "forward": _json_summary(fwd),
            "back": _json_summary(back),
            "new_chats": len(new),
            "new_chat_ms": Summary.of(new).json(),
            "cpu_percent": baseline_cpu,
        },
        "steps": [],
    }
    idle: list[Visitor] = []
    rss0: float | None = None
    try:
        for target in plan.idle_steps:
            rates = await _connect_idle(actors, idle, target)
            await asyncio.sleep(2)
            rss = stack.refdesk_rss_mb()
            if rss0 is None:
                rss0 = rss
            meter.start()
            sampling = None
            if target == plan.idle_steps[-1]:
                sampling = asyncio.create_task(
                    profiling.profile_stack(
                        stack.refdesk_pid,
                        stack.synapse_pid,
                        out_dir,
                        f"{prefix}profile-capacity",
                        plan.profile_seconds,
                    )
                )
            fwd, back, new = await talk_with_turnover(
                actors,
                plan,
                [visitor_chat(actors, v) for v in actors.chats],
                f"cap-{target}",
                new_visitor_chat,
            )
            cpu = meter.read()
            if sampling is not None:
                result["profile"] = {"idle": target, **await sampling}
            v2l, l2v = latency.summary(fwd), latency.summary(back)
            step = {
                "idle": target,
                "alive": sum(1 for v in idle if v.ws is not None and not v.ws.closed),
                "rss_mb": round(rss, 1),
                "rss_after_chats_mb": round(stack.refdesk_rss_mb(), 1),
                "kb_per_connection": (round((rss - rss0) * 1024 / target, 1) if target else None),
                "visitor_to_librarian": {
                    **_json_summary(fwd),
                    "ratio": _ratios(v2l, base_fwd),
                },
                "librarian_to_visitor": {
                    **_json_summary(back),
                    "ratio": _ratios(l2v, base_back),
                },
                "new_chats": len(new),
                "new_chat_ms": Summary.of(new).json(),
                "cpu_percent": cpu,
                **(rates if target else {}),
            }
            result["steps"].append(step)
            log.info("capacity step %d idle: %.1f MB", target, rss)
    finally:
        start = time.monotonic()
        await limited(idle, lambda v: v.close(), 200)
        result["close_idle_s"] = round(time.monotonic() - start, 2)
    await asyncio.sleep(2)
    result["rss_after_close_mb"] = round(stack.refdesk_rss_mb(), 1)
    # A second crowd as big as the first, of new visitors: is the memory of the first reused?
    second: list[Visitor] = []
    try:
        await _connect_idle(actors, second, plan.idle_steps[-1])
        await asyncio.sleep(2)
        result["rss_second_crowd_mb"] = round(stack.refdesk_rss_mb(), 1)
    finally:
        await limited(second, lambda v: v.close(), 200)
    await asyncio.sleep(2)
    result["rss_after_second_close_mb"] = round(stack.refdesk_rss_mb(), 1)
    result["peak_rss_mb"] = round(peak_rss_mb(stack.refdesk_pid), 1)
    return result


# The ramps of the throughput test: who sends, who must receive.
RAMPS = ("baseline", "visitor_to_librarian", "librarian_to_visitor")


async def phase_throughput(actors: Actors, plan: Plan) -> dict[str, Any]:
    """Raise the offered rate for the baseline and for refdesk both ways, until none keeps up.

    The baseline is carol (who does not sync, like refdesk's ghosts) writing to bob's /sync; the
    same homeserver work as visitor → librarian. In librarian → visitor the librarian, who
    syncs, also sees its own messages come back: a little more work for the homeserver there.
    """
    actors.writer_rooms = await baseline_rooms(actors, len(actors.chats), actors.carol)
    visitors_inbox = Inbox()  # every chat's visitor delivers here during the ramp
    own_inboxes = [v.inbox for v in actors.chats]
    for visitor in actors.chats:
        visitor.inbox = visitors_inbox
    runs = {
        "baseline": (writer_senders(actors), actors.bob.inbox),
        "visitor_to_librarian": (visitor_senders(actors), actors.librarian.inbox),
        "librarian_to_visitor": (librarian_senders(actors), visitors_inbox),
    }
    steps: dict[str, list[StepResult]] = {name: [] for name in runs}
    try:
        for rate in plan.rates:
            for name, (senders, receiver) in runs.items():
                if steps[name] and not steps[name][-1].sustained:
                    continue
                step = await offered_load(
                    senders,
                    receiver,
                    rate=rate,
                    seconds=plan.rate_seconds,
                    prefix=f"tp-{name[:4]}-{rate}",
                    meter=actors.meter(),
                    drain_timeout=plan.drain_seconds,
                )
                steps[name].append(step)
                log.info("throughput %s %d/s: %s", name, rate, step.json())
                await asyncio.sleep(2)
            if all(s and not s[-1].sustained for s in steps.values()):
                break
    finally:
        for visitor, inbox in zip(actors.chats, own_inboxes, strict=True):
            visitor.inbox = inbox
    cores = os.cpu_count() or 1
    result: dict[str, Any] = {"chats": len(actors.chats), "step_seconds": plan.rate_seconds}
    for name, done in steps.items():
        first_failed = next((s for s in done if not s.sustained), None)
        result[name] = {
            "steps": [s.json() for s in done],
            "max_sustained_per_s": max((s.rate for s in done if s.sustained), default=0),
            "saturated_at_per_s": first_failed.rate if first_failed else None,
            "saturation": (
                saturation(first_failed, cores)
                if first_failed
                else f"not reached up to {plan.rates[-1]}/s"
            ),
            "lost_total": sum(s.lost for s in done),
            "cpu_seconds_sustained": _cpu_sum([s for s in done if s.sustained]),
        }
    return result


def _cpu_sum(steps: list[StepResult]) -> dict[str, Any]:
    """CPU seconds per process over ``steps``, and the messages they delivered."""
    total: dict[str, Any] = {"messages": sum(s.delivered for s in steps)}
    for step in steps:
        for name, used in step.cpu_seconds.items():
            total[name] = round(total.get(name, 0.0) + used, 3)
    return total


async def phase_burst(actors: Actors, plan: Plan) -> dict[str, Any]:
    """Every visitor message at once: how fast refdesk stores them, how fast they get out."""
    step = await offered_load(
        visitor_senders(actors),
        actors.librarian.inbox,
        rate=1_000_000,
        seconds=plan.burst / 1_000_000,
        prefix="burst",
        meter=actors.meter(),
        drain_timeout=max(plan.drain_seconds, plan.burst / 10),
    )
    data = step.json()
    return {
        "messages": step.sent,
        "stored_per_s": data["intake_per_s"],
        "delivered_per_s": data["achieved_per_s"],
        **{k: data[k] for k in ("acked", "delivered", "lost", "duplicates")},
        "stored_ms": data["stored_ms"],
        "latency_ms": data["latency_ms"],
        "cpu_percent": data["cpu_percent"],
        "cpu_ms_per_message": data["cpu_ms_per_message"],
    }


async def phase_profile(
    actors: Actors, plan: Plan, rate: int, out_dir: Path, prefix: str = ""
) -> dict[str, Any]:
    """Visitor messages at ``rate`` while py-spy samples refdesk (and Synapse)."""
    stack = actors.stack
    seconds = plan.profile_seconds
    sampling = profiling.profile_stack(
        stack.refdesk_pid, stack.synapse_pid, out_dir, f"{prefix}profile", seconds
    )
    load = offered_load(
        visitor_senders(actors),
        actors.librarian.inbox,
        rate=rate,
        seconds=seconds + 1,
        prefix=f"prof-{rate}",
        meter=actors.meter(),
        drain_timeout=plan.drain_seconds,
    )
    step, sampled = await asyncio.gather(load, sampling)
    return {"rate": rate, "load": step.json(), **sampled}


async def phase_trips(plan: Plan, stack: Stack, out_dir: Path) -> dict[str, Any]:
    """Database trips per message (``python -m bench.sqlite_calls``, in a process of its own,
    against a Synapse of its own), on this run's store: for PostgreSQL a fresh database on the
    run's server."""
    out = out_dir / f"trips-{stack.store}.json"
    args = [sys.executable, "-m", "bench.sqlite_calls", "-n", str(plan.trips_messages)]
    args += ["--json", str(out)]
    if stack.postgres is not None:
        args += ["--database", stack.postgres.url(await stack.postgres.create_database("trips"))]
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "bench.sqlite_calls did not finish within 300 s"}
    if proc.returncode != 0:
        return {"error": f"bench.sqlite_calls exited {proc.returncode}: {output[-600:]!r}"}
    found: dict[str, Any] = json.loads(out.read_text())
    return found


# -- the whole run -------------------------------------------------------------------------


async def _phase(
    results: dict[str, Any], name: str, work: Callable[[], Awaitable[dict[str, Any]]]
) -> bool:
    print(f"[bench] {name}…", flush=True)
    start = time.monotonic()
    try:
        results[name] = await work()
        ok = "error" not in results[name]
    except Exception as exc:
        log.debug("phase %s failed", name, exc_info=True)
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["traceback"] = traceback.format_exc(limit=8)
        ok = False
    results[name]["phase_seconds"] = round(time.monotonic() - start, 1)
    if not ok:
        print(f"[bench] {name} failed: {results[name]['error']}", flush=True)
    return ok


def fd_limit(plan: Plan) -> dict[str, int]:
    """Enough open files for the largest crowd: each idle visitor is a socket in this process
    and one in refdesk (children inherit the limit), with room for everything else."""
    wanted = max(plan.idle_steps) + 2 * plan.chats + 4096
    got = raise_fd_limit(wanted)
    if got < wanted:
        print(f"[bench] warning: only {got} open files allowed (ulimit -n), {wanted} wanted")
    return {"wanted": wanted, "soft_limit": got}


async def run_startup(plan: Plan) -> dict[str, Any]:
    """`refdesk up` from an empty data dir (and again on it), and the widget's size: the same
    whatever store the run uses (`refdesk up` is the embedded, SQLite desk)."""
    results: dict[str, Any] = {"widget": startup.widget_size()}
    root = Path(tempfile.mkdtemp(prefix="refdesk-bench-up-"))

    async def up() -> dict[str, Any]:
        cold = await startup.refdesk_up(root / "up", root / "up.log")
        if not plan.warm_start:
            return {"cold": cold}
        ports = cold["ports"]
        try:
            warm = await startup.refdesk_up(
                root / "up", root / "up.log", (ports[0], ports[1], ports[2])
            )
        except BenchError as exc:
            warm = {"error": str(exc)}
        return {"cold": cold, "warm": warm}

    try:
        await _phase(results, "startup", up)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


async def run(plan: Plan, out_dir: Path, keep: bool, store: str = "sqlite") -> dict[str, Any]:
    """Every phase against one Synapse and one refdesk whose store is ``store``."""
    results: dict[str, Any] = {"store": store, "open_files": fd_limit(plan)}
    root = Path(tempfile.mkdtemp(prefix=f"refdesk-bench-{store}-"))
    results["data_dir"] = str(root)
    try:
        async with asyncio.timeout(plan.budget_seconds):
            await _main_phases(plan, root, out_dir, results, store)
    except TimeoutError:
        results["error"] = f"stopped: the run exceeded its budget of {plan.budget_seconds:.0f}s"
        print(f"[bench] {results['error']}", flush=True)
    except Exception as exc:  # the stack did not start: the other store may still run
        log.debug("run on %s failed", store, exc_info=True)
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["traceback"] = traceback.format_exc(limit=8)
        print(f"[bench] {store}: {results['error']}", flush=True)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
        results["data_dir"] = None
    return results


async def _main_phases(
    plan: Plan, root: Path, out_dir: Path, results: dict[str, Any], store: str
) -> None:
    start = time.monotonic()
    stack = await Stack.start(root / "stack", plan.log_level, plan.synapse_extra, store)
    results["stack_start_s"] = round(time.monotonic() - start, 2)
    if stack.postgres is not None:
        assert stack.postgres.binaries is not None
        results["postgres"] = {
            "version": stack.postgres.binaries.version,
            "settings": dict(stack.postgres.settings),
        }
    results["refdesk_idle_rss_mb"] = round(stack.refdesk_rss_mb(), 1)
    connector = aiohttp.TCPConnector(limit=0)
    http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
    users: list[MatrixUser] = []
    actors: Actors | None = None
    try:
        for local in (BASELINE_SENDER, BASELINE_RECEIVER, LIBRARIAN):
            users.append(await stack.login(local, auto_join=True))
        users.append(await stack.login(BASELINE_WRITER, sync=False))
        alice, bob, librarian, carol = users
        actors = Actors(stack, http, alice, bob, librarian, carol)
        await _main_actors(plan, actors, out_dir, results)
        results["refdesk_final_rss_mb"] = round(stack.refdesk_rss_mb(), 1)
        results["sync_errors"] = {u.user_id: u.sync_errors for u in users}
        await _phase(results, "trips", lambda: phase_trips(plan, stack, out_dir))
    finally:
        for visitor in actors.chats if actors else []:
            await visitor.close()
        for user in users:
            await user.close()
        await http.close()
        if not stack.refdesk.running:
            results["refdesk_died"] = stack.refdesk.log_tail()
        await stack.stop()


async def _main_actors(plan: Plan, actors: Actors, out_dir: Path, results: dict[str, Any]) -> None:
    await _phase(results, "latency", lambda: phase_latency(actors, plan))
    if not await _phase(results, "chats", lambda: phase_open_chats(actors, plan)):
        return
    prefix = f"{actors.stack.store}-"
    await _phase(results, "capacity", lambda: phase_capacity(actors, plan, out_dir, prefix))
    if await _phase(results, "throughput", lambda: phase_throughput(actors, plan)):
        ramp = results["throughput"]["visitor_to_librarian"]
        rate = ramp["saturated_at_per_s"] or plan.rates[-1]
        await _phase(results, "profile", lambda: phase_profile(actors, plan, rate, out_dir, prefix))
    await _phase(results, "burst", lambda: phase_burst(actors, plan))

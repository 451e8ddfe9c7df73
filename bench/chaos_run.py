"""The chaos run itself: the conversation, the kills and restarts, convergence, the audit
and the verdict. ``bench/chaos.py`` documents what it does and how to run it."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.actors import BenchError
from bench.chaos_actors import (
    Backoff,
    ChaosLibrarian,
    PollVisitor,
    Visitor,
    WebSocketVisitor,
    answer_for,
)
from bench.chaos_audit import (
    Reader,
    Tally,
    bot_notices,
    content,
    messages_from,
    queue_notices,
    repeated_bodies,
    ring_gaps,
    tally,
    unique,
    visitor_history,
)
from bench.chaos_stack import ANSWERING, RUNG_ONLY, ChaosStack, Timeline
from bench.report import machine
from bench.stack import PASSWORD
from bridge.ghosts import GhostTemplate
from rooms.ids import SessionID

log = logging.getLogger("bench.chaos")

LEGS = ("visitor_to_librarian", "librarian_to_visitor", "visitor_echo")
ACTOR_CHECKS = ("actor_duplicates", "unanswered", "missing_answers")


@dataclass(frozen=True)
class Plan:
    messages: int = 1000  # visitor messages in all (half for A, half for B)
    duration: float = 420.0  # seconds over which they are sent
    refdesk_kills: int = 100
    homeserver_restarts: int = 10
    homeserver_sigkills: int = 3
    new_chat_every: float = 5.0  # 0: no new chats
    seed: int = 1
    settle: float = 60.0  # bounded wait for convergence after the last send
    budget: float = 840.0  # the whole run, set-up to report
    target: float = 10.0  # convergence target (seconds)
    log_level: str = "INFO"
    store: str = "sqlite"  # or postgres: the desk's store in a PostgreSQL server of its own
    backoff: Backoff = field(default_factory=Backoff)

    @classmethod
    def ci(cls, **changes: Any) -> Plan:
        """The small run for CI: about two minutes on two cores."""
        base = cls(
            messages=100,
            duration=40.0,
            refdesk_kills=10,
            homeserver_restarts=2,
            homeserver_sigkills=1,
            new_chat_every=8.0,
            settle=30.0,
            budget=200.0,
        )
        return cls(**{**asdict(base), "backoff": base.backoff, **changes})

    def check(self) -> None:
        if self.messages < 2:
            raise ValueError("--messages must be at least 2 (one per visitor)")
        if not 0 <= self.homeserver_sigkills <= self.homeserver_restarts:
            raise ValueError("--hs-sigkills must be between 0 and --hs-restarts")
        if self.duration <= 0 or self.settle <= 0 or self.budget <= 0:
            raise ValueError("--duration, --settle and --budget must be positive")


@dataclass
class Chat:
    visitor: Visitor
    task: asyncio.Task[None] | None = None


class Chaos:
    def __init__(self, plan: Plan, root: Path, progress: bool) -> None:
        self.plan = plan
        self.root = root
        self.progress = progress
        self.timeline = Timeline(root / "chaos-events.log")
        self.rng_kills = random.Random(plan.seed * 1000 + 1)
        self.rng_homeserver = random.Random(plan.seed * 1000 + 2)
        self.chats: list[Chat] = []
        self.failed_starts: list[str] = []
        self.harness: list[str] = []  # problems of the harness itself
        self.chaos_done = asyncio.Event()
        # The conversation must end by ``deadline``; ``reserve`` is kept for audit and report.
        self.reserve = min(120.0, plan.budget / 4)
        self.deadline = time.monotonic() + plan.budget - self.reserve
        self.last_send = 0.0
        self.kills_done = 0
        self.restarts_done = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.harness.append(f"task {task.get_name()} failed: {task.exception()!r}")
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def say(self, text: str) -> None:
        if self.progress:
            print(f"[chaos {self.timeline.now():6.1f} s] {text}", file=sys.stderr, flush=True)

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        results: dict[str, Any] = {
            "plan": {**asdict(plan), "backoff": asdict(plan.backoff)},
            "data_dir": str(self.root),
            "machine": machine(),
        }
        self.say(f"data dir {self.root}")
        self.stack = await ChaosStack.start(self.root, plan.log_level, self.timeline, plan.store)
        self.say(f"synapse on {self.stack.synapse.url}, refdesk on {self.stack.widget_url}")
        config = self.stack.config
        self.ghosts = GhostTemplate(config.appservice.ghost_prefix, config.homeserver.domain)
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            self.librarian = await ChaosLibrarian.login(
                self.stack.synapse.url, self.stack.mxid(ANSWERING), PASSWORD, self.ghosts.is_ghost
            )
        except BaseException:
            await self.http.close()
            await self.stack.stop()
            raise
        self.librarian.start()
        try:
            converged: float | None = None
            try:
                async with asyncio.timeout(max(self.deadline - time.monotonic(), 10)):
                    await self._conversation()
                    converged = await self._settle()
            except TimeoutError:
                self.harness.append("the run's --budget ran out before the conversation ended")
            results["convergence"] = self._convergence(converged)
            await self._stop_actors()
            self._write_sessions()
            try:
                async with asyncio.timeout(self.reserve):
                    await self.stack.ensure_homeserver()
                    await self.stack.ensure_refdesk()
                    await asyncio.sleep(2)  # what refdesk has in hand reaches the store
                    results.update(await self._audit())
            except Exception as exc:
                self.harness.append(f"the audit failed: {exc!r}")
                log.exception("the audit failed")
        finally:
            await self._stop_actors()
            await self.librarian.close()
            await self.http.close()
            await self.stack.stop()
        results["chaos"] = self._chaos_summary()
        results["actors"] = self._actor_summary()
        results["harness_errors"] = list(dict.fromkeys(self.harness))
        results["violations"], results["targets_missed"] = self._judge(results)
        return results

    # the conversation

    async def _conversation(self) -> None:
        plan = self.plan
        a = WebSocketVisitor(self.http, self.stack.widget_url, "A", "Chaos A", plan.backoff)
        b = PollVisitor(self.http, self.stack.widget_url, "B", "Chaos B", plan.backoff)
        for visitor in (a, b):
            await visitor.create(time.monotonic() + 30)
            self._start_chat(visitor)
        start = time.monotonic() + 1
        window = plan.duration
        # The chaos lasts the whole sending window; the last message goes out when it is over
        # (refdesk answering again), so convergence includes the recovery from the last kill.
        self.chaos_start = start + 0.02 * window
        self.chaos_end = start + window
        self.timeline.note(f"conversation starts: sessions A {a.session_id}, B {b.session_id}")
        chaos = [
            self._spawn(self._kill_loop(), "chaos-kills"),
            self._spawn(self._homeserver_loop(), "chaos-homeserver"),
        ]
        if plan.new_chat_every > 0:
            self._spawn(self._starter(), "chaos-starter")
        self._spawn(self._reporter(), "chaos-progress")
        half = plan.messages // 2
        talkers = [
            self._spawn(self._talk(a, half, start), "talk-A"),
            self._spawn(self._talk(b, plan.messages - half, start), "talk-B"),
        ]
        await asyncio.gather(*chaos)
        await self.stack.ensure_refdesk()
        self.chaos_done.set()
        self.timeline.note("chaos over: refdesk and homeserver up")
        await asyncio.gather(*talkers)
        self.timeline.note("last message sent")

    def _start_chat(self, visitor: Visitor) -> None:
        chat = Chat(visitor)
        chat.task = self._spawn(visitor.run(), f"visitor-{visitor.label}")
        self.chats.append(chat)

    async def _talk(self, visitor: Visitor, count: int, start: float) -> None:
        """Numbered messages at a steady pace; the last one once the chaos is over."""
        interval = self.plan.duration / count
        for i in range(count):
            await _sleep_until(start + i * interval)
            if i == count - 1:
                await self.chaos_done.wait()
            visitor.queue(f"{visitor.label}-{i + 1:04d}")
        self.last_send = max(self.last_send, time.monotonic())

    async def _starter(self) -> None:
        """A new chat every few seconds while the chaos lasts, each with one first message."""
        number = 0
        while True:
            await asyncio.sleep(self.plan.new_chat_every)
            if time.monotonic() >= self.chaos_end:
                return
            number += 1
            self._spawn(self._new_chat(number), f"new-chat-{number}")

    async def _new_chat(self, number: int) -> None:
        label = f"N{number:03d}"
        visitor = PollVisitor(
            self.http, self.stack.widget_url, label, f"Chaos {label}", self.plan.backoff
        )
        visitor.until_answered = True
        try:
            await visitor.create(time.monotonic() + 60)
        except BenchError as exc:
            self.failed_starts.append(str(exc))
            return
        visitor.queue(f"{label}-0001")
        self._start_chat(visitor)

    async def _kill_loop(self) -> None:
        """SIGKILL refdesk at random moments (some while it is still starting), restart it."""
        rng = self.rng_kills
        kills = self.plan.refdesk_kills
        await _sleep_until(self.chaos_start)
        for k in range(kills):
            cycle = max(0.6, (self.chaos_end - time.monotonic()) / (kills - k))
            await _sleep_until(self.stack.started_at + rng.uniform(0.3, 2 * cycle - 0.3))
            await self.stack.kill_refdesk()
            self.kills_done += 1
            await self.stack.spawn_refdesk()

    async def _homeserver_loop(self) -> None:
        """Restart the homeserver, once in each of ``n`` equal slots of the chaos window."""
        rng = self.rng_homeserver
        n = self.plan.homeserver_restarts
        if n == 0:
            return
        by_sigkill = set(rng.sample(range(n), self.plan.homeserver_sigkills))
        slot = (self.chaos_end - self.chaos_start) / n
        for i in range(n):
            await _sleep_until(self.chaos_start + slot * (i + rng.uniform(0.1, 0.5)))
            await self.stack.restart_homeserver(i in by_sigkill, rng.uniform(0.5, 2.0))
            self.restarts_done += 1

    async def _reporter(self) -> None:
        while True:
            await asyncio.sleep(15)
            a, b = self.chats[0].visitor, self.chats[1].visitor
            acked = [sum(1 for s in v.sent if s.acked_at) for v in (a, b)]
            self.say(
                f"A {acked[0]}/{len(a.sent)} acked, B {acked[1]}/{len(b.sent)} acked, "
                f"librarian answered {len(self.librarian.answers)}, "
                f"refdesk kills {self.kills_done}/{self.plan.refdesk_kills}, "
                f"homeserver restarts {self.restarts_done}/{self.plan.homeserver_restarts}, "
                f"new chats {len(self.chats) - 2}"
            )

    async def _settle(self) -> float | None:
        """Seconds from the last send until both sides have everything (None: not within
        ``settle``)."""
        deadline = self.last_send + self.plan.settle
        while time.monotonic() < deadline:
            if self._librarian_has_all() and all(c.visitor.complete() for c in self.chats):
                return time.monotonic() - self.last_send
            await asyncio.sleep(0.1)
        return None

    def _librarian_has_all(self) -> bool:
        return all(self.librarian.has_seen(s.body) for c in self.chats for s in c.visitor.sent)

    def _convergence(self, seconds: float | None) -> dict[str, Any]:
        waiting = [
            c.visitor.label
            for c in self.chats
            if not c.visitor.complete()
            or not all(self.librarian.has_seen(s.body) for s in c.visitor.sent)
        ]
        return {
            "converged": seconds is not None,
            "seconds": None if seconds is None else round(seconds, 2),
            "bounded_wait_s": self.plan.settle,
            "target_s": self.plan.target,
            "incomplete_chats": waiting[:20],
        }

    def _write_sessions(self) -> None:
        """sessions.json: each chat's id and token (to ask refdesk again by hand) and what its
        visitor sent, with the times (seconds since the start) refdesk acknowledged it."""
        t0 = self.timeline.t0
        chats = [
            {
                "label": c.visitor.label,
                "name": c.visitor.name,
                "transport": c.visitor.transport,
                "session_id": c.visitor.session_id,
                "token": c.visitor.token,
                "sent": [
                    [s.body, round(s.queued_at - t0, 2), s.acked_at and round(s.acked_at - t0, 2)]
                    for s in c.visitor.sent
                ],
            }
            for c in self.chats
        ]
        text = json.dumps(chats, indent=1, ensure_ascii=False) + "\n"
        (self.root / "sessions.json").write_text(text, encoding="utf-8")

    async def _stop_actors(self) -> None:
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # the audit

    async def _audit(self) -> dict[str, Any]:
        self.say("reading every room and every visitor's history")
        config = self.stack.config
        bot = config.bot_mxid
        librarians = [self.stack.mxid(ANSWERING), self.stack.mxid(RUNG_ONLY)]
        reader = Reader(self.stack.synapse.url, bot, config.appservice.as_token)
        try:
            desk_alias = f"#{config.appservice.bot_localpart}_desk:{self.stack.domain}"
            _, desk_events, desk_error = await reader.room(desk_alias)
            sessions: dict[str, Any] = {}
            new_tallies = {leg: Tally() for leg in LEGS}
            new_checks: dict[str, list[str]] = {key: [] for key in ACTOR_CHECKS}
            new_fatal: list[str] = []
            new_room_errors: list[str] = []
            ringing: list[str] = []
            notices: list[str] = []
            queue_missing: list[str] = []
            queue_doubled: list[str] = []
            rang = 0
            for chat in self.chats:
                visitor = chat.visitor
                one = await self._audit_session(reader, visitor, bot, librarians)
                label = visitor.label
                gaps = one.pop("ring_gaps")
                if gaps:
                    ringing.append(f"{label} ({visitor.session_id}): {', '.join(gaps)}")
                else:
                    rang += 1
                for body, n in one.pop("repeated_notices").items():
                    notices.append(f"{label}: “{body[:80]}” ×{n}")
                count = queue_notices(desk_events, bot, visitor.name)
                if count == 0:
                    queue_missing.append(label)
                elif count > 1:
                    queue_doubled.append(f"{label} ×{count}")
                if label in ("A", "B"):
                    sessions[label] = self._session_json(one, visitor)
                    continue
                for leg in LEGS:
                    new_tallies[leg].add(one[leg])
                for key in ACTOR_CHECKS:
                    new_checks[key] += one[key]
                if one["fatal"]:
                    new_fatal.append(f"{label}: {one['fatal']}")
                if one["room_error"]:
                    new_room_errors.append(f"{label} ({visitor.session_id}): {one['room_error']}")
            sessions["new_chats"] = {
                "chats": len(self.chats) - 2,
                **{leg: self._tally_json(new_tallies[leg]) for leg in LEGS},
                **new_checks,
                "fatal": new_fatal,
                "room_error": new_room_errors,
                "failed_to_start": self.failed_starts,
            }
            desk_repeats = [
                f"“{body[:80]}” ×{n}"
                for body, n in repeated_bodies(bot_notices(desk_events, bot)).items()
            ]
        finally:
            await reader.close()
        return {
            "sessions": sessions,
            "ringing": {"chats": len(self.chats), "rang": rang, "not_rung": ringing},
            "notices": {
                "session_rooms_repeated": notices,
                "desk_room_repeated": desk_repeats,
                "queue_notices_missing": queue_missing,
                "queue_notices_repeated": queue_doubled,
                "desk_room_error": desk_error,
            },
        }

    def _keep_for_inquiry(
        self, session_id: str, events: list[dict[str, Any]], history: list[dict[str, Any]]
    ) -> None:
        """audit/<session>.json: the room's messages and the visitor's history as read, so a
        finding can be looked into after the run (the servers are gone by then)."""
        room = [
            {
                "event_id": e.get("event_id"),
                "sender": e.get("sender"),
                "ts": e.get("origin_server_ts"),
                "body": content(e).get("body"),
                "txn": content(e).get("org.refdesk.txn"),
            }
            for e in events
            if e.get("type") == "m.room.message"
        ]
        kept = [
            {k: m.get(k) for k in ("id", "seq", "origin", "body", "created_at", "client_id")}
            for m in history
        ]
        folder = self.root / "audit"
        folder.mkdir(exist_ok=True)
        text = json.dumps({"room": room, "visitor": kept}, indent=1, ensure_ascii=False)
        (folder / f"{session_id}.json").write_text(text + "\n", encoding="utf-8")

    async def _audit_session(
        self, reader: Reader, visitor: Visitor, bot: str, librarians: list[str]
    ) -> dict[str, Any]:
        session_id = SessionID(visitor.session_id)
        room_id, events, room_error = await reader.room(
            f"#{self.ghosts.alias_localpart(session_id)}:{self.stack.domain}"
        )
        ghost = self.ghosts.format(session_id)
        answering = self.stack.mxid(ANSWERING)
        sent = [s.body for s in visitor.sent]
        from_visitor = messages_from(events, ghost)
        answers = [str(content(e)["body"]) for e in messages_from(events, answering)]
        history = await visitor_history(
            self.http, self.stack.widget_url, visitor.session_id, visitor.token
        )
        self._keep_for_inquiry(visitor.session_id, events, history)
        v2l = tally(sent, (str(content(e)["body"]) for e in from_visitor))
        l2v = tally(
            unique(answers),
            (str(m["body"]) for m in history if m.get("origin") == "librarian"),
        )
        echo = tally(sent, (str(m["body"]) for m in history if m.get("origin") == "visitor"))
        # When each body showed up, for the examples (seconds since the start).
        when: dict[str, list[float]] = {}
        for event in [*from_visitor, *messages_from(events, answering)]:
            ts = event.get("origin_server_ts")
            if isinstance(ts, int):
                body = str(content(event)["body"])
                when.setdefault(body, []).append(self.timeline.at_wall(ts / 1000))
        for s in visitor.sent:
            if s.acked_at is not None:
                when.setdefault(f"ack:{s.body}", []).append(s.acked_at - self.timeline.t0)
        in_room = set(answers)
        seen_bodies = unique(str(content(e)["body"]) for e in from_visitor)
        return {
            "session_id": visitor.session_id,
            "room_id": room_id,
            "room_error": room_error,
            "transport": visitor.transport,
            "visitor_to_librarian": v2l,
            "librarian_to_visitor": l2v,
            "visitor_echo": echo,
            "when": when,
            "ring_gaps": [room_error] if room_error else ring_gaps(events, librarians, bot),
            "repeated_notices": repeated_bodies(bot_notices(events, bot)),
            # The harness's own checks: the librarian must answer each message exactly once.
            "actor_duplicates": [
                f"{b} ×{n}" for b, n in repeated_bodies(messages_from(events, answering)).items()
            ],
            "unanswered": [b for b in seen_bodies if answer_for(b) not in in_room],
            "missing_answers": [
                a
                for a in self.librarian.answers
                if a.startswith(f"L-{visitor.label}-") and a not in in_room
            ],
            "errors": visitor.errors[:10],
            "fatal": visitor.fatal,
        }

    def _tally_json(
        self, t: Tally, when: dict[str, list[float]] | None = None, leg: str = ""
    ) -> dict[str, Any]:
        out = t.json()
        if when is None:
            return out

        def at(body: str, prefix: str = "") -> str:
            times = when.get(prefix + body) or []
            if not times:
                return body
            shown = ", ".join(f"{x:.1f} s" for x in times[:3])
            return f"{body} (at {shown}; {self.timeline.before(times[0])})"

        def duplicated(body: str, extra: int) -> str:
            times = when.get(body) or []
            crashes = self.timeline.between(times[0], times[-1]) if len(times) > 1 else []
            meanwhile = f" [between the copies: {', '.join(crashes)}]" if crashes else ""
            return f"{at(body)} ×{extra + 1}{meanwhile}"

        def lost(body: str) -> str:
            if leg == "librarian_to_visitor" and when.get(body):
                return f"{at(body)}: in the room, never reached the visitor"
            if leg == "visitor_to_librarian" and when.get("ack:" + body):
                return f"{at(body, 'ack:')}: acknowledged, never in the room"
            if leg == "visitor_echo" and when.get("ack:" + body):
                return f"{at(body, 'ack:')}: acknowledged, not in the visitor's history"
            return body

        out["examples"] = {
            "lost": [lost(b) for b in t.lost[:5]],
            "duplicated": [duplicated(b, n) for b, n in list(t.duplicated.items())[:5]],
            "out_of_order": [at(b) for b in t.out_of_order[:5]],
            "unexpected": t.unexpected[:5],
        }
        return out

    def _session_json(self, one: dict[str, Any], visitor: Visitor) -> dict[str, Any]:
        when = one.pop("when")
        return {
            **{k: v for k, v in one.items() if not isinstance(v, Tally)},
            "sent": len(visitor.sent),
            **{leg: self._tally_json(one[leg], when, leg) for leg in LEGS},
            "stats": dict(visitor.stats),
        }

    # summaries

    def _chaos_summary(self) -> dict[str, Any]:
        healthy = sorted(self.stack.healthy_after)
        down = sorted(self.stack.homeserver_down)
        return {
            "refdesk_kills": self.kills_done,
            "refdesk_starts": self.stack.starts,
            "refdesk_start_to_healthy_s": _spread(healthy),
            "homeserver_restarts": self.restarts_done,
            "homeserver_down_s": _spread(down),
            "refdesk_problems": self.stack.problems,
            "events": [f"{t:.2f} {what}" for t, what in self.timeline.events],
        }

    def _actor_summary(self) -> dict[str, Any]:
        stats: dict[str, int] = {}
        for chat in self.chats:
            for key, value in chat.visitor.stats.items():
                stats[key] = stats.get(key, 0) + value
        return {
            "visitors": stats,
            "librarian": dict(self.librarian.stats),
            "librarian_errors": self.librarian.errors[:10],
        }

    def _judge(self, results: dict[str, Any]) -> tuple[list[str], list[str]]:
        violations: list[str] = []
        missed: list[str] = []
        sessions = results.get("sessions", {})
        for label, one in sessions.items():
            for leg in ("visitor_to_librarian", "librarian_to_visitor", "visitor_echo"):
                t = one.get(leg)
                if not t:
                    continue
                for what in ("lost", "duplicated", "out_of_order"):
                    if t[what]:
                        examples = "; ".join(t["examples"][what][:3])
                        violations.append(f"{label} {leg}: {t[what]} {what} — {examples}")
            for key in ("fatal", "room_error"):
                found = one.get(key)
                for problem in found if isinstance(found, list) else [found] if found else []:
                    violations.append(f"{label}: {problem}")
            for key in ACTOR_CHECKS:
                if one.get(key):
                    self.harness.append(f"{label}: librarian {key}: {one[key][:5]}")
        ringing = results.get("ringing", {})
        for gap in ringing.get("not_rung", []):
            violations.append(f"did not ring: {gap}")
        notices = results.get("notices", {})
        for key in (
            "session_rooms_repeated",
            "desk_room_repeated",
            "queue_notices_missing",
            "queue_notices_repeated",
        ):
            if notices.get(key):
                violations.append(f"{key.replace('_', ' ')}: {', '.join(notices[key][:5])}")
        if notices.get("desk_room_error"):
            violations.append(f"desk room: {notices['desk_room_error']}")
        for problem in self.stack.problems:
            violations.append(problem)
        for failed in self.failed_starts:
            violations.append(f"new chat: {failed}")
        convergence = results.get("convergence", {})
        if not convergence.get("converged"):
            violations.append(
                f"did not converge within {self.plan.settle:.0f} s after the last send "
                f"(incomplete: {', '.join(convergence.get('incomplete_chats', [])[:10])})"
            )
        elif convergence["seconds"] > self.plan.target:
            missed.append(
                f"convergence {convergence['seconds']:.1f} s > target {self.plan.target:.0f} s"
            )
        if "sessions" not in results:
            self.harness.append("the audit did not run")
        return violations, missed


def _spread(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {
        "n": len(values),
        "p50": round(values[len(values) // 2], 2),
        "max": round(values[-1], 2),
    }


async def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_chaos(plan: Plan, root: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the whole scenario; the report as a dict (also written to ``root/report.json``)."""
    plan.check()
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="refdesk-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    chaos = Chaos(plan, root, progress)
    try:
        results = await chaos.run()
    except Exception as exc:
        log.exception("the chaos run failed")
        results = {
            "plan": {**asdict(plan), "backoff": asdict(plan.backoff)},
            "data_dir": str(root),
            "harness_errors": [*chaos.harness, f"{type(exc).__name__}: {exc}"],
            "violations": [],
            "targets_missed": [],
        }
    results["duration_s"] = round(time.monotonic() - started, 1)
    (root / "report.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results

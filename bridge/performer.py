"""Performs the desk's stored intents on the homeserver: in order per lane, at least once.

Intents come from the store, never from memory (rooms/intents.py), so a restart of refdesk or a
long homeserver outage delays them and loses none. Each lane (one chat, or the desk) has its own
task: the lane's intents run strictly one after the other, so a later message never overtakes an
earlier one and a chat's notices keep their order; a slow or failing lane backs off alone while
the others flow.

An intent whose outcome is unknown (the homeserver did not answer, or a previous process was
stopped while performing it) is *uncertain*: its sends look for themselves in the room before
they are repeated (bridge/actions.py). Refusals (a 4xx) are counted; an intent other than a
message that keeps being refused is set aside with its reason after a few tries, so it cannot
block its lane for ever. A message is never dropped: it is retried until it is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

from bridge.actions import Actions, Attempt
from bridge.errors import is_transient
from bridge.matrix_api import MatrixClient, MatrixError
from bridge.metrics import BridgeMetrics
from common.background import Worker
from rooms.desk import Desk
from rooms.events import DeskEvent, IntentAdded
from rooms.intents import Intent, IntentKind
from rooms.outbox import Delivered, Work

log = logging.getLogger("refdesk.bridge.performer")

REFUSALS_BEFORE_GIVING_UP = 5
SCAN_EVERY = 30.0


class _Outcome(enum.Enum):
    DONE = "done"  # performed: the lane goes on
    SET_ASIDE = "set_aside"  # refused too often: recorded, the lane goes on
    WAIT = "wait"  # the homeserver or the store is unavailable: back off, retry when it is back
    REFUSED = "refused"  # refused this time: back off and try again


class Performer:
    def __init__(
        self,
        desk: Desk,
        client: MatrixClient,
        actions: Actions,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.desk = desk
        self.metrics = metrics or BridgeMetrics()
        self.client = client
        self.actions = actions
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.instance = ""
        # Called when the homeserver answers again after an outage (the bridge catches up).
        self.on_back: Callable[[], None] = lambda: None
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()  # lanes that got work while their task was finishing
        self._uncertain: set[int] = set()
        self._floor = 0  # intents up to this id were stored by an earlier process
        self._resumed: set[str] = set()  # lanes this process has started on
        self._started = False
        self._outage = False  # a try failed because the homeserver (or store) was unavailable
        self._back = asyncio.Event()  # set, and replaced, when it is back
        self._wake = asyncio.Event()
        self._worker = Worker("refdesk-performer", self._scan)

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, IntentAdded) and self._started:
            self._run_lane(event.lane, event.work)

    async def start(self) -> None:
        if self._started:
            return  # the bridge's preparation was retried: the floor stays the first one
        self.instance = (await self.desk.secret("bridge_instance"))[:8]
        self._floor = await self.desk.last_intent_id()
        self._started = True
        self._worker.start()

    async def stop(self) -> None:
        self._started = False
        await self._worker.stop()
        tasks = list(self._lanes.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()

    async def _scan(self) -> None:
        """At start and then now and again: make sure every lane with work has its task."""
        while True:
            self._wake.clear()
            try:
                for lane in await self.desk.pending_lanes():
                    self._run_lane(lane)
            except Exception:
                log.exception("reading the intents failed")
            try:
                await asyncio.wait_for(self._wake.wait(), SCAN_EVERY)
            except TimeoutError:
                pass

    def _run_lane(self, lane: str, work: Work | None = None) -> None:
        """Make sure the lane has its task. ``work``: its first intent, handed over with the
        wake-up; only a new task starts with it (a running one reads the lane in order)."""
        task = self._lanes.get(lane)
        if task is not None and not task.done():
            self._again.add(lane)
            return
        self._lanes[lane] = asyncio.create_task(self._lane(lane, work), name=f"refdesk-lane-{lane}")

    async def _lane(self, lane: str, first: Work | None = None) -> None:
        backoff = self.min_backoff
        try:
            work = first if first is not None else await self.desk.take_intent(lane)
            while True:
                if work is None:
                    if lane in self._again:
                        self._again.discard(lane)
                        work = await self.desk.take_intent(lane)
                        continue
                    return
                outcome, delivered = await self._perform(work)
                if outcome is _Outcome.DONE:
                    backoff = self.min_backoff
                    # One trip: this one is done, and the next one with what it needs.
                    work = await self.desk.take_intent(lane, (work.intent.id, delivered))
                    continue
                if outcome is _Outcome.SET_ASIDE:
                    work = await self.desk.take_intent(lane)
                    continue
                if outcome is _Outcome.WAIT:
                    # Back off, but go again at once when the homeserver shows it is back.
                    back = self._back
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(back.wait(), backoff)
                    if back.is_set():
                        backoff = self.min_backoff
                        work = await self.desk.take_intent(lane)
                        continue
                else:
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                work = await self.desk.take_intent(lane)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("lane %s stopped; it is picked up again on the next scan", lane)
        finally:
            if self._lanes.get(lane) is asyncio.current_task():
                del self._lanes[lane]

    def homeserver_alive(self) -> None:
        """A sign of life from the homeserver (it sent us a transaction, a send went through):
        after an outage, every lane waiting for it goes again now instead of after its back-off.
        """
        if self._outage:
            self._outage = False
            back, self._back = self._back, asyncio.Event()
            back.set()
            self.on_back()

    async def _perform(self, work: Work) -> tuple[_Outcome, Delivered | None]:
        intent = work.intent
        # A lane runs one intent at a time, so of the intents an earlier process left, only the
        # first of each lane can have been under way when it stopped.
        left_over = intent.id <= self._floor and intent.lane not in self._resumed
        self._resumed.add(intent.lane)
        attempt = Attempt(
            intent,
            self.client,
            self.instance,
            uncertain=left_over or intent.id in self._uncertain,
            session=work.session,
            message=work.message,
        )
        try:
            await self.actions.perform(attempt)
        except Exception as exc:
            # Whatever happened, a send may have got through: look before sending again.
            self._uncertain.add(intent.id)
            if is_transient(exc):
                self._outage = True
                log.info("%s %d waits (%s)", intent.kind, intent.id, exc)
                return _Outcome.WAIT, None
            if isinstance(exc, MatrixError):
                self.metrics.action_refused()
            else:
                log.exception("%s %d failed", intent.kind, intent.id)
            return await self._refused(intent, f"{type(exc).__name__}: {exc}"), None
        self._uncertain.discard(intent.id)
        self.homeserver_alive()
        return _Outcome.DONE, attempt.delivered

    async def _refused(self, intent: Intent, reason: str) -> _Outcome:
        give_up = (
            intent.kind is not IntentKind.MESSAGE
            and intent.attempts + 1 >= REFUSALS_BEFORE_GIVING_UP
        )
        await self.desk.intent_failed(intent.id, reason, give_up=give_up)
        if give_up:
            log.error(
                "%s %d of lane %s set aside after %d refusals: %s",
                intent.kind,
                intent.id,
                intent.lane,
                intent.attempts + 1,
                reason,
            )
            self._uncertain.discard(intent.id)
            return _Outcome.SET_ASIDE
        log.warning("%s %d of lane %s refused: %s", intent.kind, intent.id, intent.lane, reason)
        return _Outcome.REFUSED

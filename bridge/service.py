"""The bridge as one unit: appservice endpoint, event handler, the performer of the desk's
intents, the typing mirror, and the catch-up after a restart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from aiohttp import web

from bridge import store
from bridge.actions import Actions
from bridge.appservice import AppserviceServer
from bridge.commands.desk import invitation_answer
from bridge.desk_room import DeskRooms
from bridge.errors import is_transient
from bridge.ghosts import GhostTemplate
from bridge.handler import EventHandler
from bridge.matrix_api import HomeserverUnavailable, MatrixClient, MatrixError
from bridge.metrics import BridgeMetrics
from bridge.performer import Performer
from bridge.settings import BridgeSettings
from bridge.typing import TypingMirror
from rooms.desk import Desk
from rooms.events import DeskEvent, InvitationAnswered
from rooms.intents import DESK_LANE

log = logging.getLogger("refdesk.bridge")

Page = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Bridge:
    """``metrics``: where the bridge counts what it measures; ``metrics_page``: served at
    ``/metrics`` on the appservice listener (the process's metrics, refdesk/metrics.py)."""

    def __init__(
        self,
        settings: BridgeSettings,
        desk: Desk,
        *,
        metrics: BridgeMetrics | None = None,
        metrics_page: Page | None = None,
    ) -> None:
        self.settings = settings
        self.desk = desk
        self.metrics = metrics or BridgeMetrics()
        self.metrics_page = metrics_page
        self.ghosts = GhostTemplate(settings.ghost_prefix, settings.domain)
        self.client = MatrixClient(
            settings.homeserver_url,
            settings.as_token,
            settings.bot_mxid,
            admin_token=settings.admin_token,
            metrics=self.metrics,
        )
        topic_labels = dict(settings.topic_labels)
        self.rooms = DeskRooms(
            self.client,
            desk,
            alias_prefix=f"{settings.bot_localpart}_",
            desk_name=settings.desk_name,
            members=settings.staff,
            timezone=settings.timezone,
            topic_labels=topic_labels,
            history_days=settings.desk_room_history_days,
        )
        self.handler = EventHandler(
            desk,
            self.client,
            self.ghosts,
            settings.bot_mxid,
            self.rooms,
            timezone=settings.timezone,
            dashboard_url=settings.dashboard_url,
        )
        self.server = AppserviceServer(
            settings.hs_token,
            desk,
            self.ghosts,
            self._on_event,
            on_ephemeral=self.handler.handle_ephemeral,
            on_contact=lambda: self.performer.homeserver_alive(),
            on_retry_asked=self._ping_soon,
            metrics=self.metrics,
        )
        self.actions = Actions(
            desk, self.client, self.ghosts, self.rooms, topic_labels, settings.dashboard_url
        )
        self.performer = Performer(desk, self.client, self.actions, metrics=self.metrics)
        self.performer.on_back = self._catch_up_again
        self.typing = TypingMirror(desk, self.client, self.ghosts)
        desk.subscribe(self.performer.on_desk_event)
        desk.subscribe(self.typing.on_desk_event)
        desk.subscribe(self._on_invitation_answered)
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pinging = False
        self._prepared = False
        self._catching_up: asyncio.Task[None] | None = None
        # Session rooms read since this process started or the homeserver came back; None once
        # a whole catch-up has read them all. A room not read yet is read before its first event
        # is handled (``_on_event``).
        self._read_since: set[str] | None = set()
        self._generation = 0  # how many times the homeserver came back

    async def start(self) -> None:
        await self.client.open()
        app = self.server.app()
        if self.metrics_page is not None:
            app.router.add_get("/metrics", self.metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        settings = self.settings
        site = web.TCPSite(self._runner, settings.listen_host, settings.listen_port)
        await site.start()
        log.info("appservice listening on %s:%d", settings.listen_host, settings.listen_port)
        self.typing.start()
        self._spawn(self._prepare())

    def _ping_soon(self) -> None:
        """After a 503 the homeserver backs off (up to minutes): a ping makes it send again at
        once; sent a moment later, when what failed has had time to pass."""
        if not self._pinging:
            self._pinging = True
            self._spawn(self._ping_later())

    async def _ping_later(self) -> None:
        try:
            delay = 1.0
            while True:
                await asyncio.sleep(delay)
                try:
                    await self.client.ping(self.settings.appservice_id)
                    return
                except (HomeserverUnavailable, MatrixError) as exc:
                    log.info("ping after a retry request failed (%s)", exc)
                    delay = min(delay * 2, 30)
        finally:
            self._pinging = False

    def _on_invitation_answered(self, event: DeskEvent) -> None:
        """Tell the librarian who invited a visitor how they answered (where they invited)."""
        if not isinstance(event, InvitationAnswered):
            return
        invitation, room = event.invitation, event.invitation.reply_to
        if room is None:
            return
        body = invitation_answer(event)
        self._spawn(
            self.desk.transaction(
                lambda tx: self.desk.say(DESK_LANE, room, body, [invitation.librarian])
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bridge task failed", exc_info=task.exception())

    async def _prepare(self) -> None:
        """Once the homeserver is reachable: give the bot its name, make sure the Space and the
        desk room exist, then start performing intents, ping the homeserver (so it resends
        transactions it held for us at once, instead of after its back-off) and catch up."""
        delay = 1.0
        while True:
            try:
                await self.client.set_displayname(
                    self.settings.bot_mxid, self.settings.bot_displayname
                )
                await self.rooms.ensure()
                log.info("homeserver reached; the desk bot is %s", self.settings.bot_mxid)
                await self.performer.start()
                await self.client.ping(self.settings.appservice_id)
                await self.catch_up()
                self._prepared = True
                return
            except (HomeserverUnavailable, MatrixError) as exc:
                log.info("homeserver not ready for the bot yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    def _catch_up_again(self) -> None:
        """The homeserver is back after an outage: it may have restarted, and a homeserver
        killed just after storing an event never sends it (see ``_catch_up_room``), so read the
        rooms again. One catch-up at a time; before the bridge is prepared, its own runs."""
        self._generation += 1
        self._read_since = set()
        if self._prepared and (self._catching_up is None or self._catching_up.done()):
            self._catching_up = asyncio.create_task(self.catch_up())
            self._tasks.add(self._catching_up)
            self._catching_up.add_done_callback(self._task_done)

    async def catch_up(self) -> None:
        """Read what librarians wrote in open session rooms while the bridge was away.

        The homeserver also retries undelivered transactions, but with growing back-off; reading
        the rooms makes a restart converge at once. Only the events after the newest one the
        desk already knows are read, so a late event can never be stored before an earlier one
        the homeserver has yet to send; a room with more unknown events than one page is left to
        the homeserver's own retries. Events are deduplicated by event id.
        """
        delay = 1.0
        generation = self._generation
        while True:
            try:
                sessions = await self.desk.open_sessions_with_rooms()
                for session in sessions:
                    assert session.room_id is not None
                    async with self.server.serial:  # never beside a transaction
                        if self._read_since is None or session.room_id not in self._read_since:
                            await self._catch_up_room(session.room_id)
                if generation == self._generation:
                    self._read_since = None  # every room read since the last trigger
                log.info("catch-up read %d open session rooms", len(sessions))
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.info("catch-up waits (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def _catch_up_room(self, room_id: str, limit: int = 100) -> None:
        """Act on what follows, in the room, the newest event the desk has *received* and acted
        on. Our own events (the ghost's, the bot's) do not count: a visitor's message delivered
        a moment ago says nothing of the librarian's answer just before it, which may still be
        on its way in a transaction.

        Before that point, a librarian's message (or edit, or deletion) the desk never received
        is acted on too, late: the homeserver sends a room's events in order, so one older than
        an event it did send was skipped, not delayed. Synapse does that to an event it stored
        just before it was killed (it never sends it to the appservice); shown late, one place
        out of order, is better than never.
        """
        events = await self.client.recent_events(room_id, limit=limit)
        theirs = [
            (index, event)
            for index, event in enumerate(events)
            if isinstance(event.get("event_id"), str)
            and isinstance(event.get("sender"), str)
            and not self.handler.ours(event["sender"])
        ]
        claimed = await self.desk.read(
            partial(store.claimed_among, event_ids=[e["event_id"] for _, e in theirs])
        )
        received = [index for index, event in theirs if event["event_id"] in claimed]
        if received:
            start = received[-1] + 1
        elif len(events) >= limit:
            log.info("catch-up leaves %s to the homeserver's retries", room_id)
            return
        else:
            start = 0
        late = [e for i, e in theirs if i < start and _missed(e) and e["event_id"] not in claimed]
        if late:
            log.warning(
                "catch-up: %d event(s) in %s the homeserver never sent; acting on them late",
                len(late),
                room_id,
            )
        for event in [*late, *events[start:]]:
            event.setdefault("room_id", room_id)
            await self.handler.handle(event)
        if self._read_since is not None:
            self._read_since.add(room_id)

    async def _on_event(self, event: dict[str, Any]) -> None:
        """An event of a transaction. The first one of a room since this process started or the
        homeserver came back waits until the room has been read: what the homeserver skipped
        meanwhile (``_catch_up_room``) then comes first, in the room's order, not after it."""
        room_id = event.get("room_id")
        if self._read_since is not None and isinstance(room_id, str):
            if room_id not in self._read_since:
                await self._read_first(room_id)
        await self.handler.handle(event)

    async def _read_first(self, room_id: str) -> None:
        session = await self.desk.session_for_room(room_id)
        if session is None or not session.is_open:
            if self._read_since is not None:
                self._read_since.add(room_id)  # not a chat: nothing to catch up
            return
        try:
            await self._catch_up_room(room_id)
        except Exception as exc:
            if is_transient(exc):
                raise  # the transaction is answered 503 and comes again
            log.exception("reading %s before its event failed; the event goes on alone", room_id)
            if self._read_since is not None:
                self._read_since.add(room_id)  # not again for every event

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.performer.stop()
        await self.typing.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()


def _missed(event: dict[str, Any]) -> bool:
    """Whether an event the desk never received must still be acted on: a message that is not a
    command (a late command could act on a chat that has moved on), an edit, a deletion."""
    if event.get("type") == "m.room.redaction":
        return True
    if event.get("type") != "m.room.message":
        return False
    content = event.get("content")
    body = content.get("body") if isinstance(content, dict) else None
    return isinstance(body, str) and not body.startswith("!")

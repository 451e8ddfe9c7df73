"""The bridge as one unit: appservice endpoint, event handler, delivery worker, catch-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from bridge.appservice import AppserviceServer
from bridge.delivery import Deliverer
from bridge.desk_room import DeskRooms
from bridge.ghosts import GhostTemplate
from bridge.handler import EventHandler
from bridge.matrix_api import HomeserverUnavailable, MatrixClient, MatrixError
from bridge.reactor import Reactor
from refdesk.config import Config
from rooms.desk import Desk

log = logging.getLogger("refdesk.bridge")


class Bridge:
    def __init__(self, config: Config, desk: Desk) -> None:
        self.config = config
        self.desk = desk
        asc = config.appservice
        self.ghosts = GhostTemplate(asc.ghost_prefix, config.homeserver.domain)
        self.client = MatrixClient(config.homeserver.url, asc.as_token, config.bot_mxid)
        lang = config.desk.default_language
        topic_labels = {t.id: t.labels.get(lang, t.id) for t in config.desk.topics}
        staff = tuple(dict.fromkeys((*config.desk.librarians, *config.desk.supervisors)))
        self.rooms = DeskRooms(
            self.client,
            desk.store,
            alias_prefix=f"{asc.bot_localpart}_",
            desk_name=config.desk.name,
            members=staff,
            timezone=config.desk.timezone,
            topic_labels=topic_labels,
        )
        self.handler = EventHandler(
            desk,
            self.client,
            self.ghosts,
            config.bot_mxid,
            self.rooms,
            timezone=config.desk.timezone,
        )
        self.server = AppserviceServer(
            asc.hs_token,
            desk,
            self.ghosts,
            self.handler.handle,
            on_ephemeral=self.handler.handle_ephemeral,
        )
        self.deliverer = Deliverer(desk, self.client, self.ghosts, self.rooms, topic_labels)
        self.reactor = Reactor(desk, self.client, self.ghosts, self.rooms, config.desk.supervisors)
        desk.subscribe(self.deliverer.on_desk_event)
        desk.subscribe(self.reactor.on_desk_event)
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.client.open()
        self._runner = web.AppRunner(self.server.app(), access_log=None)
        await self._runner.setup()
        asc = self.config.appservice
        site = web.TCPSite(self._runner, asc.listen_host, asc.listen_port)
        await site.start()
        log.info("appservice listening on %s:%d", asc.listen_host, asc.listen_port)
        self.reactor.start()
        self._spawn(self._prepare())

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
        desk room exist, then start delivering, ping the homeserver (so it resends transactions
        it held for us at once, instead of after its back-off) and catch up."""
        delay = 1.0
        while True:
            try:
                await self.client.set_displayname(
                    self.config.bot_mxid, self.config.appservice.bot_displayname
                )
                await self.rooms.ensure()
                log.info("homeserver reached; the desk bot is %s", self.config.bot_mxid)
                self.deliverer.start()
                await self.client.ping(self.config.appservice.id)
                await self.catch_up()
                return
            except (HomeserverUnavailable, MatrixError) as exc:
                log.info("homeserver not ready for the bot yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def catch_up(self) -> None:
        """Read what librarians wrote in open session rooms while the bridge was away.

        The homeserver also retries undelivered transactions, but with growing back-off; reading
        the rooms makes a restart converge at once. Events are deduplicated by event id.
        """
        delay = 1.0
        while True:
            try:
                sessions = await self.desk.open_sessions_with_rooms()
                for session in sessions:
                    assert session.room_id is not None
                    for event in await self.client.recent_events(session.room_id):
                        event.setdefault("room_id", session.room_id)
                        await self.handler.handle(event)
                log.info("catch-up read %d open session rooms", len(sessions))
                return
            except (HomeserverUnavailable, MatrixError) as exc:
                log.info("catch-up waits for the homeserver (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.deliverer.stop()
        await self.reactor.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()

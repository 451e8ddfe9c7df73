"""The bridge as one unit: appservice endpoint, event handler, delivery worker, catch-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from bridge.appservice import AppserviceServer
from bridge.delivery import Deliverer
from bridge.ghosts import GhostTemplate
from bridge.handler import EventHandler
from bridge.matrix_api import HomeserverUnavailable, MatrixClient, MatrixError
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
        self.handler = EventHandler(desk, self.client, self.ghosts, config.bot_mxid)
        self.server = AppserviceServer(asc.hs_token, desk, self.ghosts, self.handler.handle)
        lang = config.desk.default_language
        self.deliverer = Deliverer(
            desk,
            self.client,
            self.ghosts,
            config.desk.librarians,
            {t.id: t.labels.get(lang, t.id) for t in config.desk.topics},
        )
        desk.subscribe(self.deliverer.on_desk_event)
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
        self.deliverer.start()
        self._spawn(self._prepare_bot())
        self._spawn(self.catch_up())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bridge task failed", exc_info=task.exception())

    async def _prepare_bot(self) -> None:
        """Once the homeserver is reachable: ping it (so it resends transactions it holds for
        us at once, instead of after its back-off) and give the bot its display name."""
        delay = 1.0
        while True:
            try:
                await self.client.ping(self.config.appservice.id)
                await self.client.set_displayname(
                    self.config.bot_mxid, self.config.appservice.bot_displayname
                )
                log.info("homeserver reached; the desk bot is %s", self.config.bot_mxid)
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
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.client.close()

"""Wires the store, the desk, the bridge and the widget server into one running service."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from bridge.service import Bridge
from common.background import Worker
from mailer.smtp import Mailer
from refdesk.config import Config
from refdesk.directory_config import build_directory, demo_warning
from refdesk.metrics import Metrics
from refdesk.relay import Relay
from refdesk.wiring import bridge_settings, create_widget_app, desk_rules, mail_settings
from rooms.desk import Desk, utcnow
from rooms.directory import MemberDirectory
from rooms.hours import ServiceHours
from rooms.knowledge import KnowledgeBase
from rooms.language import install
from rooms.store import PostgresDatabase, open_database
from rooms.verification import Verifier
from widget_server.api import CONTEXT, WidgetContext
from widget_server.app import runner as widget_runner

log = logging.getLogger("refdesk")


def config_warnings(config: Config) -> list[str]:
    """What the admin should hear from `check-config` and at start: working, not finished."""
    warnings = []
    demo = demo_warning(config.verification)
    if demo is not None:
        warnings.append(demo)
    if not config.email.enabled:
        warnings.append(
            "email: off (no email.host), so replies to offline messages and transcripts are not "
            "emailed to visitors; fill in the email: section to send them"
        )
    return warnings


ROLES = ("all", "widget", "bridge")


class RefDesk:
    """One refdesk process: start() it, stop() it; it keeps nothing that the store does not.

    ``role``: ``all`` (one process does everything, the default), or with PostgreSQL several
    ``widget`` processes (the visitor side, behind a load balancer) and one ``bridge`` process
    (the appservice, the desk's clock and the mail), which wake each other through the database.
    """

    def __init__(self, config: Config, role: str = "all") -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.config = config
        self.role = role
        install(config.desk.languages)  # the words of every text a visitor reads
        self.db = open_database(config.database.target)
        if role != "all" and not isinstance(self.db, PostgresDatabase):
            raise ValueError(
                f"--role {role} needs PostgreSQL (database.url): a SQLite store has one process"
            )
        self.directory: MemberDirectory | None = None
        verifier = None
        if config.verification is not None:
            self.directory = build_directory(config.verification)
            verifier = Verifier(self.directory, config.verification.rules, utcnow)
        self.desk = Desk(
            self.db,
            desk_rules(config),
            knowledge=KnowledgeBase(list(config.desk.knowledge)),
            verifier=verifier,
            hours=ServiceHours(config.hours.schedule) if config.hours is not None else None,
        )
        # The visitors on the site are in the memory of the process serving their widget.
        self.desk.sees_visitors = role != "bridge"
        self.relay = (
            Relay(self.db, self.desk.bus) if isinstance(self.db, PostgresDatabase) else None
        )
        self.metrics: Metrics | None = None
        if config.metrics.enabled:
            self.metrics = Metrics(
                config.metrics,
                self.desk,
                bridge=role in ("all", "bridge"),
                visitors=self._visitors_connected if role in ("all", "widget") else None,
            )
        self.mailer: Mailer | None = None
        self.bridge: Bridge | None = None
        if role in ("all", "bridge"):
            self.mailer = Mailer(mail_settings(config), self.desk)
            self.desk.subscribe(self.mailer.on_desk_event)
            self.bridge = Bridge(
                bridge_settings(config),
                self.desk,
                metrics=self.metrics.bridge if self.metrics else None,
                metrics_page=self.metrics.page if self.metrics else None,
            )
        self._widget_runner: web.AppRunner | None = None
        self._ticker = Worker("refdesk-ticker", self._tick)

    @property
    def widget_url(self) -> str:
        return self.config.widget.public_url

    @property
    def widget(self) -> WidgetContext | None:
        """The widget server's shared state (its settings, hub, sockets), while it runs."""
        runner = self._widget_runner
        return runner.app[CONTEXT] if runner is not None else None

    def _visitors_connected(self) -> int:
        widget = self.widget
        return widget.signals.connected() if widget is not None else 0

    async def start(self) -> None:
        for warning in config_warnings(self.config):
            log.warning("%s", warning)
        await self.db.open()
        log.info("store: %s", self.config.database.shown)
        if self.relay is not None:
            await self.relay.start()
        if self.bridge is not None:
            await self.bridge.start()
        if self.role in ("all", "widget"):
            app = create_widget_app(self.config, self.desk)
            self._widget_runner = widget_runner(app, access_log=None, shutdown_timeout=1)
            await self._widget_runner.setup()
            wc = self.config.widget
            await web.TCPSite(self._widget_runner, wc.listen_host, wc.listen_port).start()
            log.info("widget server listening on %s:%d", wc.listen_host, wc.listen_port)
        if self.mailer is not None:  # the bridge process keeps the desk's clock and mail
            self._ticker.start()
            self.mailer.start()
        if self.metrics is not None:
            await self.metrics.start()

    async def _tick(self) -> None:
        """The desk's clock: escalates chats nobody has claimed in time."""
        delays = [5.0, self.config.desk.escalate_after / 4]
        for team in self.config.desk.teams:  # overflow and offers moving on, on time
            delays += [team.overflow_after / 4, team.accept_within / 4]
        if self.config.offline.batch_delay:
            delays.append(self.config.offline.batch_delay / 2)
        if self.config.cooperative.partners:  # rolled over to partners on time
            delays.append(self.config.cooperative.after / 4)
        period = max(0.25, min(delays))
        while True:
            await asyncio.sleep(period)
            try:
                await self.desk.tick()
            except Exception:
                log.exception("desk tick failed")

    async def stop(self) -> None:
        if self.metrics is not None:
            await self.metrics.stop()
        await self._ticker.stop()
        if self.mailer is not None:
            await self.mailer.stop()
        if self._widget_runner is not None:
            await self._widget_runner.cleanup()
            self._widget_runner = None
        if self.bridge is not None:
            await self.bridge.stop()
        if self.relay is not None:
            await self.relay.stop()
        if self.directory is not None:
            await self.directory.close()
        await self.db.close()

    async def __aenter__(self) -> RefDesk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

"""The process's operations metrics for Prometheus: ``/metrics`` on the appservice listener
and, when ``metrics.listen_port`` is set, on a listener of its own; never on the widget's port.

Each process has its own registry (several desks in one process, as in the tests, never mix).
What the desk has on its hands (chats waiting and served, intents not yet performed) is read
from the store at each scrape through ``Desk.workload``: it is the same from every process of a
desk, so only the process that runs the bridge shows it, with the first replies (librarians'
answers reach the desk there) and the bridge's own counters. A process that serves visitors
shows how many are connected to it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bridge.metrics import BridgeMetrics
from refdesk.config import MetricsConfig
from rooms.desk import Desk
from rooms.events import DeskEvent, FirstReply
from rooms.store.workload import Workload

log = logging.getLogger("refdesk.metrics")

# The classic text format, which every Prometheus server reads (what generate_latest writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds from a visitor's first message to a librarian's first answer; 300 is the usual target.
FIRST_REPLY_BUCKETS = (15, 30, 60, 120, 180, 300, 600, 900, 1800, 3600)


class DeskGauges(Collector):
    """The desk's workload as gauges, from the reading taken for the scrape being served."""

    def __init__(self) -> None:
        self.reading: tuple[Workload, datetime] | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.reading)

    def _families(self, reading: tuple[Workload, datetime] | None) -> list[Metric]:
        values: dict[str, float | None] = dict.fromkeys(_GAUGES)
        if reading is not None:
            load, now = reading
            queued = load.oldest_queued_at
            values = {
                "refdesk_chats_waiting": load.waiting,
                "refdesk_chats_oldest_wait_seconds": (
                    max(0.0, (now - queued).total_seconds()) if queued is not None else 0.0
                ),
                "refdesk_offline_chats_waiting": load.offline_waiting,
                "refdesk_chats_active": load.active,
                "refdesk_deliveries_pending": load.pending_deliveries,
                "refdesk_desk_actions_pending": load.pending_actions,
            }
        return [GaugeMetricFamily(name, text, value=values[name]) for name, text in _GAUGES.items()]


_GAUGES = {
    "refdesk_chats_waiting": "Live chats in the queue that no librarian serves yet.",
    "refdesk_chats_oldest_wait_seconds": (
        "How long the longest-waiting of those has been in the queue (0: none waits)."
    ),
    "refdesk_offline_chats_waiting": (
        "Offline messages (left while nobody was on duty) that nobody has taken yet."
    ),
    "refdesk_chats_active": "Open chats a librarian serves.",
    "refdesk_deliveries_pending": "Messages stored but not yet delivered to the homeserver.",
    "refdesk_desk_actions_pending": (
        "Other desk actions stored but not yet performed on the homeserver (ringing, notices, "
        "invitations, queue edits)."
    ),
}


class Metrics:
    """One process's metrics, and the page that serves them.

    ``bridge``: the process runs the bridge (roles ``all`` and ``bridge``), which shows the
    desk's workload, the first replies and the bridge's counters. ``visitors``: how many
    visitors are connected to this process (roles ``all`` and ``widget``).
    """

    def __init__(
        self,
        config: MetricsConfig,
        desk: Desk,
        *,
        bridge: bool,
        visitors: Callable[[], int] | None = None,
    ) -> None:
        self.config = config
        self.desk = desk
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.gauges: DeskGauges | None = None
        self.bridge: BridgeMetrics | None = None
        self.first_reply: Histogram | None = None
        if bridge:
            self.gauges = DeskGauges()
            self.registry.register(self.gauges)
            self.bridge = BridgeMetrics(self.registry)
            self.first_reply = Histogram(
                "refdesk_first_reply_seconds",
                "Time from a visitor's first message to a librarian's first answer, per live "
                "chat (offline messages are not counted).",
                buckets=FIRST_REPLY_BUCKETS,
                registry=self.registry,
            )
            desk.subscribe(self.on_desk_event)
        if visitors is not None:
            connected = Gauge(
                "refdesk_visitors_connected",
                "Chats whose visitor is connected to this process now (a WebSocket or a "
                "waiting long poll).",
                registry=self.registry,
            )
            connected.set_function(visitors)
        self._runner: web.AppRunner | None = None

    def on_desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, FirstReply) and self.first_reply is not None:
            self.first_reply.observe(event.waited.total_seconds())

    async def page(self, request: web.Request) -> web.StreamResponse:
        """``GET /metrics``: who may ask, then the text format; 503 while the store cannot be
        read (Prometheus then shows the target down rather than numbers that are not there)."""
        if not self._may_scrape(request.remote):
            return web.Response(status=403, text="not allowed to read the metrics\n")
        token = self.config.bearer_token
        if token is not None:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return web.Response(
                    status=401, text="bearer token needed\n", headers={"WWW-Authenticate": "Bearer"}
                )
        if self.gauges is not None:
            try:
                load = await self.desk.workload()
            except Exception:
                log.warning("metrics: the store cannot be read", exc_info=True)
                return web.Response(status=503, text="the store cannot be read\n")
            self.gauges.reading = (load, self.desk.clock())
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    def _may_scrape(self, remote: str | None) -> bool:
        networks = self.config.allowed_networks
        if not networks:
            return True
        try:
            address = ipaddress.ip_address((remote or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in networks)

    async def start(self) -> None:
        """The listener of its own, if ``metrics.listen_port`` is set."""
        port = self.config.listen_port
        if port is None:
            return
        app = web.Application()
        app.router.add_get("/metrics", self.page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.config.listen_host, port).start()
        log.info("metrics on http://%s:%d/metrics", self.config.listen_host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

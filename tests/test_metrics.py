"""Operations metrics: /metrics on the appservice listener, read with Prometheus's own parser,
counts a chat as it waits, is answered and is served; never on the widget's port."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from refdesk.config import ConfigError, MetricsConfig, parse_config
from refdesk.homeserver import free_port
from refdesk.metrics import Metrics
from refdesk.service import RefDesk
from rooms.desk import Desk, DeskRules
from rooms.events import DeskEvent, FirstReply
from rooms.ids import UserID
from rooms.queue import QueueRules
from rooms.session import VisitorForm
from rooms.store import Database, open_database
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_config import good
from tests.test_spine import room_of
from widget_server.hub import SessionSignals

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample by name and labels, as Prometheus reads the page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, (resp.status, await resp.text())
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await resp.text())


def appservice_metrics(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.appservice.listen_port}/metrics"


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_a_chat_waits_is_answered_and_is_served(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    url = appservice_metrics(stack)
    before = await scrape(url)
    for kind in ("unreachable", "server_error", "rate_limited", "refused"):
        assert value(before, "refdesk_homeserver_errors_total", kind=kind) >= 0

    await visitor.start(name="Rina")
    await visitor.send("Apakah ada buku tentang sejarah Majapahit?")
    waiting = await scrape(url)
    assert value(waiting, "refdesk_chats_waiting") == value(before, "refdesk_chats_waiting") + 1
    assert value(waiting, "refdesk_chats_oldest_wait_seconds") > 0
    for name in ("refdesk_deliveries_pending", "refdesk_desk_actions_pending"):
        assert value(waiting, name) >= 0

    sari = librarians["sari"]
    assert visitor.session_id is not None
    room_id = await room_of(stack, visitor.session_id)
    await sari.wait_for_invite(room_id)
    await sari.join(room_id)
    await sari.send(room_id, "Ada, di rak 959.8. Mau saya carikan judulnya?")
    await visitor.wait_for(lambda m: m["body"].startswith("Ada, di rak"))

    served = await scrape(url)
    assert value(served, "refdesk_chats_waiting") == value(before, "refdesk_chats_waiting")
    assert value(served, "refdesk_chats_active") == value(before, "refdesk_chats_active") + 1
    replies = "refdesk_first_reply_seconds_count"
    assert value(served, replies) == value(before, replies) + 1
    waited = value(served, "refdesk_first_reply_seconds_sum")
    assert waited > value(before, "refdesk_first_reply_seconds_sum")
    # The answer came in a transaction, timed until it was answered.
    handled = "refdesk_transaction_seconds_count"
    assert value(served, handled) > value(before, handled)

    # A second answer is not a first reply.
    await sari.send(room_id, "Judulnya: Majapahit, Sejarah dan Kejayaannya.")
    await visitor.wait_for(lambda m: m["body"].startswith("Judulnya"))
    assert value(await scrape(url), replies) == value(served, replies)

    await visitor.end()
    closed = await scrape(url)
    assert value(closed, "refdesk_chats_active") == value(before, "refdesk_chats_active")


async def test_connected_visitors_are_counted_and_the_widget_port_has_no_metrics(
    stack: Stack, visitor: Visitor
) -> None:
    await visitor.start()
    ws_url = f"{stack.widget_url}/api/sessions/{visitor.session_id}/ws"
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url) as ws:
            await ws.send_json({"type": "hello", "token": visitor.token, "after": 0})
            assert (await ws.receive_json(timeout=5))["type"] == "ready"
            assert value(await scrape(appservice_metrics(stack)), "refdesk_visitors_connected") >= 1
        async with http.get(f"{stack.widget_url}/metrics") as resp:
            assert resp.status == 404


def test_connected_counts_each_chat_once() -> None:
    signals = SessionSignals()

    class Socket:
        def wake(self, message: object = None) -> None:
            pass

    first, second = Socket(), Socket()
    signals.watch("a", first)
    signals.watch("a", second)  # the same chat in two tabs
    assert signals.connected() == 1
    with signals.polling("a"), signals.polling("b"), signals.polling("b"):
        assert signals.connected() == 2
    assert signals.connected() == 1
    signals.unwatch("a", first)
    signals.unwatch("a", second)
    assert signals.connected() == 0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_the_workload_and_first_replies_on_both_engines(store: Database) -> None:
    sari = UserID("@sari:hs")
    clock = Clock()
    desk = Desk(store, DeskRules(topics=("literature",), queue=QueueRules((sari,))), clock=clock)
    events: list[DeskEvent] = []
    desk.subscribe(events.append)
    load = await desk.workload()
    assert (load.waiting, load.oldest_queued_at, load.active, load.pending_actions) == (
        0,
        None,
        0,
        0,
    )

    live, _ = await desk.start_session(VisitorForm("Budi", "b@example.org", "literature"))
    await desk.visitor_message(live, "halo", "c-1")
    asked_at = clock.now
    await desk.queue.set_duty(sari, False)
    offline, _ = await desk.start_session(VisitorForm("Ani", "a@example.org", "literature"))
    clock.now += timedelta(seconds=5)
    await desk.visitor_message(offline, "halo?", "c-2")
    load = await desk.workload()
    assert (load.waiting, load.oldest_queued_at, load.offline_waiting) == (1, asked_at, 1)
    assert load.active == 0 and load.pending_deliveries == 2 and load.pending_actions >= 1

    await desk.queue.set_duty(sari, True)
    clock.now += timedelta(seconds=95)
    await desk.librarian_message(live, sari, "Sari", "Halo Budi", "$one")
    await desk.librarian_message(live, sari, "Sari", "Ada yang bisa dibantu?", "$two")
    await desk.librarian_message(offline, sari, "Sari", "Halo Ani", "$three")  # offline: later
    load = await desk.workload()
    assert (load.waiting, load.active, load.offline_waiting) == (0, 2, 0)
    replies = [e for e in events if isinstance(e, FirstReply)]
    assert [(e.session.id, e.waited) for e in replies] == [(live.id, timedelta(seconds=100))]


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    db = open_database(tmp_path / "store.db")
    await db.open()
    try:
        yield Desk(db, DeskRules(topics=("literature",)))
    finally:
        await db.close()


async def test_its_own_listener_asks_for_the_token_and_the_address(desk: Desk) -> None:
    token = "s3cret-metrics-token-for-tests"
    port = free_port()
    config = MetricsConfig(listen_port=port, bearer_token=token)
    metrics = Metrics(config, desk, bridge=True)
    # A second desk's metrics in the same process: each has its own registry.
    Metrics(config, desk, bridge=True)
    await metrics.start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.status == 401
            async with http.get(url, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
        samples = await scrape(url, {"Authorization": f"Bearer {token}"})
        assert value(samples, "refdesk_chats_waiting") == 0
        assert value(samples, "refdesk_chats_oldest_wait_seconds") == 0
        assert value(samples, "refdesk_first_reply_seconds_count") == 0
        assert ("process_start_time_seconds", ()) in samples
        assert ("refdesk_visitors_connected", ()) not in samples  # no widget server here
    finally:
        await metrics.stop()

    elsewhere = MetricsConfig(
        listen_port=port, allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),)
    )
    metrics = Metrics(elsewhere, desk, bridge=True)
    await metrics.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 403
    finally:
        await metrics.stop()


def _with_metrics(**metrics: Any) -> dict[str, Any]:
    data = copy.deepcopy(good())
    data["metrics"] = metrics
    return data


def test_config_keys_and_their_errors() -> None:
    config = parse_config(good())
    assert config.metrics == MetricsConfig()  # on the appservice listener, open to who reaches it
    config = parse_config(
        _with_metrics(
            listen_port=9330, bearer_token="a" * 32, allowed_networks=["10.0.0.0/8", "::1"]
        )
    )
    assert config.metrics.listen_port == 9330 and config.metrics.bearer_token == "a" * 32
    assert [str(n) for n in config.metrics.allowed_networks] == ["10.0.0.0/8", "::1/128"]
    cases = [
        ({"listen_port": 8080}, "metrics.listen_port", "widget.listen_port"),
        ({"listen_port": 29330}, "metrics.listen_port", "appservice.listen_port"),
        ({"listen_port": "x"}, "metrics.listen_port", "integer"),
        ({"bearer_token": "CHANGE_ME"}, "metrics.bearer_token", "placeholder"),
        ({"allowed_networks": ["10.0.0.1/8"]}, "metrics.allowed_networks[0]", "host bits"),
        ({"enabled": "yes"}, "metrics.enabled", "true or false"),
        ({"port": 9330}, "metrics.port", "not a known setting"),
    ]
    for metrics, path, problem in cases:
        with pytest.raises(ConfigError) as info:
            parse_config(_with_metrics(**metrics))
        assert info.value.path == path and problem in info.value.problem, info.value


def test_split_processes_show_each_what_is_theirs() -> None:
    data = _with_metrics(listen_port=9331)
    data["database"] = {"url": "postgresql://refdesk@127.0.0.1/refdesk"}  # never connected
    config = parse_config(data)

    def names(desk: RefDesk) -> set[str]:
        assert desk.metrics is not None
        return {metric.name for metric in desk.metrics.registry.collect()}

    bridge, widget = RefDesk(config, role="bridge"), RefDesk(config, role="widget")
    assert {"refdesk_chats_waiting", "refdesk_homeserver_errors"} <= names(bridge)
    assert "refdesk_visitors_connected" not in names(bridge)
    assert "refdesk_visitors_connected" in names(widget)
    assert "refdesk_chats_waiting" not in names(widget)  # the store's numbers: the bridge's
    assert RefDesk(parse_config(_with_metrics(enabled=False))).metrics is None

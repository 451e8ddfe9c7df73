"""Several processes, one desk, on PostgreSQL: two visitor-facing widget processes and one bridge,
waking each other through LISTEN/NOTIFY. A visitor on process A gets a librarian's answer; a
visitor who moves to process B mid-chat loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from refdesk.homeserver import free_port
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_desk_in_element import eventually
from tests.test_up_restarts import invited_to

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """One `refdesk serve` child, its output kept in a file."""

    def __init__(self, config: Path, role: str, log: Path) -> None:
        self.config, self.role, self.log = config, role, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "refdesk.cli",
                "serve",
                "--config",
                str(self.config),
                "--role",
                self.role,
                cwd=ROOT,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 60
        while "refdesk is running" not in self.log.read_text(errors="replace"):
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.role} did not start:\n{self.log.read_text()[-3000:]}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@pytest.fixture
async def processes(
    stack: Stack, tmp_path: Path, new_postgres_url: Callable[[], Awaitable[str]]
) -> AsyncIterator[tuple[str, str]]:
    """The bridge and two widget processes on one PostgreSQL desk (the in-process refdesk of
    the test session steps aside for them); yields the widget URLs of A and B."""
    url = await new_postgres_url()
    data = yaml.safe_load(stack.config_path.read_text())
    data["database"] = {"url": url}
    data["logging"]["level"] = "INFO"
    ports = {"a": free_port(), "b": free_port()}
    configs = {}
    for name, port in ports.items():
        data["widget"]["listen_port"] = port
        configs[name] = tmp_path / f"refdesk-{name}.yaml"
        configs[name].write_text(yaml.safe_dump(data))
    children = [
        Process(configs["a"], "bridge", tmp_path / "bridge.log"),
        Process(configs["a"], "widget", tmp_path / "widget-a.log"),
        Process(configs["b"], "widget", tmp_path / "widget-b.log"),
    ]
    await stack.stop_refdesk()
    try:
        for child in children:
            await child.start()
        yield f"http://127.0.0.1:{ports['a']}", f"http://127.0.0.1:{ports['b']}"
    finally:
        for child in children:
            await child.stop()
        await stack.start_refdesk()


async def wait_frame(ws: aiohttp.ClientWebSocketResponse, body: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        frame = await ws.receive_json(timeout=deadline - time.monotonic())
        if frame.get("type") == "message" and frame["message"]["body"] == body:
            return dict(frame["message"])
    raise AssertionError(f"no frame with {body!r}")


async def test_two_widget_processes_and_a_bridge_lose_nothing(
    stack: Stack, librarians: dict[str, Librarian], processes: tuple[str, str]
) -> None:
    url_a, url_b = processes
    sari = librarians["sari"]
    visitor = Visitor(url_a)
    http = aiohttp.ClientSession()
    try:
        await visitor.start(name="Prosesa")
        await visitor.send("Halo dari proses A")
        room_id = str(await eventually(lambda: invited_to(sari, "Prosesa")))
        await sari.join(room_id)
        await sari.wait_for(lambda s: s.room_id == room_id and s.body == "Halo dari proses A")

        # On A's WebSocket, the librarian's answer arrives: the bridge woke process A.
        async with http.ws_connect(f"{url_a}/api/sessions/{visitor.session_id}/ws") as ws:
            await ws.send_json({"type": "hello", "token": visitor.token, "after": 0})
            assert (await ws.receive_json(timeout=10))["type"] == "ready"
            await sari.send(room_id, "Jawaban pertama")
            first = await wait_frame(ws, "Jawaban pertama")

        # The visitor's next request goes to B (a load balancer's choice): same token, the
        # cursor from A, nothing missed, nothing twice.
        moved = Visitor(url_b)
        moved.session_id, moved.token = visitor.session_id, visitor.token
        try:
            async with http.ws_connect(f"{url_b}/api/sessions/{moved.session_id}/ws") as ws:
                await ws.send_json({"type": "hello", "token": moved.token, "after": first["seq"]})
                assert (await ws.receive_json(timeout=10))["type"] == "ready"
                await ws.send_json({"type": "send", "client_id": "b-1", "body": "Dari proses B"})
                await sari.wait_for(lambda s: s.room_id == room_id and s.body == "Dari proses B")
                await sari.send(room_id, "Jawaban kedua")
                await wait_frame(ws, "Jawaban kedua")
            history = (await moved.messages())["messages"]
        finally:
            await moved.close()
        bodies = [m["body"] for m in history if m["origin"] != "desk"]
        assert bodies == ["Halo dari proses A", "Jawaban pertama", "Dari proses B", "Jawaban kedua"]
        ghost = stack.mxid(f"refdesk_v_{visitor.session_id}")
        assert sari.bodies(room_id, sender=ghost) == ["Halo dari proses A", "Dari proses B"]
        seqs = [m["seq"] for m in history]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finally:
        await visitor.close()
        await http.close()

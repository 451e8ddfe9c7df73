"""`refdesk up`: one command runs everything; Ctrl-C stops it cleanly; a re-run reuses the data."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
from nio import AsyncClient, LoginResponse

from refdesk.embedded import _prepare, ignored_ports
from refdesk.homeserver import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _start_up(
    data_dir: Path, ports: tuple[int, int, int]
) -> tuple[asyncio.subprocess.Process, str]:
    widget, homeserver, appservice = ports
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "refdesk.cli",
        "up",
        "--data-dir",
        str(data_dir),
        "--port",
        str(widget),
        "--homeserver-port",
        str(homeserver),
        "--appservice-port",
        str(appservice),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output = ""
    deadline = time.monotonic() + 120
    while "Press Ctrl-C to stop." not in output:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"refdesk up did not get ready:\n{output}")
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if not line:
            raise AssertionError(f"refdesk up exited early:\n{output}")
        output += line.decode()
    return proc, output


async def _interrupt(proc: asyncio.subprocess.Process) -> str:
    proc.send_signal(signal.SIGINT)
    assert proc.stdout is not None
    rest = await asyncio.wait_for(proc.stdout.read(), 60)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    return rest.decode()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


async def test_up_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    ports = (free_port(), free_port(), free_port())
    data_dir = tmp_path / "data"
    proc, banner = await _start_up(data_dir, ports)
    try:
        assert f"http://localhost:{ports[0]}/demo" in banner
        assert f"http://127.0.0.1:{ports[1]}" in banner
        accounts = dict(re.findall(r"(@\w+:localhost)\s+password: (\S+)", banner))
        assert set(accounts) == {"@sari:localhost", "@dewi:localhost", "@agus:localhost"}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ports[0]}/demo") as resp:
                assert resp.status == 200
                assert '<script src="/widget.js"' in await resp.text()
            async with http.get(f"http://127.0.0.1:{ports[0]}/api/config") as resp:
                assert (await resp.json())["desk_name"] == "Tanya Pustakawan"
        client = AsyncClient(f"http://127.0.0.1:{ports[1]}", "@sari:localhost")
        assert isinstance(await client.login(accounts["@sari:localhost"]), LoginResponse)
        await client.close()
        synapse_pid = int((data_dir / "synapse" / "homeserver.pid").read_text())
        assert _pid_alive(synapse_pid)
    finally:
        rest = await _interrupt(proc)
    assert "Stopping" in rest
    assert not _pid_alive(synapse_pid), "Synapse outlived refdesk up"

    # A second run reuses the config, the store and the accounts.
    config_before = (data_dir / "refdesk.yaml").read_text()
    proc, banner = await _start_up(data_dir, (free_port(), free_port(), free_port()))
    try:
        assert dict(re.findall(r"(@\w+:localhost)\s+password: (\S+)", banner)) == accounts
        assert f"http://localhost:{ports[0]}/demo" in banner  # ports come from the kept config
        client = AsyncClient(f"http://127.0.0.1:{ports[1]}", "@dewi:localhost")
        assert isinstance(await client.login(accounts["@dewi:localhost"]), LoginResponse)
        await client.close()
    finally:
        await _interrupt(proc)
    assert (data_dir / "refdesk.yaml").read_text() == config_before


def test_ports_asked_of_an_existing_data_dir_are_said_to_be_ignored(tmp_path: Path) -> None:
    """A data dir keeps the ports of its first run; other ports on the command line get a note
    that says so and what to edit, instead of being dropped without a word."""
    data_dir = tmp_path / "data"
    config, _ = _prepare(data_dir, None, 32857, None, 34033)
    assert (config.widget.listen_port, config.appservice.listen_port) == (32857, 34033)
    assert "8008" in config.homeserver.url  # the first run's default
    assert ignored_ports(config, {"widget": 32857, "homeserver": None, "appservice": None}) == []
    notes = ignored_ports(config, {"widget": 40000, "homeserver": 8009, "appservice": 34033})
    assert notes == [
        "--port 40000 is ignored: this data dir keeps port 32857 from its first run "
        "(to change it, edit widget.listen_port and widget.public_url)",
        "--homeserver-port 8009 is ignored: this data dir keeps port 8008 from its first run "
        "(to change it, edit homeserver.url (and the homeserver's own config))",
    ]
    again, _ = _prepare(data_dir, None, None, None, None)  # a second run: the same ports
    assert again.widget.listen_port == 32857

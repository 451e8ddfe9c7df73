"""README, "Running against your own homeserver": the documented steps, followed literally.

Copy the sample, make the edits an admin makes (by text, so the comments stay), let
`generate-registration` fill in the tokens, give the registration to a homeserver (a dedicated
Synapse: the suite's shared one cannot load a new registration), `check-config`, `serve`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import aiohttp
import yaml
from nio import (
    AsyncClient,
    InviteMemberEvent,
    LoginResponse,
    RoomGetStateEventResponse,
    RoomMessageNotice,
    SyncResponse,
)

from refdesk.homeserver import EmbeddedSynapse, free_port

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "library.test"
PASSWORD = "correct horse battery staple"


def _edit(text: str, section: str, old: str, new: str) -> str:
    """Replace the one line ``old`` inside the top-level ``section:`` block of the config."""
    start = text.index(f"\n{section}:\n") + 1
    end = re.compile(r"^\S", re.MULTILINE).search(text, start + len(section) + 2)
    stop = end.start() if end else len(text)
    block = text[start:stop]
    assert block.count(f"{old}\n") == 1, f"{section}: expected one line {old!r}"
    return text[:start] + block.replace(f"{old}\n", f"{new}\n") + text[stop:]


def _refdesk(*args: str) -> list[str]:
    return [sys.executable, "-m", "refdesk.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


async def _run(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *_refdesk(*args),
        cwd=cwd,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _output(log: Path) -> str:
    return log.read_text(errors="replace")


async def _wait_for_config(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            assert proc.returncode is None, f"refdesk serve exited:\n{_output(log)}"
            try:
                async with http.get(f"{url}/api/config") as resp:
                    if resp.status == 200:
                        await resp.json()
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"no /api/config:\n{_output(log)}"
            await asyncio.sleep(0.1)


async def _invited_by_bot(client: AsyncClient, bot: str, rooms: int) -> set[str]:
    """Sync until the bot has invited the librarian to ``rooms`` rooms (the Space, the desk)."""
    invites: set[str] = set()
    since: str | None = None
    deadline = time.monotonic() + 60
    while len(invites) < rooms:
        assert time.monotonic() < deadline, f"invitations from {bot}: {invites}"
        resp = await client.sync(timeout=1000, since=since, full_state=False)
        assert isinstance(resp, SyncResponse), resp
        since = resp.next_batch
        for room_id, info in resp.rooms.invite.items():
            for event in info.invite_state:
                if (
                    isinstance(event, InviteMemberEvent)
                    and event.state_key == client.user_id
                    and event.membership == "invite"
                    and event.sender == bot
                ):
                    invites.add(room_id)
    return invites


async def _bot_answers(client: AsyncClient, room_id: str, bot: str, command: str) -> str:
    """Send a command in the room; return the bot's notice in answer."""
    since = client.next_batch
    await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": command})
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"no answer from {bot} to {command}"
        resp = await client.sync(timeout=1000, since=since, full_state=False)
        assert isinstance(resp, SyncResponse), resp
        since = resp.next_batch
        joined = resp.rooms.join.get(room_id)
        for event in joined.timeline.events if joined else []:
            if isinstance(event, RoomMessageNotice) and event.sender == bot:
                return event.body


async def test_readme_own_homeserver_steps_work_as_written(tmp_path: Path) -> None:
    hs_port, as_port, widget_port = free_port(), free_port(), free_port()
    work = tmp_path / "desk"
    work.mkdir()

    # cp config.sample.yaml config.yaml; chmod 600 config.yaml; the edits the README names.
    shutil.copy(ROOT / "config.sample.yaml", work / "config.yaml")
    (work / "config.yaml").chmod(0o600)
    text = (work / "config.yaml").read_text()
    for section, old, new in (
        ("homeserver", "  url: http://127.0.0.1:8008", f"  url: http://127.0.0.1:{hs_port}"),
        ("homeserver", "  domain: example.org", f"  domain: {DOMAIN}"),
        ("appservice", "  listen_port: 29330", f"  listen_port: {as_port}"),
        ("appservice", "  url: http://127.0.0.1:29330", f"  url: http://127.0.0.1:{as_port}"),
        ("widget", "  listen_port: 8080", f"  listen_port: {widget_port}"),
        (
            "widget",
            "  public_url: http://localhost:8080",
            f"  public_url: http://127.0.0.1:{widget_port}",
        ),
        ("desk", '    - "@sari:example.org"', f'    - "@sari:{DOMAIN}"'),
        ("database", "  path: refdesk.db", f"  path: {tmp_path / 'var' / 'refdesk.db'}"),
    ):
        text = _edit(text, section, old, new)
    (work / "config.yaml").write_text(text)

    # refdesk generate-registration --config config.yaml --output registration.yaml
    step = "generate-registration --config config.yaml --output registration.yaml"
    code, out, err = await _run(*step.split(), cwd=work)
    assert code == 0, err
    assert "Wrote fresh appservice.as_token and appservice.hs_token into config.yaml" in out
    filled = (work / "config.yaml").read_text()
    tokens = dict(re.findall(r"^  (as_token|hs_token): (\S+)$", filled, re.MULTILINE))
    assert "CHANGE_ME" not in tokens.values() and len(set(tokens.values())) == 2
    assert filled.splitlines() == [
        line.replace("CHANGE_ME", tokens[line.split(":")[0].strip()])
        if re.match(r"^  (as|hs)_token: CHANGE_ME$", line)
        else line
        for line in text.splitlines()
    ]  # every comment and every other line as the admin left it
    assert (work / "config.yaml").stat().st_mode & 0o777 == 0o600
    assert (work / "registration.yaml").stat().st_mode & 0o777 == 0o600
    registration = yaml.safe_load((work / "registration.yaml").read_text())
    assert registration["as_token"] == tokens["as_token"]
    assert registration["url"] == f"http://127.0.0.1:{as_port}"

    # Give registration.yaml to the homeserver (app_service_config_files), start it.
    synapse = EmbeddedSynapse(
        data_dir=tmp_path / "synapse",
        server_name=DOMAIN,
        port=hs_port,
        registration_files=[work / "registration.yaml"],
        extra_config={"bcrypt_rounds": 4},
    )
    serve: asyncio.subprocess.Process | None = None
    client: AsyncClient | None = None
    try:
        await synapse.start()
        librarian = await synapse.register_user("sari", PASSWORD, displayname="Sari")

        # refdesk check-config config.yaml
        code, out, err = await _run("check-config", "config.yaml", cwd=work)
        assert code == 0, err
        assert "config.yaml: OK" in out
        assert "warning: verification.directory:" in err and "invented members" in err
        assert "warning: email: off" in err

        # refdesk serve --config config.yaml
        log_path = tmp_path / "serve.log"
        with log_path.open("wb") as log:
            serve = await asyncio.create_subprocess_exec(
                *_refdesk("serve", "--config", "config.yaml"),
                cwd=work,
                env=_env(),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        await _wait_for_config(f"http://127.0.0.1:{widget_port}", serve, log_path)

        # The registration works both ways: the bot (as_token) invites the librarian to the
        # Space and the desk room; the librarian's command reaches refdesk as a homeserver
        # transaction (hs_token) and the bot answers.
        bot = f"@refdesk:{DOMAIN}"
        client = AsyncClient(synapse.url, librarian)
        assert isinstance(await client.login(PASSWORD), LoginResponse)
        invited = await _invited_by_bot(client, bot, rooms=2)
        for room_id in invited:
            await client.join(room_id)
        kinds = {}
        for room_id in invited:
            create = await client.room_get_state_event(room_id, "m.room.create")
            assert isinstance(create, RoomGetStateEventResponse), create
            kinds[create.content.get("type")] = room_id
        assert set(kinds) == {"m.space", None}
        desk_room = kinds[None]
        await client.sync(timeout=0, full_state=False)
        answer = await _bot_answers(client, desk_room, bot, "!duty")
        # Names, not Matrix ids (issue 14).
        assert answer == "On duty: Sari" and librarian not in answer

        # SIGTERM stops it cleanly.
        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 30) == 0
        served = log_path.read_text()
        assert re.search(r"WARNING +refdesk: verification\.directory: .*invented members", served)
        assert re.search(r"WARNING +refdesk: email: off", served)
    finally:
        if client is not None:
            await client.close()
        if serve is not None and serve.returncode is None:
            serve.kill()
            await serve.wait()
        await synapse.stop()

"""The embedded Synapse runner: config persistence, start/stop/restart, accounts, no orphans."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from refdesk.homeserver import EmbeddedSynapse, SynapseError, free_port

PASSWORD = "correct horse battery staple"
FAST = {"bcrypt_rounds": 4}
AS_TOKEN = "as-token-for-tests"


def _process_gone(pid: int) -> bool:
    """True if neither the process nor anything in its process group is alive (Linux)."""
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid_text, rest = stat_path.read_text().split(" ", 1)
        except OSError:
            continue
        state, _ppid, pgrp = rest.rsplit(")", 1)[1].split()[:3]
        if state != "Z" and pid in (int(pid_text), int(pgrp)):
            return False
    return True


def _write_registration(path: Path) -> Path:
    registration = {
        "id": "refdesk-test",
        "url": None,
        "as_token": AS_TOKEN,
        "hs_token": "hs-token-for-tests",
        "sender_localpart": "desk",
        "rate_limited": False,
        "namespaces": {
            "users": [{"exclusive": True, "regex": "@visitor_.*:localhost"}],
            "aliases": [],
            "rooms": [],
        },
    }
    path.write_text(yaml.safe_dump(registration))
    return path


async def _login(session: aiohttp.ClientSession, hs: EmbeddedSynapse, user: str) -> dict:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": PASSWORD,
    }
    async with session.post(f"{hs.url}/_matrix/client/v3/login", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def test_write_config_keeps_secrets_and_signing_key(tmp_path: Path) -> None:
    reg = tmp_path / "registration.yaml"
    hs = EmbeddedSynapse(tmp_path / "hs", port=18008)
    hs.write_config()
    secrets_before = (hs.data_dir / "secrets.yaml").read_text()
    key_before = hs.signing_key_path.read_text()

    hs.port = 18009
    hs.registration_files = [reg]
    hs.write_config()

    assert (hs.data_dir / "secrets.yaml").read_text() == secrets_before
    assert hs.signing_key_path.read_text() == key_before
    config = yaml.safe_load(hs.config_path.read_text())
    assert config["listeners"][0]["port"] == 18009
    assert config["app_service_config_files"] == [str(reg)]
    assert config["rc_room_creation"]["burst_count"] >= 1000
    # Secrets stay out of homeserver.yaml; both files are private.
    secret_values = yaml.safe_load(secrets_before)
    assert set(secret_values) >= {"registration_shared_secret", "macaroon_secret_key"}
    assert not any(value in hs.config_path.read_text() for value in secret_values.values())
    for name in ("secrets.yaml", "homeserver.yaml", "localhost.signing.key"):
        assert (hs.data_dir / name).stat().st_mode & 0o077 == 0


async def test_start_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        hs = EmbeddedSynapse(tmp_path / "hs", port=sock.getsockname()[1])
        with pytest.raises(SynapseError, match="in use"):
            await hs.start()
    assert not hs.running


async def test_start_reports_early_exit_with_log_tail(tmp_path: Path) -> None:
    hs = EmbeddedSynapse(
        tmp_path / "hs", port=free_port(), registration_files=[tmp_path / "missing.yaml"]
    )
    with pytest.raises(SynapseError, match="exited early") as info:
        await hs.start(timeout=30)
    assert "missing.yaml" in str(info.value)
    assert not hs.running


async def test_lifecycle_accounts_survive_restart(tmp_path: Path) -> None:
    hs = EmbeddedSynapse(tmp_path / "hs", port=free_port(), extra_config=FAST)
    await hs.start()
    try:
        first_pid = hs.pid
        assert hs.running and first_pid is not None
        twin = EmbeddedSynapse(hs.data_dir, port=free_port())
        with pytest.raises(SynapseError, match=f"pid {first_pid}"):
            await twin.start()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{hs.url}/health") as resp:
                assert resp.status == 200
            async with session.get(f"{hs.url}/_matrix/client/versions") as resp:
                assert resp.status == 200
                assert "v1.1" in (await resp.json())["versions"]

            user_id = await hs.register_user("Ada", PASSWORD, displayname="Ada L.")
            assert user_id == "@ada:localhost"
            # Idempotent, and a changed display name is applied to the existing account.
            assert await hs.register_user("ada", PASSWORD, displayname="Ada Lovelace") == user_id
            assert await hs.register_user("ada", PASSWORD) == user_id
            admin_id = await hs.register_user("boss", PASSWORD, admin=True)

            login = await _login(session, hs, "ada")
            assert login["user_id"] == user_id
            profile_url = f"{hs.url}/_matrix/client/v3/profile/{user_id}/displayname"
            async with session.get(profile_url) as resp:
                assert (await resp.json())["displayname"] == "Ada Lovelace"

            boss_token = await hs.login("boss", PASSWORD)
            headers = {"Authorization": f"Bearer {boss_token}"}
            admin_url = f"{hs.url}/_synapse/admin/v2/users/{admin_id}"
            async with session.get(admin_url, headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["admin"] is True

        await hs.stop()
        assert not hs.running
        assert _process_gone(first_pid)
        await hs.stop()  # idempotent

        # Restart in the same data dir, now with an appservice registered.
        hs.registration_files = [_write_registration(tmp_path / "registration.yaml")]
        async with hs:
            assert hs.pid != first_pid
            async with aiohttp.ClientSession() as session:
                assert (await _login(session, hs, "ada"))["user_id"] == user_id
                whoami = f"{hs.url}/_matrix/client/v3/account/whoami"
                headers = {"Authorization": f"Bearer {AS_TOKEN}"}
                async with session.get(whoami, headers=headers) as resp:
                    assert (await resp.json())["user_id"] == "@desk:localhost"
                async with session.get(profile_url) as resp:
                    assert (await resp.json())["displayname"] == "Ada Lovelace"
            second_pid = hs.pid
        assert second_pid is not None and _process_gone(second_pid)
    finally:
        await hs.stop()


def test_no_orphan_when_parent_dies(tmp_path: Path) -> None:
    """A crashing parent (no stop(), an unhandled exception) takes Synapse down with it."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from refdesk.homeserver import EmbeddedSynapse, free_port

        async def main():
            hs = EmbeddedSynapse(Path({str(tmp_path / "hs")!r}), port=free_port())
            await hs.start()
            print(hs.pid, flush=True)
            raise RuntimeError("parent crashed")

        asyncio.run(main())
        """
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert "parent crashed" in result.stderr
    pid = int(result.stdout.strip())
    deadline = time.monotonic() + 10
    while not _process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(pid)

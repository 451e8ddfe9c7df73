"""The PostgreSQL test server itself: fresh databases per test, clean stops, no orphans."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from refdesk.homeserver import free_port
from refdesk.postgres import EmbeddedPostgres, PostgresError, _children
from tests.conftest import postgres_binaries_or_skip

ROOT = Path(__file__).resolve().parent.parent


def _server_processes(postmaster: int) -> list[int]:
    """The postmaster and its children (each of which leads its own process group)."""
    return [postmaster, *_children(postmaster)]


def _still_running(pids: list[int]) -> list[int]:
    """Those of `pids` still running a postgres program (not zombies, not reused pids)."""
    running = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and b"postgres" in cmdline:
            running.append(pid)
    return running


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


async def test_database_accepts_connections(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url, timeout=10)
    try:
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
        # The role in the URL owns the database but is no superuser, as in a real deployment.
        assert await conn.fetchval("SELECT current_user") == "refdesk"
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        await conn.execute("CREATE TABLE note (id bigserial PRIMARY KEY, body text NOT NULL)")
        note_id = await conn.fetchval(
            "INSERT INTO note (body) VALUES ($1) RETURNING id", "Halo, pustakawan"
        )
        assert await conn.fetchval("SELECT body FROM note WHERE id = $1", note_id) == (
            "Halo, pustakawan"
        )
        # Processes will wake each other with LISTEN/NOTIFY (docs/DESIGN §10).
        heard: asyncio.Queue[str] = asyncio.Queue()
        await conn.add_listener("desk", lambda *args: heard.put_nowait(args[3]))
        await conn.execute("NOTIFY desk, 'wake'")
        assert await asyncio.wait_for(heard.get(), 5) == "wake"
    finally:
        await conn.close()


async def test_each_url_is_a_separate_empty_database(
    postgres_url: str, new_postgres_url: Callable[[], Awaitable[str]]
) -> None:
    other_url = await new_postgres_url()
    assert other_url != postgres_url
    first = await asyncpg.connect(postgres_url, timeout=10)
    second = await asyncpg.connect(other_url, timeout=10)
    try:
        assert await first.fetchval("SELECT current_database()") != await second.fetchval(
            "SELECT current_database()"
        )
        await first.execute("CREATE TABLE only_here (x int)")
        tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        assert await first.fetchval(tables) == 1
        assert await second.fetchval(tables) == 0
    finally:
        await first.close()
        await second.close()


async def test_drop_database_disconnects_whoever_is_left(postgres: EmbeddedPostgres) -> None:
    name = await postgres.create_database()
    leaked = await asyncpg.connect(postgres.url(name), timeout=10)  # a test forgot to close it
    await asyncio.wait_for(postgres.drop_database(name), 10)
    admin = await asyncpg.connect(postgres.admin_url(), timeout=10)
    try:
        assert not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await leaked.fetchval("SELECT 1")  # its backend was terminated
    leaked.terminate()


async def test_stop_leaves_no_process_and_no_files() -> None:
    server = EmbeddedPostgres(binaries=postgres_binaries_or_skip())
    await server.start()
    try:
        pid = server.pid
        assert pid is not None
        base = server.base_dir
        assert server.timings["start"] < 20
        # A client still connected must not hold up the stop (SIGTERM would wait for it).
        client = await asyncpg.connect(server.url(), timeout=10)
        await client.execute("BEGIN")
        members = _server_processes(pid)
        assert len(members) > 2  # postmaster, checkpointer, walwriter, ..., the client's backend
        if os.geteuid() == 0:  # as root: everything runs as, and belongs to, an ordinary account
            assert all(_uid_of(member) != 0 for member in members)
            assert base.stat().st_uid != 0
            assert server.cluster_dir.stat().st_uid != 0
    finally:
        await asyncio.wait_for(server.stop(), 30)
    assert server.timings["stop"] < 10
    assert not server.running and server.pid is None
    assert _still_running(members) == []
    assert not base.exists()
    client.terminate()
    await server.stop()  # idempotent


async def test_a_persistent_data_dir_survives_a_restart() -> None:
    binaries = postgres_binaries_or_skip()
    data_dir = Path(tempfile.mkdtemp(prefix="refdesk-pg-test-"))  # reachable when we are root
    try:
        async with EmbeddedPostgres(data_dir=data_dir, binaries=binaries, durable=True) as pg:
            assert "initdb" in pg.timings
            conn = await asyncpg.connect(pg.url(), timeout=10)
            await conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
            await conn.close()
        assert (data_dir / "data" / "PG_VERSION").exists()
        async with EmbeddedPostgres(data_dir=data_dir, binaries=binaries, durable=True) as pg:
            assert "initdb" not in pg.timings
            conn = await asyncpg.connect(pg.url(), timeout=10)
            assert await conn.fetchval("SELECT answer FROM kept") == 42
            await conn.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def test_start_failure_reports_the_log_tail() -> None:
    server = EmbeddedPostgres(
        binaries=postgres_binaries_or_skip(), settings={"shared_buffers": "plenty"}
    )
    with pytest.raises(PostgresError, match=r'(?s)exited early.*"shared_buffers"') as caught:
        await server.start(timeout=20)
    assert "postgres.log (tail)" in str(caught.value)
    assert not server.running
    with pytest.raises(PostgresError):
        server.base_dir  # noqa: B018  (the temporary directory is gone)


async def test_a_port_taken_meanwhile_is_replaced_unless_it_was_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binaries = postgres_binaries_or_skip()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        chosen = EmbeddedPostgres(port=taken, binaries=binaries)
        with pytest.raises(PostgresError, match="could not create any TCP/IP sockets"):
            await chosen.start()
        assert not chosen.running

        ports = iter([taken, free_port()])
        monkeypatch.setattr("refdesk.postgres.free_port", lambda: next(ports))
        async with EmbeddedPostgres(binaries=binaries) as pg:
            assert pg.port != taken
            conn = await asyncpg.connect(pg.url(), timeout=10)
            await conn.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the data dir to another account")
async def test_as_root_an_unreachable_data_dir_is_refused(tmp_path: Path) -> None:
    # pytest's base temp dir for root is mode 0700: the server's account cannot enter it.
    server = EmbeddedPostgres(data_dir=tmp_path / "pg", binaries=postgres_binaries_or_skip())
    with pytest.raises(PostgresError, match="not searchable by"):
        await server.start()


@pytest.mark.parametrize("ending", ["crash", "sigkill"])
def test_no_orphan_when_the_parent_dies(ending: str) -> None:
    """The server dies with the process that started it, stop() or not: on a crash the atexit
    hook stops it and deletes the cluster; on SIGKILL the kernel's parent-death signal stops it
    (and the temporary directory stays behind)."""
    postgres_binaries_or_skip()
    end = {
        "crash": 'raise RuntimeError("parent crashed")',
        "sigkill": "os.kill(os.getpid(), signal.SIGKILL)",
    }[ending]
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        import asyncpg
        from refdesk.postgres import EmbeddedPostgres, _children

        async def main():
            pg = EmbeddedPostgres()
            await pg.start()
            client = await asyncpg.connect(pg.url())  # a backend too
            print(pg.base_dir, pg.pid, *_children(pg.pid), flush=True)
            {end}

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if ending == "crash":
        assert "parent crashed" in result.stderr
    else:
        assert result.returncode == -signal.SIGKILL, result.stderr
    base, *pid_texts = result.stdout.split()
    pids = [int(text) for text in pid_texts]
    assert len(pids) > 2
    try:
        if ending == "crash":  # atexit waited for it
            assert _still_running(pids) == []
            assert not Path(base).exists()
        deadline = time.monotonic() + 10
        while _still_running(pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _still_running(pids) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_missing_binaries_skip_locally_but_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REFDESK_PG_BINDIR", str(tmp_path))  # no initdb, no postgres here
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("REFDESK_REQUIRE_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server binaries"):
        postgres_binaries_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        postgres_binaries_or_skip()
    monkeypatch.setenv("CI", "false")
    monkeypatch.setenv("REFDESK_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="CI must not skip"):
        postgres_binaries_or_skip()

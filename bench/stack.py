"""The system under test: a real Synapse on loopback, and refdesk in its own process."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.actors import BenchError, MatrixUser
from bench.proc import Child, rss_mb
from bridge.registration import registration
from refdesk.config import Config, load_config
from refdesk.embedded import embedded_config_data, write_yaml
from refdesk.homeserver import EmbeddedSynapse, free_port
from refdesk.postgres import EmbeddedPostgres
from refdesk.wiring import bridge_settings

PASSWORD = "bench password, not secret"
LIBRARIAN = "benchlib"
BASELINE_SENDER = "alice"
BASELINE_RECEIVER = "bob"
# Sends without syncing, like refdesk's ghosts: the throughput baseline's sender.
BASELINE_WRITER = "carol"
STORES = ("sqlite", "postgres")
# The PostgreSQL store is as durable as the SQLite one (WAL, synchronous=NORMAL): a power cut
# may lose the last commits but never corrupts; fsync stays on.
POSTGRES_SETTINGS = {"synchronous_commit": "off"}


def bench_postgres() -> EmbeddedPostgres:
    """The PostgreSQL server of a benchmark run: a temporary cluster (in a directory of its
    own, which the server's account can reach), deleted when it stops."""
    return EmbeddedPostgres(durable=True, settings=POSTGRES_SETTINGS)


async def wait_http_ok(
    url: str, timeout: float, interval: float = 0.05, child: Child | None = None
) -> float:
    """Poll ``url`` until it answers 200; returns the time it took. Fails early if ``child``
    (the process that should answer) has exited."""
    start = time.monotonic()
    deadline = start + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return time.monotonic() - start
            except (aiohttp.ClientError, TimeoutError):
                pass
            if child is not None and not child.running:
                raise BenchError(f"{url}: the process exited with {child.returncode}")
            if time.monotonic() > deadline:
                raise BenchError(f"{url} did not answer 200 within {timeout:.0f}s")
            await asyncio.sleep(interval)


def config_data(
    root: Path,
    hs_port: int,
    as_port: int,
    widget_port: int,
    log_level: str,
    database_url: str | None = None,
) -> dict[str, Any]:
    """refdesk's config for the benchmark: `refdesk up`'s, with the bench librarian; the
    store in SQLite under ``root``, or at ``database_url`` (PostgreSQL)."""
    data = embedded_config_data(
        widget_port=widget_port,
        homeserver_port=hs_port,
        appservice_port=as_port,
        librarians=[f"@{LIBRARIAN}:localhost"],
        database=str(root / "refdesk.db"),
    )
    data["logging"]["level"] = log_level
    if database_url is not None:
        data["database"] = {"url": database_url}
    # Every benchmark visitor comes from 127.0.0.1: lift the per-address limit on new chats
    # (the highest value the config accepts), as if they came from many addresses.
    data["widget"]["new_sessions_per_minute"] = 100_000
    return data


@dataclass
class Stack:
    root: Path
    synapse: EmbeddedSynapse
    config: Config
    config_path: Path
    refdesk: Child
    postgres: EmbeddedPostgres | None = None

    @property
    def store(self) -> str:
        return "sqlite" if self.postgres is None else "postgres"

    @property
    def widget_url(self) -> str:
        return f"http://127.0.0.1:{self.config.widget.listen_port}"

    def mxid(self, localpart: str) -> str:
        return f"@{localpart}:{self.config.homeserver.domain}"

    @property
    def refdesk_pid(self) -> int:
        return self.refdesk.pid

    @property
    def synapse_pid(self) -> int | None:
        return self.synapse.pid

    @property
    def postgres_pid(self) -> int | None:
        return None if self.postgres is None else self.postgres.pid

    def refdesk_rss_mb(self) -> float:
        return rss_mb(self.refdesk.pid)

    @classmethod
    async def start(
        cls,
        root: Path,
        log_level: str,
        synapse_extra: dict[str, Any] | None = None,
        store: str = "sqlite",
    ) -> Stack:
        """Synapse and refdesk; with ``store="postgres"`` first a PostgreSQL server of its
        own for refdesk's store (Synapse keeps SQLite, as `refdesk up` runs it)."""
        if store not in STORES:
            raise ValueError(f"store must be one of {', '.join(STORES)}")
        postgres = bench_postgres() if store == "postgres" else None
        if postgres is not None:
            await postgres.start()
        try:
            return await cls._start(root, log_level, synapse_extra, postgres)
        except BaseException:
            if postgres is not None:
                await postgres.stop()
            raise

    @classmethod
    async def _start(
        cls,
        root: Path,
        log_level: str,
        synapse_extra: dict[str, Any] | None,
        postgres: EmbeddedPostgres | None,
    ) -> Stack:
        hs_port, as_port, widget_port = free_port(), free_port(), free_port()
        url = None if postgres is None else postgres.url()
        data = config_data(root, hs_port, as_port, widget_port, log_level, url)
        config_path = root / "refdesk.yaml"
        write_yaml(config_path, data)
        config = load_config(config_path)
        registration_path = root / "registration.yaml"
        write_yaml(registration_path, registration(bridge_settings(config)))
        synapse = EmbeddedSynapse(
            data_dir=root / "synapse",
            server_name="localhost",
            port=hs_port,
            registration_files=[registration_path],
            extra_config={"bcrypt_rounds": 4, **(synapse_extra or {})},
        )
        await synapse.start()
        try:
            for local in (LIBRARIAN, BASELINE_SENDER, BASELINE_RECEIVER, BASELINE_WRITER):
                await synapse.register_user(local, PASSWORD)
            child = Child(
                ["-m", "refdesk.cli", "serve", "--config", str(config_path)],
                log_path=root / "refdesk.log",
            )
            stack = cls(root, synapse, config, config_path, child, postgres)
            await stack.start_refdesk()
        except BaseException:
            await synapse.stop()
            raise
        return stack

    async def start_refdesk(self) -> None:
        await self.refdesk.start()
        try:
            await wait_http_ok(f"{self.widget_url}/api/config", timeout=60, child=self.refdesk)
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- refdesk log ---\n{self.refdesk.log_tail()}") from None

    async def login(
        self, localpart: str, *, auto_join: bool = False, sync: bool = True
    ) -> MatrixUser:
        return await MatrixUser.login(
            self.synapse.url, self.mxid(localpart), PASSWORD, auto_join=auto_join, sync=sync
        )

    async def stop(self) -> None:
        try:
            await self.refdesk.stop()
        finally:
            try:
                await self.synapse.stop()
            finally:
                if self.postgres is not None:
                    await self.postgres.stop()

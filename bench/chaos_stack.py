"""The chaos run's system under test: Synapse and refdesk, each of which can be crashed and
started again, and the timeline of what was done to them (``chaos-events.log``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path

from bench.actors import BenchError
from bench.proc import Child
from bench.stack import PASSWORD, config_data, wait_http_ok
from bridge.registration import registration
from refdesk.config import Config, load_config
from refdesk.embedded import write_yaml
from refdesk.homeserver import EmbeddedSynapse, free_port
from refdesk.postgres import EmbeddedPostgres
from refdesk.wiring import bridge_settings

log = logging.getLogger("bench.chaos")

ANSWERING = "sari"  # the librarian who answers
RUNG_ONLY = "dewi"  # on duty, never answers: must be rung all the same
HEALTHY_WITHIN = 60.0  # a refdesk start that takes longer is reported
HOMESERVER_START = 120.0


class Timeline:
    """What the chaos did, in seconds since the start; also appended to chaos-events.log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.events: list[tuple[float, str]] = []
        self.crashes: list[tuple[float, str]] = []  # kills and restarts only

    def now(self) -> float:
        return time.monotonic() - self.t0

    def at_wall(self, wall: float) -> float:
        return wall - self.wall0

    def note(self, what: str, chaos: bool = False) -> None:
        t = self.now()
        self.events.append((t, what))
        if chaos:
            self.crashes.append((t, what))
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(f"{t:8.2f}  {what}\n")
        log.info("%.1f s: %s", t, what)

    def between(self, start: float, end: float) -> list[str]:
        """The kills and restarts from ``start`` to ``end``."""
        return [what for when, what in self.crashes if start <= when <= end]

    def before(self, t: float) -> str:
        """The last kill or restart at or before ``t``, as "<dt> s after <what>"."""
        last = None
        for when, what in self.crashes:
            if when > t:
                break
            last = (when, what)
        return f"{t - last[0]:.1f} s after {last[1]}" if last else "before any chaos"


class ChaosStack:
    """Synapse and refdesk, each of which can be crashed and started again."""

    def __init__(
        self,
        root: Path,
        synapse: EmbeddedSynapse,
        config: Config,
        timeline: Timeline,
        postgres: EmbeddedPostgres | None = None,
    ) -> None:
        self.root = root
        self.postgres = postgres
        self.synapse = synapse
        self.config = config
        self.config_path = root / "refdesk.yaml"
        self.timeline = timeline
        self.refdesk: Child | None = None
        self.starts = 0
        self.started_at = 0.0
        self.healthy_after: list[float] = []  # seconds from spawn to /api/config answering
        self.homeserver_down: list[float] = []
        self.problems: list[str] = []  # refdesk exits of its own, starts that never answer
        self._health: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, root: Path, log_level: str, timeline: Timeline, store: str = "sqlite"
    ) -> ChaosStack:
        hs_port, as_port, widget_port = free_port(), free_port(), free_port()
        data = config_data(root, hs_port, as_port, widget_port, log_level)
        data["desk"]["librarians"] = [f"@{ANSWERING}:localhost", f"@{RUNG_ONLY}:localhost"]
        postgres = None
        if store == "postgres":  # the desk's store in a PostgreSQL server of its own
            postgres = EmbeddedPostgres()
            await postgres.start()
            data["database"] = {"url": postgres.url()}
        write_yaml(root / "refdesk.yaml", data)
        config = load_config(root / "refdesk.yaml")
        registration_path = root / "registration.yaml"
        write_yaml(registration_path, registration(bridge_settings(config)))
        synapse = EmbeddedSynapse(
            data_dir=root / "synapse",
            server_name="localhost",
            port=hs_port,
            registration_files=[registration_path],
            extra_config={"bcrypt_rounds": 4},
        )
        await synapse.start(timeout=HOMESERVER_START)
        stack = cls(root, synapse, config, timeline, postgres)
        try:
            for local in (ANSWERING, RUNG_ONLY):
                await synapse.register_user(local, PASSWORD, displayname=local.capitalize())
            await stack.spawn_refdesk()
            await stack.wait_healthy()
        except BaseException:
            await stack.stop()
            raise
        return stack

    @property
    def widget_url(self) -> str:
        return f"http://127.0.0.1:{self.config.widget.listen_port}"

    @property
    def domain(self) -> str:
        return self.config.homeserver.domain

    def mxid(self, localpart: str) -> str:
        return f"@{localpart}:{self.domain}"

    # refdesk

    async def spawn_refdesk(self) -> None:
        self.starts += 1
        child = Child(
            ["-m", "refdesk.cli", "serve", "--config", str(self.config_path)],
            log_path=self.root / "logs" / f"refdesk-{self.starts:03d}.log",
        )
        await child.start()
        self.refdesk = child
        self.started_at = time.monotonic()
        self._health = asyncio.create_task(self._watch_health(child, self.starts))

    async def _watch_health(self, child: Child, number: int) -> None:
        try:
            took = await wait_http_ok(
                f"{self.widget_url}/api/config", HEALTHY_WITHIN, interval=0.05, child=child
            )
        except BenchError:
            if child.running:
                self.problems.append(f"refdesk start #{number} did not answer in time")
            elif child.returncode != -signal.SIGKILL:
                self.problems.append(
                    f"refdesk start #{number} exited by itself with {child.returncode} "
                    f"(logs/refdesk-{number:03d}.log)"
                )
            return
        self.healthy_after.append(took)

    async def wait_healthy(self) -> None:
        if self._health is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._health
        if self.refdesk is None or not self.refdesk.running:
            raise BenchError(f"refdesk is not running:\n{self.refdesk_tail()}")

    def refdesk_tail(self) -> str:
        return self.refdesk.log_tail() if self.refdesk else ""

    async def kill_refdesk(self) -> None:
        child = self.refdesk
        if child is None:
            return
        if self._health is not None and not self._health.done():
            self._health.cancel()
        if not child.running:
            self.problems.append(
                f"refdesk start #{self.starts} exited by itself with {child.returncode} "
                f"(logs/refdesk-{self.starts:03d}.log)"
            )
        await child.kill()
        up = time.monotonic() - self.started_at
        self.timeline.note(f"refdesk SIGKILL #{self.starts} (up {up:.1f} s)", chaos=True)

    async def ensure_refdesk(self) -> None:
        if self.refdesk is None or not self.refdesk.running:
            await self.spawn_refdesk()
        await self.wait_healthy()

    # homeserver

    async def restart_homeserver(self, sigkill: bool, down: float) -> None:
        pid = self.synapse.pid
        stopped = time.monotonic()
        if sigkill and pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self.timeline.note("homeserver SIGKILL", chaos=True)
        else:
            self.timeline.note("homeserver stop (SIGTERM)", chaos=True)
        await self.synapse.stop()
        await asyncio.sleep(down)
        await self.synapse.start(timeout=HOMESERVER_START)
        self.homeserver_down.append(time.monotonic() - stopped)
        self.timeline.note(
            f"homeserver up again ({self.homeserver_down[-1]:.1f} s down)", chaos=True
        )

    async def ensure_homeserver(self) -> None:
        if not self.synapse.running:
            await self.synapse.start(timeout=HOMESERVER_START)

    async def stop(self) -> None:
        if self._health is not None:
            self._health.cancel()
        try:
            if self.refdesk is not None:
                await self.refdesk.stop()
        finally:
            await self.synapse.stop()
            if self.postgres is not None:
                await self.postgres.stop()

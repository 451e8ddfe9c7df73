"""Embedded Synapse homeserver for `refdesk up` and the test suite.

One Synapse process on loopback with SQLite, configured in a data directory that survives
restarts (same secrets, signing key and database), started and stopped from asyncio.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from refdesk.children import pid_gone, signal_group, tail

logger = logging.getLogger("refdesk.homeserver")

CONFIG_FILE = "homeserver.yaml"
SECRETS_FILE = "secrets.yaml"
LOG_CONFIG_FILE = "homeserver.log.config"
LOG_FILE = "homeserver.log"
CONSOLE_LOG_FILE = "homeserver.console.log"
PID_FILE = "homeserver.pid"
DB_FILE = "homeserver.db"
MEDIA_DIR = "media_store"

_SECRET_KEYS = ("registration_shared_secret", "macaroon_secret_key", "form_secret")

# Every rate limiter Synapse 1.163 reads (synapse/config/ratelimiting.py), opened wide: the
# desk bot and the tests must never be throttled. Room creation defaults to ~1/minute!
_UNLIMITED = {"per_second": 1000, "burst_count": 10000}
_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _UNLIMITED,
    "rc_registration": _UNLIMITED,
    "rc_registration_token_validity": _UNLIMITED,
    "rc_login": {
        "address": _UNLIMITED,
        "account": _UNLIMITED,
        "failed_attempts": _UNLIMITED,
    },
    "rc_admin_redaction": _UNLIMITED,
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_joins_per_room": _UNLIMITED,
    "rc_key_requests": _UNLIMITED,
    "rc_3pid_validation": _UNLIMITED,
    "rc_invites": {
        "per_room": _UNLIMITED,
        "per_user": _UNLIMITED,
        "per_issuer": _UNLIMITED,
    },
    "rc_third_party_invite": _UNLIMITED,
    "rc_media_create": _UNLIMITED,
    "rc_presence": {"per_user": _UNLIMITED},
    "rc_delayed_event_mgmt": _UNLIMITED,
    "rc_room_creation": _UNLIMITED,
    "rc_reports": _UNLIMITED,
    "rc_user_directory": _UNLIMITED,
    "rc_profile": _UNLIMITED,
}

# Runs in the child before Synapse: on Linux, ask the kernel to SIGTERM Synapse when the
# parent dies (even by SIGKILL / os._exit, where atexit never runs), then exec Synapse.
# Note PDEATHSIG follows the *thread* that spawned the child: the event loop thread.
_LAUNCHER = """\
import os, signal, sys
ppid = int(sys.argv[1])
if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if os.getppid() != ppid:
        sys.exit(1)
os.execv(sys.executable, [sys.executable, "-m", "synapse.app.homeserver", *sys.argv[2:]])
"""


class SynapseError(Exception):
    """Synapse failed to start, stop, or answer an admin request."""


# pid (== process group id) of every Synapse this process started and has not yet stopped.
_LIVE_PIDS: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    """Synchronously stop every Synapse still running when the interpreter exits."""
    pids = list(_LIVE_PIDS)
    if not pids:
        return
    for pid in pids:
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if not pid_gone(pid)]
        if pids:
            time.sleep(0.05)
    for pid in pids:
        signal_group(pid, signal.SIGKILL)
    _LIVE_PIDS.clear()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _write_private(path: Path, text: str) -> None:
    """Atomically write a file readable only by its owner."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class _NoAliasDumper(yaml.SafeDumper):
    """Dump shared sub-dicts in full instead of as &id001 anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class EmbeddedSynapse:
    """A Synapse child process configured in `data_dir`, listening on 127.0.0.1:`port`."""

    data_dir: Path
    server_name: str = "localhost"
    port: int = 8008
    registration_files: list[Path] = field(default_factory=list)
    python: str = sys.executable
    # Deep-merged over the generated homeserver.yaml, e.g. {"bcrypt_rounds": 4} in tests.
    extra_config: dict[str, Any] = field(default_factory=dict)

    _process: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    # -- configuration -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / f"{self.server_name}.signing.key"

    def _secrets(self) -> dict[str, str]:
        path = self.data_dir / SECRETS_FILE
        stored: dict[str, str] = {}
        if path.exists():
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            stored = {k: str(v) for k, v in loaded.items() if isinstance(v, str)}
        missing = [k for k in _SECRET_KEYS if not stored.get(k)]
        if missing:
            for key in missing:
                stored[key] = secrets.token_urlsafe(48)
            header = "# Synapse secrets, generated once by refdesk; passed as a second -c file.\n"
            _write_private(path, header + _dump(stored))
        return stored

    @property
    def registration_shared_secret(self) -> str:
        return self._secrets()["registration_shared_secret"]

    def _ensure_signing_key(self) -> None:
        path = self.signing_key_path
        if path.exists():
            return
        from signedjson.key import generate_signing_key, write_signing_keys

        key = generate_signing_key("a_" + secrets.token_hex(2))
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write_signing_keys(fh, [key])
        os.replace(tmp, path)

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {
                "precise": {
                    "format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - "
                    "%(request)s - %(message)s"
                }
            },
            "handlers": {
                "file": {
                    "class": "logging.handlers.RotatingFileHandler",
                    "formatter": "precise",
                    "filename": str(self.log_path),
                    "maxBytes": 10 * 1024 * 1024,
                    "backupCount": 3,
                    "encoding": "utf8",
                }
            },
            "loggers": {
                # DEBUG here would log access tokens.
                "synapse.storage.SQL": {"level": "WARNING"},
                "synapse.access": {"level": "WARNING"},
                "twisted": {"level": "WARNING"},
            },
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def _config(self) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "public_baseurl": f"{self.url}/",
            "report_stats": False,
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    # openid: the userinfo endpoint that checks the report widget's OpenID tokens.
                    "resources": [{"names": ["client", "openid"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.data_dir / DB_FILE)}},
            "log_config": str(self.data_dir / LOG_CONFIG_FILE),
            "media_store_path": str(self.data_dir / MEDIA_DIR),
            "max_upload_size": "10M",
            "url_preview_enabled": False,
            "enable_metrics": False,
            "enable_registration": False,
            "signing_key_path": str(self.signing_key_path),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            # No federation at all: nothing listens for it and nothing is sent.
            "federation_domain_whitelist": [],
            "presence": {"enabled": True},
            # Rooms' m.room.retention is applied (refdesk sets it on the desk room).
            "retention": {"enabled": True},
            "app_service_config_files": [str(Path(p).resolve()) for p in self.registration_files],
            **_RATE_LIMITS,
        }

    def write_config(self) -> None:
        """Write homeserver.yaml (every time) and secrets + signing key (once)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / MEDIA_DIR).mkdir(exist_ok=True)
        self._secrets()
        self._ensure_signing_key()
        _write_private(self.data_dir / LOG_CONFIG_FILE, _dump(self._log_config()))
        config = _deep_merge(self._config(), self.extra_config)
        header = (
            "# Generated by refdesk, rewritten on every start. The secrets live in secrets.yaml:\n"
            "#   python -m synapse.app.homeserver -c homeserver.yaml -c secrets.yaml\n"
        )
        _write_private(self.config_path, header + _dump(config))

    # -- process lifecycle ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _stale_pid(self) -> int | None:
        """Pid of a Synapse still running on this data dir (e.g. orphaned by a crash)."""
        try:
            pid = int((self.data_dir / PID_FILE).read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if str(self.config_path).encode() in cmdline and b"synapse.app.homeserver" in cmdline:
            return pid
        return None

    def _failure(self, message: str) -> SynapseError:
        console = tail(self.data_dir / CONSOLE_LOG_FILE, 20).strip()
        log = tail(self.log_path, 40).strip()
        parts = [message]
        if console:
            parts.append(f"--- {CONSOLE_LOG_FILE} (tail) ---\n{console}")
        if log:
            parts.append(f"--- {LOG_FILE} (tail) ---\n{log}")
        return SynapseError("\n".join(parts))

    async def start(self, timeout: float = 60) -> None:
        """Start Synapse and wait until /health answers; no-op if already running."""
        if self.running:
            return
        stale = self._stale_pid()
        if stale is not None:
            raise SynapseError(f"another synapse (pid {stale}) is running on {self.data_dir}")
        self.write_config()
        if _port_in_use("127.0.0.1", self.port):
            raise SynapseError(f"port {self.port} on 127.0.0.1 is already in use")

        console_path = self.data_dir / CONSOLE_LOG_FILE
        with console_path.open("ab") as console:
            console.write(f"--- starting synapse at {time.ctime()} ---\n".encode())
            console.flush()
            self._process = await asyncio.create_subprocess_exec(
                self.python,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                "-c",
                str(self.config_path),
                "-c",
                str(self.data_dir / SECRETS_FILE),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=console,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(self.data_dir),
                start_new_session=True,  # own process group, no terminal Ctrl-C
            )
        _LIVE_PIDS.add(self._process.pid)
        (self.data_dir / PID_FILE).write_text(f"{self._process.pid}\n")
        logger.info("started synapse pid %s on %s (%s)", self._process.pid, self.url, self.data_dir)
        try:
            await self._wait_healthy(timeout)
        except BaseException:
            await self.stop()
            raise
        logger.info("synapse is up on %s", self.url)

    async def _wait_healthy(self, limit: float) -> None:
        proc = self._process
        assert proc is not None
        deadline = time.monotonic() + limit
        client_timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            while True:
                if proc.returncode is not None:
                    raise self._failure(f"synapse exited early with code {proc.returncode}")
                try:
                    async with session.get(f"{self.url}/health") as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise self._failure(f"synapse did not become healthy within {limit}s")
                await asyncio.sleep(0.1)

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM Synapse's process group, SIGKILL after `timeout`; idempotent."""
        proc = self._process
        if proc is None:
            return
        pid = proc.pid
        if proc.returncode is None:
            signal_group(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                logger.warning("synapse pid %s ignored SIGTERM for %ss, killing it", pid, timeout)
                signal_group(pid, signal.SIGKILL)
                await proc.wait()
        # Anything else left in the group (Synapse forks nothing, but be sure).
        signal_group(pid, signal.SIGKILL)
        _LIVE_PIDS.discard(pid)
        self._process = None
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / PID_FILE).unlink()
        logger.info("stopped synapse pid %s (exit code %s)", pid, proc.returncode)

    async def __aenter__(self) -> EmbeddedSynapse:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- accounts ------------------------------------------------------------------------

    def user_id(self, localpart: str) -> str:
        return f"@{localpart.lower()}:{self.server_name}"

    async def register_user(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> str:
        """Register a user with the shared secret (fine if it exists); return its user id."""
        shared_secret = self.registration_shared_secret
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(endpoint) as resp:
                if resp.status != 200:
                    raise SynapseError(f"register nonce: HTTP {resp.status}")
                nonce = (await resp.json())["nonce"]
            mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
            for part in (nonce, localpart, password):
                mac.update(part.encode("utf-8"))
                mac.update(b"\x00")
            mac.update(b"admin" if admin else b"notadmin")
            body: dict[str, Any] = {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
                "inhibit_login": True,
            }
            if displayname is not None:
                body["displayname"] = displayname
            async with session.post(endpoint, json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 200:
                    user_id = str(data["user_id"])
                    logger.info("registered %s", user_id)
                    return user_id
                if data.get("errcode") != "M_USER_IN_USE":
                    raise SynapseError(
                        f"register {localpart}: HTTP {resp.status} "
                        f"{data.get('errcode')} {data.get('error')}"
                    )
            user_id = self.user_id(localpart)
            if displayname is not None:
                await self._ensure_displayname(session, user_id, localpart, password, displayname)
            return user_id

    async def _ensure_displayname(
        self,
        session: aiohttp.ClientSession,
        user_id: str,
        localpart: str,
        password: str,
        displayname: str,
    ) -> None:
        url = f"{self.url}/_matrix/client/v3/profile/{quote(user_id, safe='')}/displayname"
        async with session.get(url) as resp:
            current = (await resp.json(content_type=None)).get("displayname")
        if current == displayname:
            return
        token = await self.login(localpart, password, session=session)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with session.put(url, json={"displayname": displayname}, headers=headers) as resp:
                if resp.status != 200:
                    raise SynapseError(f"set displayname of {user_id}: HTTP {resp.status}")
        finally:
            async with session.post(
                f"{self.url}/_matrix/client/v3/logout", json={}, headers=headers
            ):
                pass

    async def admin_token(self) -> str:
        """An access token of this server's own admin account (created on first use, its
        password kept in the data directory): refdesk deletes purged chats' rooms with it.
        Each call logs in the same device again, so old tokens do not pile up."""
        secret = self.data_dir / "refdesk-admin.password"
        if not secret.exists():
            secret.write_text(secrets.token_urlsafe(24), encoding="ascii")
            secret.chmod(0o600)
        password = secret.read_text(encoding="ascii").strip()
        await self.register_user("refdesk-admin", password, admin=True)
        return await self.login("refdesk-admin", password, device_id="REFDESKADMIN")

    async def login(
        self,
        localpart: str,
        password: str,
        *,
        session: aiohttp.ClientSession | None = None,
        device_id: str | None = None,
    ) -> str:
        """Log in with a password and return a fresh access token."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
            "initial_device_display_name": "refdesk",
        }
        if device_id is not None:
            body["device_id"] = device_id
        own = session is None
        sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with sess.post(f"{self.url}/_matrix/client/v3/login", json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise SynapseError(
                        f"login {localpart}: HTTP {resp.status} {data.get('errcode')}"
                    )
                return str(data["access_token"])
        finally:
            if own:
                await sess.close()

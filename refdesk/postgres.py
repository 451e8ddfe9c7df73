"""A PostgreSQL server of our own, for the test suite, the benchmarks and local trials.

Runs the distribution's server binaries (Debian: /usr/lib/postgresql/<major>/bin) directly,
never the system service and never pg_ctl: `initdb` once into a data directory, then one
`postgres` child process on a loopback TCP port (plus a unix socket in the data directory),
started and stopped from asyncio like `EmbeddedSynapse`:

* its own process group, SIGINT ("fast shutdown": clients are disconnected) then SIGKILL;
* the kernel stops it when this process dies, even by SIGKILL (PR_SET_PDEATHSIG);
* an atexit hook stops whatever is still running when the interpreter exits.

The server refuses to run as root, so as root both `initdb` and `postgres` run as an
unprivileged account (`postgres`, which Debian's package creates, else `nobody`) that owns the
data directory. Without a `data_dir` the cluster lives in a fresh temporary directory that
`stop()` deletes; `durable=False` (the default) also turns off fsync and friends.

    async with EmbeddedPostgres() as pg:
        url = pg.url()                       # postgresql://refdesk@127.0.0.1:PORT/refdesk
        name = await pg.create_database()    # test_1, owned by the `refdesk` role
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from refdesk.children import pid_gone, signal_group, tail
from refdesk.homeserver import free_port

logger = logging.getLogger("refdesk.postgres")

SUPERUSER = "postgres"
BINDIR_ENV = "REFDESK_PG_BINDIR"  # a bin directory holding initdb and postgres
DEBIAN_ROOT = Path("/usr/lib/postgresql")
MIN_VERSION = 13  # DROP DATABASE ... WITH (FORCE)
DATA_SUBDIR = "data"
SOCKET_SUBDIR = "run"
LOG_FILE = "postgres.log"
_SOCKET_NAME_MAX = 107 - len("/.s.PGSQL.65535.lock")  # sun_path holds 108 bytes with the NUL
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# For a throwaway cluster: nothing needs to survive a crash, so nothing waits for the disk.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "1h",
}

# Runs in the child before initdb/postgres: drop root for the service account (as root only),
# then ask the kernel to signal the child when this process dies (even by SIGKILL, where
# atexit never runs), then exec. The death signal must be set *after* the uid change, which
# clears it; everything is imported *before* it, while the interpreter's own files (e.g. under
# /root/.pyenv) are still readable. PDEATHSIG follows the *thread* that spawned the child: the
# event loop thread.
_LAUNCHER = """\
import os, pwd, sys
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
except Exception as exc:
    libc = None
    print(f"refdesk launcher: no parent-death signal ({exc!r})", file=sys.stderr, flush=True)
ppid, uid, gid, sig = (int(arg) for arg in sys.argv[1:5])
if uid >= 0:
    account = pwd.getpwuid(uid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    os.environ.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
if sys.platform.startswith("linux") and libc is not None:
    if libc.prctl(1, sig) != 0:  # PR_SET_PDEATHSIG
        err = os.strerror(ctypes.get_errno())
        print(f"refdesk launcher: no parent-death signal ({err})", file=sys.stderr, flush=True)
if os.getppid() != ppid:
    sys.exit(1)
os.execv(sys.argv[5], sys.argv[5:])
"""


class PostgresError(Exception):
    """The PostgreSQL server could not be set up, started, stopped or administered."""


class PostgresNotFound(PostgresError):
    """No PostgreSQL server binaries (initdb and postgres) on this machine."""


class _PortTaken(PostgresError):
    """The server could not listen on its port (another process took it)."""


# pid (== process group id) of every server this process started and has not yet stopped,
# with the temporary directory to delete once it is gone (None for a caller's data_dir).
_LIVE: dict[int, Path | None] = {}


def _children(pid: int) -> list[int]:
    """Pids of `pid`'s children (Linux /proc; elsewhere none are found).

    The postmaster's children (backends, checkpointer, ...) each lead their own process group,
    so signalling the postmaster's group does not reach them.
    """
    found = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_path.parent.name))
    return found


def _kill_server(pid: int) -> None:
    """SIGKILL the postmaster's group and its children (which would exit soon after anyway)."""
    children = _children(pid)
    signal_group(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)


@atexit.register
def _stop_leftovers() -> None:
    """Synchronously stop every server still running when the interpreter exits."""
    live = dict(_LIVE)
    if not live:
        return
    for pid in live:
        signal_group(pid, signal.SIGINT)
    pids = list(live)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if not pid_gone(pid)]
        if pids:
            time.sleep(0.05)
    for pid, scratch in live.items():
        if pid in pids:
            _kill_server(pid)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    _LIVE.clear()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _quote_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a plain PostgreSQL name: {name!r}")
    return f'"{name}"'


# -- binaries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresBinaries:
    """`initdb` and `postgres` from one bin directory (never mix versions)."""

    bin_dir: Path
    version: str  # e.g. "15.18"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bin_dir / "postgres"


def _has_server(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres"))


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def _candidate_bin_dirs() -> list[Path]:
    override = os.environ.get(BINDIR_ENV)
    if override:
        return [Path(override)]
    # Debian/Ubuntu: /usr/lib/postgresql/<major>/bin, newest first.
    found = sorted(DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    # Elsewhere (or symlinks such as /usr/local/bin/initdb): the directory initdb really is in.
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    return found


def find_binaries() -> PostgresBinaries:
    """Locate a PostgreSQL server (newest Debian version first, then `initdb` on PATH).

    `REFDESK_PG_BINDIR` names a bin directory explicitly (e.g. to test another major version).
    Raises PostgresNotFound when there is none, PostgresError when it is too old.
    """
    candidates = _candidate_bin_dirs()
    for bin_dir in candidates:
        if not _has_server(bin_dir):
            continue
        try:
            out = subprocess.run(
                [str(bin_dir / "postgres"), "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresError(f"{bin_dir / 'postgres'} --version failed: {exc}") from exc
        match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", out)
        if match is None:
            raise PostgresError(f"unexpected `postgres --version` output: {out.strip()!r}")
        binaries = PostgresBinaries(bin_dir=bin_dir, version=match.group(1))
        if binaries.major < MIN_VERSION:
            raise PostgresError(
                f"PostgreSQL {binaries.version} in {bin_dir} is too old (need {MIN_VERSION}+)"
            )
        return binaries
    looked = ", ".join(str(path) for path in candidates) or f"{DEBIAN_ROOT}/*/bin, PATH"
    raise PostgresNotFound(
        f"no PostgreSQL server binaries (initdb and postgres) found (looked in {looked}); "
        "install Debian's `postgresql` package"
    )


# -- who runs the server ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def _service_account(name: str | None) -> _Account | None:
    """The unprivileged account to run as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for candidate in [name] if name else [SUPERUSER, "nobody"]:
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise PostgresError(f"account {candidate!r} is root; PostgreSQL refuses to run as root")
        return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid)
    raise PostgresError(
        f"running as root and no account {name or 'postgres or nobody'!r} to run PostgreSQL as"
    )


def _check_reachable(path: Path, account: _Account) -> None:
    """Fail clearly if `account` cannot traverse every directory above `path`."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == account.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == account.gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise PostgresError(
                f"{parent} is not searchable by {account.name!r}, which runs PostgreSQL as we "
                "are root; use a data directory (or TMPDIR) it can reach, e.g. under /tmp"
            )


def _utf8_locale() -> str:
    """C.UTF-8 where the C library has it (Unicode-aware lower()/upper()), else plain C."""
    for path in ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8"):
        if Path(path).exists():
            return "C.UTF-8"
    return "C"


# -- the server ---------------------------------------------------------------------------------


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL server child process on 127.0.0.1:`port` (0: a free port).

    `user` is an ordinary role (LOGIN, no superuser) that owns `database` and every database
    made by `create_database()`, as a library's DBA would set up refdesk; the superuser
    `postgres` is for administration (`admin_url()`). Local connections are trusted.
    """

    data_dir: Path | None = None  # None: a temporary directory, deleted by stop()
    port: int = 0
    user: str = "refdesk"
    database: str = "refdesk"
    durable: bool = False  # False: FAST_SETTINGS (fsync off ...), for throwaway clusters
    settings: Mapping[str, str] = field(default_factory=dict)  # extra `postgres -c` settings
    run_as: str | None = None  # account to run as when root (default: postgres, else nobody)
    binaries: PostgresBinaries | None = None  # default: find_binaries()

    _process: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _base: Path | None = field(default=None, init=False, repr=False)
    _scratch: bool = field(default=False, init=False, repr=False)
    _counter: itertools.count[int] = field(
        default_factory=lambda: itertools.count(1), init=False, repr=False
    )
    timings: dict[str, float] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        _quote_name(self.user)
        _quote_name(self.database)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir).resolve()

    # -- where things are ----------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        base = self._base or self.data_dir
        if base is None:
            raise PostgresError("the server has not been started")
        return base

    @property
    def cluster_dir(self) -> Path:
        return self.base_dir / DATA_SUBDIR

    @property
    def log_path(self) -> Path:
        return self.base_dir / LOG_FILE

    @property
    def socket_dir(self) -> Path | None:
        path = self.base_dir / SOCKET_SUBDIR
        return path if len(str(path)) <= _SOCKET_NAME_MAX else None

    def url(self, database: str | None = None) -> str:
        """postgresql://<user>@127.0.0.1:<port>/<database> (default: the server's database)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database or self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- process lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _failure(self, message: str) -> PostgresError:
        log = tail(self.log_path).strip() if self._base is not None else ""
        if log:
            message = f"{message}\n--- {self.log_path} (tail) ---\n{log}"
        return PostgresError(message)

    async def _spawn(self, account: _Account | None, death_signal: int, *argv: str) -> int:
        """Start argv through the launcher in its own process group; return its pid."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        with self.log_path.open("ab") as log:
            log.write(f"--- {Path(argv[0]).name} at {time.ctime()} ---\n".encode())
            log.flush()
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                str(account.uid if account else -1),
                str(account.gid if account else -1),
                str(int(death_signal)),
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(self.base_dir),
                env=env,
                start_new_session=True,  # own process group, no terminal Ctrl-C
            )
        pid = self._process.pid
        _LIVE[pid] = self._base if self._scratch else None
        return pid

    def _prepare_dirs(self, account: _Account | None) -> None:
        if self.data_dir is None:
            self._base = Path(tempfile.mkdtemp(prefix="refdesk-pg-"))
            self._scratch = True
        else:
            self._base = self.data_dir
            self._scratch = False
            self._base.mkdir(mode=0o700, parents=True, exist_ok=True)
        dirs = [self._base]
        if self.socket_dir is not None:
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            dirs.append(self.socket_dir)
        if account is not None:
            _check_reachable(self._base, account)
            for path in dirs:
                os.chown(path, account.uid, account.gid)

    async def _initdb(self, binaries: PostgresBinaries, account: _Account | None) -> None:
        argv = [
            str(binaries.initdb),
            f"--pgdata={self.cluster_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            f"--locale={_utf8_locale()}",
            "--no-sync",
        ]
        if binaries.major >= 14:
            argv.append("--no-instructions")
        await self._spawn(account, signal.SIGKILL, *argv)
        proc = self._process
        assert proc is not None
        try:
            code = await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            _kill_server(proc.pid)
            await proc.wait()
            raise self._failure("initdb did not finish within 60 s") from None
        finally:
            _LIVE.pop(proc.pid, None)
            self._process = None
        if code != 0:
            raise self._failure(f"initdb exited with code {code}")

    def _server_argv(self, binaries: PostgresBinaries) -> list[str]:
        settings: dict[str, str] = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir or ""),
            "log_line_prefix": "%m [%p] %q%u@%d ",
        }
        if not self.durable:
            settings.update(FAST_SETTINGS)
        settings.update(self.settings)
        argv = [str(binaries.postgres), "-D", str(self.cluster_dir), "-p", str(self.port)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        return argv

    def _postmaster_status(self) -> str | None:
        """The status line of postmaster.pid ("starting", "ready", ...) if it is ours."""
        try:
            lines = (self.cluster_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 8 or lines[0].strip() != str(self.pid):
            return None
        return lines[7].strip()

    async def start(self, timeout: float = 30) -> None:
        """initdb (first time), start the server and wait until it accepts connections.

        No-op if already running. With port 0 a free port is chosen, and chosen again if
        another process takes it first; a restart keeps the port, so URLs stay valid.
        """
        if self.running:
            return
        began = time.monotonic()
        binaries = self.binaries or find_binaries()
        self.binaries = binaries
        account = _service_account(self.run_as)
        try:
            self._prepare_dirs(account)
            if not (self.cluster_dir / "PG_VERSION").exists():
                await self._initdb(binaries, account)
                self.timings["initdb"] = time.monotonic() - began
            auto_port = self.port == 0
            for attempt in itertools.count(1):
                if auto_port:
                    self.port = free_port()
                try:
                    await self._start_server(binaries, account, timeout)
                    break
                except _PortTaken:
                    if not auto_port or attempt >= 3:
                        raise
                    logger.info("port %s was taken meanwhile, trying another", self.port)
            await self._ensure_role_and_database()
        except BaseException:
            await self.stop()
            raise
        self.timings["start"] = time.monotonic() - began
        logger.info(
            "postgres %s pid %s ready on %s in %.2f s (%s)",
            binaries.version,
            self.pid,
            self.url(),
            self.timings["start"],
            self.base_dir,
        )

    async def _start_server(
        self, binaries: PostgresBinaries, account: _Account | None, timeout: float
    ) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        pid = await self._spawn(account, signal.SIGINT, *self._server_argv(binaries))
        proc = self._process
        assert proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if proc.returncode is not None:
                _LIVE.pop(pid, None)
                self._process = None
                failure = self._failure(f"postgres exited early with code {proc.returncode}")
                with self.log_path.open("rb") as log:
                    log.seek(log_offset)
                    if b"could not create any TCP/IP sockets" in log.read():
                        raise _PortTaken(str(failure))
                raise failure
            if self._postmaster_status() == "ready":
                return
            if time.monotonic() > deadline:
                raise self._failure(f"postgres did not become ready within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.02)

    async def _admin(self, database: str = "postgres") -> asyncpg.Connection:
        try:
            return await asyncpg.connect(self.admin_url(database), timeout=10)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._failure(f"cannot connect to postgres on port {self.port}: {exc}") from exc

    async def _ensure_role_and_database(self) -> None:
        conn = await self._admin()
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", self.user):
                await conn.execute(f"CREATE ROLE {_quote_name(self.user)} LOGIN")
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            )
            if not exists:
                await conn.execute(self._create_sql(self.database))
        finally:
            await conn.close()

    async def stop(self, timeout: float = 15) -> None:
        """Fast shutdown (SIGINT to the group), SIGKILL after `timeout`; idempotent.

        A temporary cluster (no data_dir) is deleted.
        """
        proc = self._process
        if proc is not None:
            pid = proc.pid
            began = time.monotonic()
            if proc.returncode is None:
                # Not SIGTERM: that is PostgreSQL's "smart" shutdown, which waits for every
                # client to disconnect. SIGINT disconnects them and shuts down cleanly.
                signal_group(pid, signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), timeout)
                except TimeoutError:
                    logger.warning(
                        "postgres pid %s ignored SIGINT for %s s, killing it", pid, timeout
                    )
                    _kill_server(pid)
                    await proc.wait()
            _LIVE.pop(pid, None)
            self._process = None
            self.timings["stop"] = time.monotonic() - began
            logger.info(
                "stopped postgres pid %s (exit code %s) in %.2f s",
                pid,
                proc.returncode,
                self.timings["stop"],
            )
        if self._scratch and self._base is not None:
            await asyncio.to_thread(shutil.rmtree, self._base, True)
            self._base = None
            self._scratch = False

    async def __aenter__(self) -> EmbeddedPostgres:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- databases -----------------------------------------------------------------------------

    def _create_sql(self, name: str) -> str:
        sql = f"CREATE DATABASE {_quote_name(name)} OWNER {_quote_name(self.user)}"
        if self.binaries is not None and self.binaries.major >= 15:
            # Copying template1's files beats WAL-logging them block by block (the default
            # since 15) for a small database; with fsync off the checkpoints cost nothing.
            sql += " STRATEGY = FILE_COPY"
        return sql

    async def create_database(self, name: str | None = None) -> str:
        """Create an empty database owned by `user` (default name: test_<n>); return its name."""
        name = name or f"test_{next(self._counter)}"
        conn = await self._admin()
        try:
            await conn.execute(self._create_sql(name))
        finally:
            await conn.close()
        return name

    async def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        conn = await self._admin()
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_name(name)} WITH (FORCE)")
        finally:
            await conn.close()


def running_in_ci() -> bool:
    """True where PostgreSQL must be present: CI=true (most CI systems) or
    REFDESK_REQUIRE_POSTGRES=1 (set by .ci/run)."""
    return _truthy(os.environ.get("CI")) or _truthy(os.environ.get("REFDESK_REQUIRE_POSTGRES"))


async def _serve(args: argparse.Namespace) -> None:
    server = EmbeddedPostgres(
        data_dir=args.data_dir, port=args.port, durable=args.data_dir is not None
    )
    async with server:
        print(server.url(), flush=True)
        if server.socket_dir is not None:
            print(f"psql -h {server.socket_dir} -p {server.port} -U {SUPERUSER}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """`python -m refdesk.postgres`: run a server until Ctrl-C and print its URL."""
    parser = argparse.ArgumentParser(prog="python -m refdesk.postgres", description=main.__doc__)
    parser.add_argument("--data-dir", type=Path, help="keep the cluster here (default: temporary)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()

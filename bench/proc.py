"""Child processes and what /proc says about them (memory, CPU time), Linux only."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")

# Runs in the child first: the kernel SIGTERMs it if the benchmark dies (even by SIGKILL),
# then it becomes the real command. So no refdesk outlives a crashed benchmark.
_LAUNCHER = """\
import os, signal, sys
ppid = int(sys.argv[1])
try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != ppid:
    sys.exit(1)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""

_LIVE: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pid in list(_LIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    _LIVE.clear()


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new soft limit.

    The hard limit is raised too where that is allowed (root, or CAP_SYS_RESOURCE), up to the
    kernel's ``fs.nr_open``; elsewhere the soft limit goes as high as the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and wanted > hard:
        try:
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            ceiling = wanted
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, min(wanted, ceiling)))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of ``pid`` in MiB."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of ``pid`` in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` (all threads); of this process when None."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of its children, living or reaped (a PostgreSQL server: the
    postmaster and its backends, each a process of its own)."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    # utime, stime, and cutime, cstime: the children it has reaped (backends that ended).
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            child = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if child[1] == str(pid):
            ticks += int(child[11]) + int(child[12])
    return ticks / _TICKS


def machine_busy_seconds() -> float:
    """CPU time all processes on this machine have used (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


@dataclass
class CpuMeter:
    """CPU use of several processes over an interval, in % of one core.

    ``others`` is everything else on the machine in the same interval (other users' tests,
    py-spy while it samples): the noise the figures were taken in. A process named in
    ``trees`` is counted with its children (a PostgreSQL server and its backends).
    """

    pids: dict[str, int | None]
    trees: frozenset[str] = frozenset()
    _start: dict[str, float] = field(default_factory=dict)
    _t0: float = 0.0

    def _cpu(self, name: str, pid: int | None) -> float:
        if name in self.trees and pid is not None:
            return tree_cpu_seconds(pid)
        return cpu_seconds(pid)

    def _now(self) -> dict[str, float]:
        now = {name: self._cpu(name, pid) for name, pid in self.pids.items()}
        now["others"] = machine_busy_seconds()
        return now

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = self._now()

    def seconds(self) -> dict[str, float]:
        """CPU seconds each process (and the rest of the machine) used since ``start()``."""
        now = self._now()
        used = {name: now[name] - self._start[name] for name in now}
        used["others"] = max(0.0, used["others"] - sum(v for k, v in used.items() if k != "others"))
        return used

    def read(self) -> dict[str, float]:
        """% of one core each process used since ``start()``."""
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        return {name: round(100 * used / elapsed, 1) for name, used in self.seconds().items()}


class Child:
    """A Python child process (``python -m ...``) in its own process group, tied to our life."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path = REPO) -> None:
        self.args = args
        self.log_path = log_path
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _LAUNCHER,
                str(os.getpid()),
                *self.args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=str(self.cwd),
                env=env,
                start_new_session=True,
            )
        _LIVE.add(self.process.pid)

    async def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        _LIVE.discard(proc.pid)
        return proc.returncode

    async def kill(self, timeout: float = 10) -> int | None:
        """SIGKILL the process group at once, as a crash would; returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), timeout)
        _LIVE.discard(proc.pid)
        return proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

"""Child servers refdesk starts for itself (the embedded Synapse, a throwaway PostgreSQL): each in
its own process group, signalled as a group, never left running."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group ``pid`` leads (gone already is fine)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def pid_gone(pid: int) -> bool:
    """Whether the process has exited (reaping it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped already (by asyncio's watcher) or not our child
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return done == pid


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` of a log file, for error messages ('' if it cannot be read)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError:
        return ""

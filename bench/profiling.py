"""Sample a process with py-spy while it works, and say where its CPU time went."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_GROUPS = (
    # (group, prefixes of the sampled file path as py-spy prints it)
    ("sqlite", ("sqlite3/", "rooms/store/database.py")),
    ("aiohttp / yarl / multidict", ("aiohttp/", "yarl/", "multidict/")),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("matrix-nio", ("nio/",)),
    ("refdesk: rooms/", ("rooms/",)),
    ("refdesk: bridge/", ("bridge/",)),
    ("refdesk: widget_server/", ("widget_server/",)),
    ("refdesk: refdesk/", ("refdesk/",)),
    ("synapse", ("synapse/",)),
    ("twisted", ("twisted/",)),
)


def _py_spy() -> str | None:
    """py-spy on PATH, or next to this Python (a virtualenv that is not activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def available() -> bool:
    return _py_spy() is not None


async def record(pid: int, out: Path, seconds: float, fmt: str = "raw") -> str | None:
    """``py-spy record`` of ``pid`` into ``out``; returns an error text, or None if it worked."""
    exe = _py_spy()
    if exe is None:
        return "py-spy is not installed (pip install py-spy)"
    args = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100"]
    args += ["--nonblocking", "--format", fmt, "-o", str(out)]
    if fmt == "raw":
        args += ["--function", "--threads"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return "py-spy did not finish in time"
    if proc.returncode != 0:
        return f"py-spy exited {proc.returncode}: {output.decode(errors='replace')[-400:]}"
    return None


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    return stack.split(";"), int(count)


def _file(frame: str) -> str:
    """``'func (path/file.py:12)'`` → ``'path/file.py'``."""
    if frame.endswith(")") and " (" in frame:
        return frame.rsplit(" (", 1)[1].rstrip(")").rsplit(":", 1)[0]
    return ""


def _group(frame: str) -> str:
    path = _file(frame)
    for group, prefixes in _GROUPS:
        if path.startswith(prefixes):
            return group
    top = path.split("/", 1)[0] if "/" in path else path
    return f"other ({top or '?'})"


def _plumbing(frame: str) -> bool:
    """Frames on nearly every stack (the loop, the interpreter's start): no information."""
    path = _file(frame)
    return (
        path.startswith(("asyncio/", "runpy.py", "threading.py", "<")) or path == "refdesk/cli.py"
    )


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Shares of the samples: per thread, per library (by the running frame), per function."""
    threads: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        total += count
        thread = frames[0].split(": ", 1)[-1] if frames[0].startswith("thread") else "?"
        threads["main (event loop)" if thread == "MainThread" else f"other: {thread}"] += count
        code = frames[1:] if frames[0].startswith("thread") else frames
        if not code:
            continue
        groups[_group(code[-1])] += count
        own[code[-1]] += count
        for frame in set(code):
            if not _plumbing(frame):
                inclusive[frame] += count

    def shares(counter: Counter[str], n: int | None = None) -> list[list[Any]]:
        return [[name, round(100 * c / total, 1)] for name, c in counter.most_common(n)]

    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "threads_percent": shares(threads),
        "by_library_percent": shares(groups),
        "top_self_percent": shares(own, top),
        "top_inclusive_percent": shares(inclusive, top * 2),
    }


def collect(raws: dict[str, Path], others: list[Path]) -> dict[str, Any]:
    """The summaries of the raw recordings that exist, and the list of files written."""
    result: dict[str, Any] = {name: summarize(path) for name, path in raws.items() if path.exists()}
    result["files"] = [str(p) for p in [*raws.values(), *others] if p.exists()]
    return result


async def profile_stack(
    refdesk_pid: int, synapse_pid: int | None, out_dir: Path, name: str, seconds: float
) -> dict[str, Any]:
    """Sample refdesk (raw stacks and a flame graph) and Synapse (raw stacks) for ``seconds``.

    Files: ``{name}.svg``, ``{name}-refdesk.txt``, ``{name}-synapse.txt`` in ``out_dir``.
    """
    if not available():
        return {"error": "py-spy is not installed (pip install py-spy)"}
    raw = out_dir / f"{name}-refdesk.txt"
    svg = out_dir / f"{name}.svg"
    raw_synapse = out_dir / f"{name}-synapse.txt"
    recorders = [record(refdesk_pid, raw, seconds), record(refdesk_pid, svg, seconds, "flamegraph")]
    if synapse_pid is not None:
        recorders.append(record(synapse_pid, raw_synapse, seconds))
    errors = await asyncio.gather(*recorders)
    return {
        "seconds": seconds,
        "errors": [e for e in errors if e],
        **collect({"refdesk": raw, "synapse": raw_synapse}, [svg]),
    }

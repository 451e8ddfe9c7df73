"""How long ``refdesk up`` takes from an empty data dir, and how big the widget is."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.actors import BenchError
from bench.proc import REPO, Child, rss_mb
from bench.stack import wait_http_ok
from refdesk.homeserver import free_port
from refdesk.language_files import builtin
from widget_server import script

WIDGET = REPO / "widget_server" / "static" / "widget.js"


Ports = tuple[int, int, int]  # widget, homeserver, appservice


async def refdesk_up(
    data_dir: Path, log_path: Path, ports: Ports | None = None, timeout: float = 120
) -> dict[str, Any]:
    """Start ``refdesk up``; seconds until the widget API and the homeserver both answer.

    A second start in the same data dir must be given the first one's ``ports``: the ports
    are flags of the first run only (the generated config keeps them).
    """
    widget_port, hs_port, as_port = ports or (free_port(), free_port(), free_port())
    args = ["-m", "refdesk.cli", "up", "--data-dir", str(data_dir), "--port", str(widget_port)]
    args += ["--homeserver-port", str(hs_port), "--appservice-port", str(as_port)]
    child = Child(args, log_path=log_path)
    start = time.monotonic()
    await child.start()
    try:
        widget_s, health_s = await asyncio.gather(
            wait_http_ok(f"http://127.0.0.1:{widget_port}/api/config", timeout, child=child),
            wait_http_ok(f"http://127.0.0.1:{hs_port}/health", timeout, child=child),
        )
        ready_s = time.monotonic() - start
        rss = rss_mb(child.pid)
    except BenchError as exc:
        await child.stop()
        raise BenchError(f"{exc}\n--- refdesk up (tail) ---\n{child.log_tail()}") from None
    except BaseException:
        await child.stop()
        raise
    stop_start = time.monotonic()
    code = await child.stop(timeout=30)
    return {
        "ready_s": round(ready_s, 2),
        "homeserver_health_s": round(health_s, 2),
        "widget_api_s": round(widget_s, 2),
        "refdesk_process_rss_mb": round(rss, 1),
        "stop_s": round(time.monotonic() - stop_start, 2),
        "exit_code": code,
        "ports": [widget_port, hs_port, as_port],
    }


def widget_size(path: Path = WIDGET) -> dict[str, Any]:
    """The script as served with the built-in languages written in (both shipped languages)."""
    if not path.exists():
        return {"error": f"{path} does not exist"}
    built = script.build(builtin().values(), path)
    return {
        "path": str(path.relative_to(REPO)),
        "bytes": len(built.body),
        "gzip_bytes": len(built.gzipped),
    }

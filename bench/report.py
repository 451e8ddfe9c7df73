"""The machine, the targets, and the table printed at the end of a run."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.proc import REPO

# Goals from issue 6 (not test assertions).
RATIO_P50 = 1.10
RATIO_P99 = 1.25
IDLE_TARGET = 5000
IDLE_RSS_MB = 300
LOAD_CHATS = 50
RATE_PER_S = 200
START_S = 15
WIDGET_GZIP_BYTES = 30_000


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return math.nan


def _git() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return None
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else None


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "ram_gib": _mem_total_gib(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "synapse": _version("matrix-synapse"),
        "matrix_nio": _version("matrix-nio"),
        "aiohttp": _version("aiohttp"),
        "sqlite": sqlite3.sqlite_version,
        "asyncpg": _version("asyncpg"),
        "git": _git(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    value: str
    status: str  # "met", "missed" or "not measured"

    def json(self) -> dict[str, str]:
        return {"name": self.name, "goal": self.goal, "value": self.value, "status": self.status}


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "missed")


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _worst_ratios(section: dict[str, Any] | None) -> tuple[float | None, float | None]:
    if not section:
        return None, None
    p50s, p99s = [], []
    for direction in ("visitor_to_librarian", "librarian_to_visitor"):
        r = _get(section, direction, "ratio") or {}
        if isinstance(r.get("p50"), float) and not math.isnan(r["p50"]):
            p50s.append(r["p50"])
        if isinstance(r.get("p99"), float) and not math.isnan(r["p99"]):
            p99s.append(r["p99"])
    return (max(p50s) if p50s else None, max(p99s) if p99s else None)


def targets(results: dict[str, Any]) -> list[Target]:
    out = []
    p50, p99 = _worst_ratios(results.get("latency"))
    out.append(
        Target(
            "latency ratio p50 (worse direction)",
            f"≤ {RATIO_P50:.2f}",
            "-" if p50 is None else f"{p50:.2f}",
            _status(None if p50 is None else p50 <= RATIO_P50),
        )
    )
    out.append(
        Target(
            "latency ratio p99 (worse direction)",
            f"≤ {RATIO_P99:.2f}",
            "-" if p99 is None else f"{p99:.2f}",
            _status(None if p99 is None else p99 <= RATIO_P99),
        )
    )
    steps = _get(results, "capacity", "steps") or []
    top = max(steps, key=lambda s: s["idle"]) if steps else None
    if top and top["idle"] >= IDLE_TARGET:
        rss = top["rss_mb"]
        out.append(
            Target(
                f"RSS with {IDLE_TARGET} idle connections",
                f"≤ {IDLE_RSS_MB} MB",
                f"{rss:.0f} MB",
                _status(rss <= IDLE_RSS_MB),
            )
        )
    else:
        estimate = "-"
        if top and top.get("kb_per_connection") and steps:
            base = steps[0]["rss_mb"]
            estimate = f"~{base + top['kb_per_connection'] * IDLE_TARGET / 1024:.0f} MB (estimate)"
        name = f"RSS with {IDLE_TARGET} idle connections"
        out.append(Target(name, f"≤ {IDLE_RSS_MB} MB", estimate, "not measured"))
    chats = _get(results, "capacity", "active_chats")
    if top and chats:
        lp50, lp99 = _worst_ratios(top)
        ok = None
        if lp50 is not None and lp99 is not None:
            ok = lp50 <= RATIO_P50 and lp99 <= RATIO_P99
            if top["idle"] < IDLE_TARGET or chats < LOAD_CHATS:
                ok = None
        out.append(
            Target(
                f"latency ratio with {top['idle']} idle + {chats} active chats",
                f"p50 ≤ {RATIO_P50:.2f}, p99 ≤ {RATIO_P99:.2f} "
                f"(at {IDLE_TARGET} idle + {LOAD_CHATS} chats)",
                "-" if lp50 is None or lp99 is None else f"p50 {lp50:.2f}, p99 {lp99:.2f}",
                _status(ok),
            )
        )
    best = _get(results, "throughput", "refdesk", "max_sustained_per_s")
    base = _get(results, "throughput", "baseline", "max_sustained_per_s")
    value = "-" if best is None else f"{best}/s"
    if best is not None and base is not None:
        value += f" (plain Synapse here: {base}/s)"
    out.append(
        Target(
            "sustained visitor messages, zero loss",
            f"≥ {RATE_PER_S}/s",
            value,
            _status(None if best is None else best >= RATE_PER_S),
        )
    )
    start = _get(results, "startup", "cold", "ready_s")
    out.append(
        Target(
            "`refdesk up` from empty data dir",
            f"≤ {START_S} s",
            "-" if start is None else f"{start:.1f} s",
            _status(None if start is None else start <= START_S),
        )
    )
    gz = _get(results, "widget", "gzip_bytes")
    out.append(
        Target(
            "widget.js gzipped",
            f"≤ {WIDGET_GZIP_BYTES:,} bytes",
            "-" if gz is None else f"{gz:,} bytes",
            _status(None if gz is None else gz <= WIDGET_GZIP_BYTES),
        )
    )
    return out


# -- the table ---------------------------------------------------------------------------


def _ms(x: Any) -> str:
    return "-" if not isinstance(x, int | float) or math.isnan(x) else f"{x:.1f}"


def _r(x: Any) -> str:
    return "-" if not isinstance(x, int | float) or math.isnan(x) else f"{x:.2f}"


def _cpu(cpu: dict[str, float]) -> str:
    return "/".join(
        f"{cpu.get(k, math.nan):.0f}" for k in ("refdesk", "synapse", "bench", "others")
    )


def _spread(s: dict[str, Any]) -> str:
    """``p50/p99 (×p50/×p99)`` of one latency summary with its ratio to the baseline."""
    r = s.get("ratio") or {}
    return f"{_ms(s['p50'])}/{_ms(s['p99'])} (×{_r(r.get('p50'))}/×{_r(r.get('p99'))})"


def _latency_lines(lat: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Latency, one message at a time (ms):      n     p50     p99  ×base p50  ×base p99",
    ]
    labels = {
        "baseline": "baseline nio → Synapse → nio",
        "visitor_to_librarian": "visitor WS → refdesk → librarian",
        "librarian_to_visitor": "librarian → refdesk → visitor WS",
    }
    for key, label in labels.items():
        s = lat[key]
        r = s.get("ratio", {})
        lines.append(
            f"  {label:<36} {s['n']:>5} {_ms(s['p50']):>7} {_ms(s['p99']):>7}"
            f" {_r(r.get('p50')):>10} {_r(r.get('p99')):>10}"
        )
    return lines


def _capacity_lines(cap: dict[str, Any]) -> list[str]:
    b = cap["baseline"]
    lines = [
        "",
        f"Capacity: idle WebSockets + {cap['active_chats']} active chats (latency in ms):",
        f"  baseline nio chats: forward {_ms(b['forward']['p50'])}/{_ms(b['forward']['p99'])},"
        f" back {_ms(b['back']['p50'])}/{_ms(b['back']['p99'])},"
        f" new chat p50 {_ms(b['new_chat_ms']['p50'])}, CPU % {_cpu(b['cpu_percent'])}",
        "   idle  alive  RSS MB  KB/conn  v→l p50/p99 (×base)        l→v p50/p99 (×base)"
        "        new chat p50  CPU % refdesk/synapse/bench/others",
    ]
    for s in cap["steps"]:
        lines.append(
            f"  {s['idle']:>5} {s['alive']:>6} {s['rss_mb']:>7.1f}"
            f" {_ms(s['kb_per_connection']):>8}  {_spread(s['visitor_to_librarian']):<26}"
            f" {_spread(s['librarian_to_visitor']):<26} {_ms(s['new_chat_ms']['p50']):>12}"
            f"  {_cpu(s['cpu_percent'])}"
        )
    if "rss_second_crowd_mb" in cap:
        lines.append(
            f"  RSS after the idle visitors left: {cap['rss_after_close_mb']:.1f} MB;"
            f" a second crowd as big: {cap['rss_second_crowd_mb']:.1f} MB;"
            f" after it left: {cap['rss_after_second_close_mb']:.1f} MB"
        )
    return lines


def _throughput_lines(tp: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Throughput: messages/s offered over {tp['chats']} rooms,"
        f" {tp['step_seconds']:.0f} s per step (refdesk: visitor WS → librarian /sync):",
        "            rate/s  delivered  lost   lag s  p50 ms  p99 ms"
        "  CPU % refdesk/synapse/bench/others  CPU ms/msg refdesk/synapse",
    ]
    for name in ("baseline", "refdesk"):
        for s in tp.get(name, {}).get("steps", []):
            lat, per = s["latency_ms"], s["cpu_ms_per_message"]
            lines.append(
                f"  {name:<9} {s['rate']:>6} {s['delivered']:>10} {s['lost']:>5}"
                f" {s['lag_s']:>7.2f} {_ms(lat['p50']):>7} {_ms(lat['p99']):>7}"
                f"  {_cpu(s['cpu_percent']):<33}"
                f" {per.get('refdesk', math.nan):.2f}/{per.get('synapse', math.nan):.2f}"
                f"{'' if s['sustained'] else '  <- not sustained'}"
            )
    for name in ("baseline", "refdesk"):
        if name in tp:
            t = tp[name]
            lines.append(
                f"  {name}: max sustained {t['max_sustained_per_s']}/s;"
                f" at saturation: {t['saturation']}"
            )
    return lines


def _start_lines(start: dict[str, Any], widget: dict[str, Any]) -> list[str]:
    lines = [""]
    if "cold" in start:
        c = start["cold"]
        lines.append(
            f"Start: `refdesk up`, empty data dir: ready in {c['ready_s']:.1f} s"
            f" (homeserver /health {c['homeserver_health_s']:.1f} s,"
            f" widget API {c['widget_api_s']:.1f} s)"
        )
        warm = start.get("warm") or {}
        if "ready_s" in warm:
            lines.append(f"       second start, same data dir: {warm['ready_s']:.1f} s")
        elif "error" in warm:
            lines.append(f"       second start FAILED: {warm['error']}")
    elif start.get("error"):
        lines.append(f"Start: FAILED {start['error']}")
    if "gzip_bytes" in widget:
        lines.append(f"Widget: {widget['bytes']:,} bytes, {widget['gzip_bytes']:,} gzipped")
    return lines


def table(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        f"refdesk benchmark ({results.get('mode')}) on {m.get('nproc')} × {m.get('cpu')},"
        f" {m.get('ram_gib')} GiB, Python {m.get('python')}, Synapse {m.get('synapse')}"
    ]
    sections = (
        ("latency", "baseline", _latency_lines),
        ("capacity", "steps", _capacity_lines),
        ("throughput", "refdesk", _throughput_lines),
    )
    for name, needed, render in sections:
        data = results.get(name) or {}
        if data.get(needed):
            lines += render(data)
        elif data.get("error"):
            lines += ["", f"{name}: FAILED {data['error']}"]
    burst = results.get("burst") or {}
    if "stored_per_s" in burst:
        lines += [
            "",
            f"Burst: {burst['messages']} visitor messages at once: stored (acked) at"
            f" {burst['stored_per_s']:.0f}/s, delivered to the librarian at"
            f" {burst['delivered_per_s']:.0f}/s, lost {burst['lost']},"
            f" CPU ms/msg refdesk {burst['cpu_ms_per_message'].get('refdesk', math.nan):.2f}",
        ]
    profiles = (
        (results.get("profile") or {}, "visitor messages at {rate}/s"),
        (_get(results, "capacity", "profile") or {}, "{idle} idle visitors + the active chats"),
    )
    for prof, during in profiles:
        if prof.get("refdesk"):
            lines += ["", f"Profile of refdesk during {during.format(**prof)} (py-spy samples):"]
            for label, pct in prof["refdesk"]["by_library_percent"][:8]:
                lines.append(f"  {pct:5.1f}%  {label}")
    lines += _start_lines(results.get("startup") or {}, results.get("widget") or {})
    lines += ["", "Targets:"]
    for t in results.get("targets", []):
        lines.append(f"  [{t['status']:^12}] {t['name']}: {t['value']} (goal {t['goal']})")
    if results.get("error"):
        lines += ["", str(results["error"])]
    return "\n".join(lines)

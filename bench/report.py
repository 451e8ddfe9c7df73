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

# Goals of issue 10 ("The core, rebuilt around its store"), against plain Synapse in one run.
TRIPS_PER_MESSAGE = 6  # database trips (units of work) per message, each way
CPU_RATIO = 0.10  # refdesk's CPU per relayed message ÷ Synapse's for the same messages
LOAD_IDLE = 10_000  # idle visitors, with
LOAD_CHATS = 100  # active chats: the load of the latency goals below
LOAD_P50 = 1.00
LOAD_P99 = 1.10
KB_PER_IDLE = 12  # memory per idle visitor connection
IDLE_RSS_MB = 200  # refdesk's RSS with LOAD_IDLE idle visitors
RATE_RATIO = 0.95  # sustained message rate ÷ plain Synapse's, each way
# Goals of issue 6, still checked: one message at a time, start, widget size.
RATIO_P50 = 1.10
RATIO_P99 = 1.25
START_S = 15
WIDGET_GZIP_BYTES = 30_000
DIRECTIONS = ("visitor_to_librarian", "librarian_to_visitor")
ARROWS = {"visitor_to_librarian": "v→l", "librarian_to_visitor": "l→v"}


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
    for direction in DIRECTIONS:
        r = _get(section, direction, "ratio") or {}
        if isinstance(r.get("p50"), float) and not math.isnan(r["p50"]):
            p50s.append(r["p50"])
        if isinstance(r.get("p99"), float) and not math.isnan(r["p99"]):
            p99s.append(r["p99"])
    return (max(p50s) if p50s else None, max(p99s) if p99s else None)


def _at_most(value: float | None, goal: float, measured: bool = True) -> str:
    if value is None or not measured:
        return "not measured"
    return _status(value <= goal)


def cpu_ratio(ramp: dict[str, Any] | None) -> float | None:
    """refdesk's CPU (with its PostgreSQL server, if any) ÷ Synapse's over a ramp's sustained
    steps: the same messages, counted where they arrived."""
    used = (ramp or {}).get("cpu_seconds_sustained") or {}
    synapse = used.get("synapse") or 0.0
    if not used.get("messages") or synapse <= 0:
        return None
    return (used.get("refdesk", 0.0) + used.get("postgres", 0.0)) / synapse


def _load_top(run: dict[str, Any]) -> dict[str, Any] | None:
    steps = _get(run, "capacity", "steps") or []
    return max(steps, key=lambda s: s["idle"]) if steps else None


def _latency_targets(
    what: str,
    found: tuple[tuple[float | None, float], tuple[float | None, float]],
    goal_suffix: str = "",
    value_suffix: str = "",
    measured: bool = True,
) -> list[Target]:
    """The p50 and p99 latency ratios against their goals."""
    return [
        Target(
            f"latency {label} ×base{'' if what.startswith(',') else ' '}{what}",
            f"≤ {goal:.2f}{goal_suffix}",
            "-" if value is None else f"{value:.2f}{value_suffix}",
            _at_most(value, goal, measured),
        )
        for label, (value, goal) in zip(("p50", "p99"), found, strict=True)
    ]


def targets(run: dict[str, Any], common: dict[str, Any] | None = None) -> list[Target]:
    """The goals, checked on one store's run (``common``: what does not depend on the store:
    `refdesk up` and the widget)."""
    common = common or {}
    out = []
    for direction in DIRECTIONS:
        trips = _get(run, "trips", direction, "trips")
        statements = _get(run, "trips", direction, "statements")
        value = "-" if trips is None else f"{trips:.1f}"
        if statements is not None:
            value += f" ({statements:.1f} statements)"
        out.append(
            Target(
                f"database trips per message, {ARROWS[direction]}",
                f"≤ {TRIPS_PER_MESSAGE}",
                value,
                _at_most(trips, TRIPS_PER_MESSAGE),
            )
        )
    ratios = {d: cpu_ratio(_get(run, "throughput", d)) for d in DIRECTIONS}
    known = [r for r in ratios.values() if r is not None]
    worst = max(known) if known else None
    shown = ", ".join(f"{ARROWS[d]} {r:.3f}" for d, r in ratios.items() if r is not None)
    out.append(
        Target(
            "refdesk CPU per message ÷ Synapse's (with PostgreSQL's, on PostgreSQL)",
            f"≤ {CPU_RATIO:.2f}",
            shown or "-",
            _at_most(worst, CPU_RATIO),
        )
    )
    top = _load_top(run)
    chats = _get(run, "capacity", "active_chats")
    full_load = bool(top and chats and top["idle"] >= LOAD_IDLE and chats >= LOAD_CHATS)
    lp50, lp99 = _worst_ratios(top)
    where = f"{top['idle']} idle + {chats} chats" if top and chats else "-"
    out += _latency_targets(
        "under load (worse direction)",
        ((lp50, LOAD_P50), (lp99, LOAD_P99)),
        f" at {LOAD_IDLE} idle + {LOAD_CHATS} chats",
        f" ({where})",
        full_load,
    )
    kb = top.get("kb_per_connection") if top else None
    out.append(
        Target(
            "memory per idle visitor connection",
            f"≤ {KB_PER_IDLE} KB",
            "-" if kb is None else f"{kb:.1f} KB (at {top['idle'] if top else 0} idle)",
            _at_most(kb, KB_PER_IDLE),
        )
    )
    rss = top["rss_mb"] if top else None
    out.append(
        Target(
            f"refdesk RSS with {LOAD_IDLE} idle visitors",
            f"≤ {IDLE_RSS_MB} MB",
            "-" if rss is None or top is None else f"{rss:.0f} MB (at {top['idle']} idle)",
            _at_most(rss, IDLE_RSS_MB, bool(top and top["idle"] >= LOAD_IDLE)),
        )
    )
    base = _get(run, "throughput", "baseline", "max_sustained_per_s")
    for direction in DIRECTIONS:
        best = _get(run, "throughput", direction, "max_sustained_per_s")
        ok = None
        value = "-"
        if best is not None and base:
            ok = best / base >= RATE_RATIO
            value = f"{best / base:.2f} ({best}/s against {base}/s)"
        out.append(
            Target(
                f"sustained messages/s ÷ plain Synapse's, {ARROWS[direction]}",
                f"≥ {RATE_RATIO:.2f}",
                value,
                _status(ok),
            )
        )
    p50, p99 = _worst_ratios(run.get("latency"))
    out += _latency_targets(
        ", one message at a time (issue 6)", ((p50, RATIO_P50), (p99, RATIO_P99))
    )
    start = _get(common, "startup", "cold", "ready_s")
    out.append(
        Target(
            "`refdesk up` from empty data dir (issue 6)",
            f"≤ {START_S} s",
            "-" if start is None else f"{start:.1f} s",
            _at_most(start, START_S),
        )
    )
    gz = _get(common, "widget", "gzip_bytes")
    out.append(
        Target(
            "widget.js gzipped (issue 6)",
            f"≤ {WIDGET_GZIP_BYTES:,} bytes",
            "-" if gz is None else f"{gz:,} bytes",
            _at_most(gz, WIDGET_GZIP_BYTES),
        )
    )
    return out


# -- the table ---------------------------------------------------------------------------


def _ms(x: Any) -> str:
    return "-" if not isinstance(x, int | float) or math.isnan(x) else f"{x:.1f}"


def _r(x: Any) -> str:
    return "-" if not isinstance(x, int | float) or math.isnan(x) else f"{x:.2f}"


_CPU_LABELS = (("refdesk", "rd"), ("postgres", "pg"), ("synapse", "hs"), ("bench", "b"))


def _cpu(cpu: dict[str, float]) -> str:
    """``rd 12 pg 3 hs 80 b 20 o 1``: % of one core of refdesk, its PostgreSQL, Synapse, the
    benchmark, and the rest of the machine."""
    parts = [f"{short} {cpu[name]:.0f}" for name, short in _CPU_LABELS if name in cpu]
    return " ".join([*parts, f"o {cpu.get('others', math.nan):.0f}"])


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
        f"Capacity: idle WebSockets + {cap['active_chats']} active chats (latency in ms;"
        " CPU in % of a core: rd refdesk, pg its PostgreSQL, hs Synapse, b bench, o others):",
        f"  baseline nio chats: forward {_ms(b['forward']['p50'])}/{_ms(b['forward']['p99'])},"
        f" back {_ms(b['back']['p50'])}/{_ms(b['back']['p99'])},"
        f" new chat p50 {_ms(b['new_chat_ms']['p50'])}, CPU {_cpu(b['cpu_percent'])}",
        "    idle  alive  RSS MB  KB/conn  v→l p50/p99 (×base)        l→v p50/p99 (×base)"
        "        new chat p50  CPU",
    ]
    for s in cap["steps"]:
        lines.append(
            f"  {s['idle']:>6} {s['alive']:>6} {s['rss_mb']:>7.1f}"
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


_RAMP_LABELS = {
    "baseline": "plain",
    "visitor_to_librarian": "v→l",
    "librarian_to_visitor": "l→v",
}


def _throughput_lines(tp: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Throughput: messages/s offered over {tp['chats']} rooms,"
        f" {tp['step_seconds']:.0f} s per step (plain: carol → bob; v→l: visitor WS →"
        " librarian /sync; l→v: librarian → visitor WS):",
        "          rate/s  delivered  lost   lag s  p50 ms  p99 ms"
        "  CPU % of a core                  CPU ms/msg rd(+pg)/hs",
    ]
    for name, label in _RAMP_LABELS.items():
        for s in tp.get(name, {}).get("steps", []):
            lat, per = s["latency_ms"], s["cpu_ms_per_message"]
            ours = per.get("refdesk", math.nan) + per.get("postgres", 0.0)
            lines.append(
                f"  {label:<6} {s['rate']:>6} {s['delivered']:>10} {s['lost']:>5}"
                f" {s['lag_s']:>7.2f} {_ms(lat['p50']):>7} {_ms(lat['p99']):>7}"
                f"  {_cpu(s['cpu_percent']):<32}"
                f" {ours:.2f}/{per.get('synapse', math.nan):.2f}"
                f"{'' if s['sustained'] else '  <- not sustained'}"
            )
    for name, label in _RAMP_LABELS.items():
        if name in tp:
            t = tp[name]
            extra = ""
            if name != "baseline" and (r := cpu_ratio(t)) is not None:
                extra = f"; CPU ÷ Synapse's over the sustained steps {r:.3f}"
            lines.append(
                f"  {label}: max sustained {t['max_sustained_per_s']}/s{extra};"
                f" at saturation: {t['saturation']}"
            )
    return lines


def _trips_lines(trips: dict[str, Any]) -> list[str]:
    lines = ["", "Database trips per message (bench.sqlite_calls):"]
    for direction in DIRECTIONS:
        found = trips.get(direction) or {}
        statements = found.get("statements")
        extra = "" if statements is None else f", {statements:.1f} statements"
        lines.append(f"  {ARROWS[direction]}: {found.get('trips', math.nan):.1f} trips{extra}")
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


def store_table(run: dict[str, Any]) -> list[str]:
    """The figures of one store's run."""
    store = run.get("store", "sqlite")
    pg = run.get("postgres") or {}
    lines = [f"== refdesk's store: {store}" + (f" {pg.get('version')}" if pg else "")]
    sections = (
        ("latency", "baseline", _latency_lines),
        ("capacity", "steps", _capacity_lines),
        ("throughput", "visitor_to_librarian", _throughput_lines),
        ("trips", "visitor_to_librarian", _trips_lines),
    )
    for name, needed, render in sections:
        data = run.get(name) or {}
        if data.get(needed):
            lines += render(data)
        elif data.get("error"):
            lines += ["", f"{name}: FAILED {data['error']}"]
    burst = run.get("burst") or {}
    if "stored_per_s" in burst:
        per = burst["cpu_ms_per_message"]
        lines += [
            "",
            f"Burst: {burst['messages']} visitor messages at once: stored (acked) at"
            f" {burst['stored_per_s']:.0f}/s, delivered to the librarian at"
            f" {burst['delivered_per_s']:.0f}/s, lost {burst['lost']},"
            f" CPU ms/msg refdesk {per.get('refdesk', math.nan):.2f}"
            + (f" + PostgreSQL {per['postgres']:.2f}" if "postgres" in per else ""),
        ]
    profiles = (
        (run.get("profile") or {}, "visitor messages at {rate}/s"),
        (_get(run, "capacity", "profile") or {}, "{idle} idle visitors + the active chats"),
    )
    for prof, during in profiles:
        if prof.get("refdesk"):
            lines += ["", f"Profile of refdesk during {during.format(**prof)} (py-spy samples):"]
            for label, pct in prof["refdesk"]["by_library_percent"][:8]:
                lines.append(f"  {pct:5.1f}%  {label}")
    if run.get("error"):
        lines += ["", str(run["error"])]
    return lines


def table(results: dict[str, Any]) -> str:
    """Everything a run printed: each store's figures, then the goals side by side."""
    m = results.get("machine", {})
    lines = [
        f"refdesk benchmark ({results.get('mode')}) on {m.get('nproc')} × {m.get('cpu')},"
        f" {m.get('ram_gib')} GiB, Python {m.get('python')}, Synapse {m.get('synapse')}"
    ]
    runs: dict[str, dict[str, Any]] = results.get("stores") or {}
    for run in runs.values():
        lines += ["", *store_table(run)]
    lines += _start_lines(results.get("startup") or {}, results.get("widget") or {})
    names = list(runs)
    lines += ["", "Targets" + (f" ({' | '.join(names)})" if names else "") + ":"]
    for row in results.get("targets", []):
        cells = " | ".join(
            f"{row[store]['value']} [{row[store]['status']}]" for store in names if store in row
        )
        lines.append(f"  {row['name']} ({row['goal']}): {cells}")
    return "\n".join(lines)


def target_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The goals, one row each, with every store's value and status."""
    rows: dict[str, dict[str, Any]] = {}
    for store, run in (results.get("stores") or {}).items():
        for t in targets(run, results):
            row = rows.setdefault(t.name, {"name": t.name, "goal": t.goal})
            row[store] = {"value": t.value, "status": t.status}
    return list(rows.values())

"""``python -m bench.sqlite_calls``: how many database trips refdesk makes per message.

    python -m bench.sqlite_calls [-n 100] [--idle 1000]         # the store in SQLite
    python -m bench.sqlite_calls --postgres                     # in a PostgreSQL of its own
    python -m bench.sqlite_calls --database postgresql://…      # in an empty database there

A trip is one unit of work (rooms/store/database.py): on SQLite one hop to the store's thread and
back through the event loop, on PostgreSQL one pooled connection held for one transaction. On the
message path these trips, not the queries, were most of refdesk's own CPU time (see
docs/BENCHMARKS.md). This counts them per visitor and per librarian message, by the desk code
that made them (on PostgreSQL also the statements, each a round trip to the server). The counts
do not depend on the machine, so they show whether a change made the path cheaper. refdesk runs
in this process here, against a real Synapse on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from bench.actors import MatrixUser, Visitor, wait_arrival
from bench.stack import LIBRARIAN, PASSWORD, config_data
from bridge.registration import registration
from refdesk.config import load_config
from refdesk.embedded import write_yaml
from refdesk.homeserver import EmbeddedSynapse, free_port
from refdesk.postgres import EmbeddedPostgres
from refdesk.service import RefDesk
from refdesk.wiring import bridge_settings
from rooms.store import database

_PACKAGES = ("rooms", "bridge", "widget_server")
CALLS: Counter[str] = Counter()
STATEMENTS = [0]
# On PostgreSQL: every message to the server that waits for its answer (the statements, and
# BEGIN, COMMIT and NOTIFY around them), counted on asyncpg's connections.
ROUND_TRIPS = [0]


# Frames that only pass a call on (the store's engine, the HTTP middlewares).
_PLUMBING = ("database.py", "app.py", "errors.py")


def _where(frame: FrameType | None) -> str:
    """``entry -> store function``: the outermost and innermost desk frames of a call."""
    inner: str | None = None
    outer: str | None = None
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.parent.name in (*_PACKAGES, "api", "store") and path.name not in _PLUMBING:
            name = f"{path.parent.name}/{path.name}:{frame.f_code.co_name}"
            inner = inner or name
            outer = name
        frame = frame.f_back
    return f"{outer} -> {inner}" if inner else "(outside refdesk)"


def _count_calls() -> None:
    for engine in (database.SqliteDatabase, database.PostgresDatabase):
        engine._run_alone = _counted(engine._run_alone)  # type: ignore[method-assign]
    for name in ("fetchall", "execute"):
        setattr(database.PostgresTx, name, _statement(getattr(database.PostgresTx, name)))
    import asyncpg

    for name in ("execute", "fetch", "fetchval", "fetchrow"):
        setattr(asyncpg.Connection, name, _round_trip(getattr(asyncpg.Connection, name)))


def _counted(original: Any) -> Any:
    async def run_alone(self: database.Database, unit: Any, writing: bool) -> Any:
        CALLS[_where(sys._getframe(1))] += 1
        return await original(self, unit, writing)

    return run_alone


def _statement(original: Any) -> Any:
    async def counted(self: database.PostgresTx, sql: str, params: Any = None) -> Any:
        STATEMENTS[0] += 1
        return await original(self, sql, params)

    return counted


def _round_trip(original: Any) -> Any:
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        ROUND_TRIPS[0] += 1
        return await original(self, *args, **kwargs)

    return counted


def _report(title: str, n: int, unit: str = "per message") -> dict[str, Any]:
    """Print the counts since the last report, return them, and start counting afresh."""
    trips = sum(CALLS.values()) / n
    statements = STATEMENTS[0] / n if STATEMENTS[0] else None
    round_trips = ROUND_TRIPS[0] / n if STATEMENTS[0] else None
    shown = ""
    if statements is not None and round_trips is not None:
        shown = f", {statements:.1f} statements ({round_trips:.1f} round trips to the server)"
    print(f"{title}: {trips:.1f} database trips{shown} {unit}")
    for where, count in CALLS.most_common():
        print(f"  {count / n:6.2f}  {where}")
    found = {
        "trips": round(trips, 2),
        "statements": None if statements is None else round(statements, 2),
        "round_trips": None if round_trips is None else round(round_trips, 2),
        "by_caller": {where: round(count / n, 2) for where, count in CALLS.most_common()},
    }
    CALLS.clear()
    STATEMENTS[0] = ROUND_TRIPS[0] = 0
    return found


async def main(n: int, idle: int, database_url: str | None = None) -> dict[str, Any]:
    """Count; the store in SQLite, or in the (empty) PostgreSQL database at ``database_url``."""
    _count_calls()
    root = Path(tempfile.mkdtemp(prefix="refdesk-sqlite-calls-"))
    hs_port, as_port, widget_port = free_port(), free_port(), free_port()
    data = config_data(root, hs_port, as_port, widget_port, "WARNING", database_url)
    write_yaml(root / "refdesk.yaml", data)
    config = load_config(root / "refdesk.yaml")
    write_yaml(root / "registration.yaml", registration(bridge_settings(config)))
    synapse = EmbeddedSynapse(
        data_dir=root / "synapse",
        port=hs_port,
        registration_files=[root / "registration.yaml"],
        extra_config={"bcrypt_rounds": 4},
    )
    await synapse.start()
    desk = RefDesk(config)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    librarian: MatrixUser | None = None
    counts: dict[str, Any] = {"store": "sqlite" if database_url is None else "postgres", "n": n}
    try:
        await synapse.register_user(LIBRARIAN, PASSWORD)
        await desk.start()
        librarian = await MatrixUser.login(
            synapse.url, f"@{LIBRARIAN}:localhost", PASSWORD, auto_join=True
        )
        visitor = Visitor(http, f"http://127.0.0.1:{widget_port}", "Counter")
        await visitor.start_session()
        await visitor.connect()
        first = librarian.inbox.expect("first")
        await visitor.send("first", "first")
        room_id = (await wait_arrival(first, 60, "first message")).room_id
        assert room_id is not None
        answer = visitor.inbox.expect("answer")
        await librarian.send(room_id, "answer")
        await wait_arrival(answer, 60, "first answer")
        await asyncio.sleep(2)  # let the room's setup traffic settle
        CALLS.clear()
        STATEMENTS[0] = ROUND_TRIPS[0] = 0
        for i in range(n):
            future = librarian.inbox.expect(f"v{i}")
            await visitor.send(f"v{i}", f"v{i}")
            await wait_arrival(future, 30, f"v{i}")
        await asyncio.sleep(1)
        counts["visitor_to_librarian"] = _report("visitor → librarian", n)
        for i in range(n):
            future = visitor.inbox.expect(f"l{i}")
            await librarian.send(room_id, f"l{i}")
            await wait_arrival(future, 30, f"l{i}")
        await asyncio.sleep(1)
        counts["librarian_to_visitor"] = _report("librarian → visitor", n)
        await visitor.close()
        if idle:
            counts["new_chat"] = await _new_chat_with_idle(http, widget_port, librarian, idle)
    finally:
        if librarian is not None:
            await librarian.close()
        await http.close()
        await desk.stop()
        await synapse.stop()
    return counts


async def _new_chat_with_idle(
    http: aiohttp.ClientSession, widget_port: int, librarian: MatrixUser, idle: int
) -> dict[str, Any]:
    """One whole new chat (first message, claim, end) while ``idle`` other visitors wait."""
    base = f"http://127.0.0.1:{widget_port}"
    crowd = [Visitor(http, base, f"Idle {i}") for i in range(idle)]
    for visitor in crowd:
        await visitor.start_session()
        await visitor.connect()
    await asyncio.sleep(2)
    CALLS.clear()
    newcomer = Visitor(http, base, "Newcomer")
    await newcomer.start_session()
    await newcomer.connect()
    first = librarian.inbox.expect("new first")
    await newcomer.send("new first", "new-first")
    room_id = (await wait_arrival(first, 60, "new first")).room_id
    assert room_id is not None
    answer = newcomer.inbox.expect("new answer")
    await librarian.send(room_id, "new answer")
    await wait_arrival(answer, 60, "new answer")
    await newcomer.end()
    await asyncio.sleep(2)
    found = _report(f"one new chat (start, claim, end) with {idle} idle visitors connected", 1, "")
    for visitor in [newcomer, *crowd]:
        await visitor.close()
    return {"idle": idle, **found}


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    if not args.postgres:
        return await main(args.n, args.idle, args.database)
    async with EmbeddedPostgres() as server:
        return await main(args.n, args.idle, server.url())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m bench.sqlite_calls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", type=int, default=100, help="messages per direction")
    parser.add_argument(
        "--idle", type=int, default=0, help="then count one new chat with this many idle visitors"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database",
        metavar="URL",
        help="the store in this (empty) PostgreSQL database, postgresql://…",
    )
    where.add_argument(
        "--postgres",
        action="store_true",
        help="the store in a PostgreSQL server started for the count (refdesk.postgres)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the counts here")
    args = parser.parse_args()
    if args.database and not args.database.startswith(("postgresql://", "postgres://")):
        parser.error("--database takes a postgresql:// URL")
    result = asyncio.run(_run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

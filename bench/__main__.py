"""``python -m bench [--quick]``: refdesk against the homeserver's own speed, in one run.

See docs/BENCHMARKS.md for what is measured and what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proc import REPO
from bench.report import machine, table, target_rows
from bench.run import Plan, run, run_startup
from bench.stack import STORES
from refdesk.postgres import PostgresNotFound, find_binaries

RESULTS = REPO / "bench" / "results"


def _clean(value: Any) -> Any:
    """NaN and infinity are not JSON: write them as null."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (smoke check, < 3 min)")
    parser.add_argument(
        "--store",
        choices=(*STORES, "both"),
        default="sqlite",
        help="refdesk's store: SQLite (default), PostgreSQL (a server started for the run),"
        " or both, one after the other",
    )
    parser.add_argument("--output", type=Path, help=f"JSON file (default {RESULTS}/latest.json)")
    parser.add_argument("--idle", type=_ints, help="idle connection steps, e.g. 0,1000,5000")
    parser.add_argument("--chats", type=int, help="active chats in capacity and throughput")
    parser.add_argument("--rates", type=_ints, help="offered visitor messages/s, e.g. 50,100,200")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="refdesk's logging.level during the run (default INFO, as `refdesk up`)",
    )
    parser.add_argument(
        "--synapse-extra",
        type=json.loads,
        default={},
        help='JSON merged over the homeserver.yaml, e.g. \'{"presence": {"enabled": false}}\'',
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the benchmark itself")
    return parser


async def run_all(plan: Plan, out_dir: Path, keep: bool, stores: tuple[str, ...]) -> dict[str, Any]:
    """`refdesk up` once, then every phase once per store."""
    results = await run_startup(plan)
    results["stores"] = {}
    for store in stores:
        print(f"[bench] === store: {store} ===", flush=True)
        results["stores"][store] = await run(plan, out_dir, keep, store)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stores = STORES if args.store == "both" else (args.store,)
    if "postgres" in stores:
        try:
            find_binaries()
        except PostgresNotFound as exc:
            print(f"python -m bench --store {args.store}: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("nio").setLevel(logging.ERROR)
    plan = Plan.quick() if args.quick else Plan()
    plan = replace(plan, log_level=args.log_level, synapse_extra=args.synapse_extra)
    if args.idle:
        plan = replace(plan, idle_steps=args.idle if args.idle[0] == 0 else (0, *args.idle))
    if args.chats:
        plan = replace(plan, chats=args.chats)
    if args.rates:
        plan = replace(plan, rates=args.rates)
    output: Path = args.output or RESULTS / "latest.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    results: dict[str, Any] = {
        "mode": plan.mode,
        "started_at": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "plan": asdict(plan),
    }
    results.update(asyncio.run(run_all(plan, output.parent, args.keep, stores)))
    results["duration_s"] = round(time.monotonic() - t0, 1)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = target_rows(results)
    output.write_text(json.dumps(_clean(results), indent=2, ensure_ascii=False) + "\n")
    print()
    print(table(results))
    print(f"\nWrote {output} ({results['duration_s']:.0f} s)")
    parts = [results, *results["stores"].values()]
    failed = [
        k for part in parts for k, v in part.items() if isinstance(v, dict) and v.get("error")
    ]
    return 1 if failed or any(part.get("error") for part in parts) else 0


if __name__ == "__main__":
    sys.exit(main())

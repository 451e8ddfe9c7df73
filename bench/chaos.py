"""``python -m bench.chaos``: does refdesk lose, duplicate or reorder anything when it crashes?

One run, on this machine, against its own Synapse (``EmbeddedSynapse`` on free ports,
``bcrypt_rounds: 4``) and its own refdesk (``python -m refdesk.cli serve`` in a child process,
one log file per start), both in a temporary directory that is kept:

* Two visitors hold a numbered conversation (``--messages`` in all, half each) at a steady
  pace over ``--duration`` seconds: visitor A on the WebSocket (``A-0001`` …), visitor B on the
  long-poll fallback (``B-0001`` …). A librarian on matrix-nio (``@sari``) joins every room it is
  invited to and answers every visitor message it sees (``L-A-0001`` …). A second on-duty
  librarian (``@dewi``) never answers: it is there to be rung.
* Meanwhile refdesk is SIGKILLed ``--kills`` times at random moments (and restarted at once),
  the homeserver is restarted ``--hs-restarts`` times (``--hs-sigkills`` of them by SIGKILL, the
  others by a clean stop), and a new chat starts every ``--new-chat-every`` seconds with one
  first message (``N001-0001`` …), which the librarian answers too.
* The last message is sent once all that is over. Then the run waits (at most ``--settle``
  seconds) until both sides have everything: the **convergence time**, from the last send.
* Then a fresh nio client reads every room's full history (as the desk bot, through
  ``/messages``) and the visitor API gives every visitor's; the report counts, per session and
  direction, what was **lost**, **duplicated** and **out of order**; checks that **every chat
  rang** the on-duty librarians (each was invited to the chat's room and mentioned, in
  ``m.mentions.user_ids``, by a bot ``m.notice`` there); and that **no notice was posted
  twice**: in a session room no two bot notices have the same body (nobody releases or
  transfers a chat in this run), and the desk room has exactly one queue notice per session,
  not counting its ``m.replace`` edits.

Usage::

    python -m bench.chaos                 # the full run: 1000 messages, 100 kills, 10 + 3 restarts
    python -m bench.chaos --ci            # the small run of tests/test_chaos.py (≈ 2 minutes)
    python -m bench.chaos --messages 200 --kills 20 --hs-restarts 2 --hs-sigkills 1 --seed 7
    python -m bench.chaos --json          # the report as JSON on stdout

Options: ``--messages N``, ``--duration S`` (the sending window), ``--kills N``,
``--hs-restarts N``, ``--hs-sigkills N``, ``--new-chat-every S`` (0: none), ``--seed N``,
``--settle S`` (the bounded wait for convergence), ``--budget S`` (wall clock for the whole
run: it always ends), ``--target S`` (convergence target, 10 s), ``--log-level``,
``--data-dir DIR``, ``--json``, ``-v``.

Exit status: 0 when nothing was lost, duplicated or reordered, every chat rang, no notice was
posted twice and the run converged within the target; 1 otherwise; 2 when the harness itself
failed. The data directory (path in the report) keeps ``logs/refdesk-NNN.log`` (one per start),
``synapse/homeserver.log``, ``chaos-events.log`` (what was killed when, in seconds since the
start) and ``report.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bench.chaos_run import LEGS, Plan, run_chaos

__all__ = ["LEGS", "Plan", "exit_status", "main", "run_chaos", "text_report"]


def text_report(results: dict[str, Any]) -> str:
    plan = results["plan"]
    lines = [
        f"refdesk chaos run: {plan['messages']} messages over {plan['duration']:.0f} s, "
        f"{plan['refdesk_kills']} refdesk kills, {plan['homeserver_restarts']} homeserver "
        f"restarts ({plan['homeserver_sigkills']} by SIGKILL), a new chat every "
        f"{plan['new_chat_every']:g} s, seed {plan['seed']}, store {plan.get('store', 'sqlite')}",
        f"data dir: {results['data_dir']}  (logs/refdesk-NNN.log, synapse/homeserver.log, "
        "chaos-events.log, report.json)",
        f"took {results.get('duration_s', 0):.0f} s",
        "",
    ]
    sessions = results.get("sessions")
    if sessions:
        lines.append(
            f"{'session':<22}{'direction':<24}{'sent':>6}{'lost':>6}{'dup':>6}{'order':>7}"
        )
        for label, one in sessions.items():
            name = {
                "A": "A (WebSocket)",
                "B": "B (long-poll)",
            }.get(label, f"new chats ({one.get('chats', 0)})")
            for leg, shown in (
                ("visitor_to_librarian", "visitor → room"),
                ("librarian_to_visitor", "librarian → visitor"),
                ("visitor_echo", "visitor's own history"),
            ):
                t = one[leg]
                lines.append(
                    f"{name:<22}{shown:<24}{t['expected']:>6}{t['lost']:>6}"
                    f"{t['duplicated']:>6}{t['out_of_order']:>7}"
                )
                name = ""
        ringing = results["ringing"]
        notices = results["notices"]
        lines += [
            "",
            f"ringing: {ringing['rang']} of {ringing['chats']} chats rang both on-duty librarians",
            f"notices: {len(notices['session_rooms_repeated'])} repeated in session rooms, "
            f"{len(notices['desk_room_repeated'])} in the desk room; queue notices missing "
            f"{len(notices['queue_notices_missing'])}, repeated "
            f"{len(notices['queue_notices_repeated'])}",
        ]
    conv = results.get("convergence")
    if conv:
        if conv["converged"]:
            lines.append(
                f"convergence: {conv['seconds']:.1f} s after the last send "
                f"(target ≤ {conv['target_s']:.0f} s)"
            )
        else:
            lines.append(f"convergence: not within {conv['bounded_wait_s']:.0f} s")
    chaos = results.get("chaos")
    if chaos:
        h, d = chaos["refdesk_start_to_healthy_s"], chaos["homeserver_down_s"]
        lines.append(
            f"chaos: refdesk killed {chaos['refdesk_kills']}× (start → answering p50 "
            f"{h['p50']} s, max {h['max']} s), homeserver restarted "
            f"{chaos['homeserver_restarts']}× (down p50 {d['p50']} s, max {d['max']} s)"
        )
    actors = results.get("actors")
    if actors:
        lines.append(f"visitors: {actors['visitors']}")
        lines.append(f"librarian: {actors['librarian']}")
    for title, key in (
        ("VIOLATIONS", "violations"),
        ("targets missed", "targets_missed"),
        ("HARNESS ERRORS", "harness_errors"),
    ):
        items = results.get(key) or []
        if items:
            lines += ["", f"{title} ({len(items)}):", *(f"  - {item}" for item in items)]
    if not (results.get("violations") or results.get("harness_errors")):
        lines += ["", "nothing lost, duplicated or reordered; every chat rang; no repeated notice"]
    return "\n".join(lines)


def exit_status(results: dict[str, Any]) -> int:
    if results.get("harness_errors"):
        return 2
    return 1 if results.get("violations") or results.get("targets_missed") else 0


def build_parser() -> argparse.ArgumentParser:
    full = Plan()
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Crash refdesk and its homeserver during a conversation; count what broke.",
    )
    parser.add_argument("--ci", action="store_true", help="the small CI run (≈ 2 minutes)")
    parser.add_argument("--messages", type=int, help=f"visitor messages (default {full.messages})")
    parser.add_argument("--duration", type=float, help="sending window in s (default 420)")
    parser.add_argument("--kills", type=int, help="refdesk SIGKILLs (default 100)")
    parser.add_argument("--hs-restarts", type=int, help="homeserver restarts (default 10)")
    parser.add_argument("--hs-sigkills", type=int, help="... of them by SIGKILL (default 3)")
    parser.add_argument("--new-chat-every", type=float, help="s between new chats (default 5)")
    parser.add_argument("--seed", type=int, help="random seed (default 1)")
    parser.add_argument("--settle", type=float, help="bounded wait for convergence (default 60)")
    parser.add_argument("--budget", type=float, help="wall clock for the run in s (default 840)")
    parser.add_argument("--target", type=float, help="convergence target in s (default 10)")
    parser.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING"), help="refdesk's log level (INFO)"
    )
    parser.add_argument("--data-dir", type=Path, help="where to keep everything (a new tmp dir)")
    parser.add_argument(
        "--store", choices=("sqlite", "postgres"), help="the desk's store (default sqlite)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the harness itself")
    return parser


def plan_from_args(args: argparse.Namespace) -> Plan:
    changes: dict[str, Any] = {}
    for option, key in (
        ("messages", "messages"),
        ("duration", "duration"),
        ("kills", "refdesk_kills"),
        ("hs_restarts", "homeserver_restarts"),
        ("hs_sigkills", "homeserver_sigkills"),
        ("new_chat_every", "new_chat_every"),
        ("seed", "seed"),
        ("settle", "settle"),
        ("budget", "budget"),
        ("target", "target"),
        ("log_level", "log_level"),
        ("store", "store"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[key] = value
    if args.ci:
        return Plan.ci(**changes)
    return Plan(**changes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("nio").setLevel(logging.ERROR)
    try:
        plan = plan_from_args(args)
        plan.check()
    except ValueError as exc:
        print(f"bad options: {exc}", file=sys.stderr)
        return 2
    results = asyncio.run(run_chaos(plan, args.data_dir, progress=not args.json))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        print(text_report(results))
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())

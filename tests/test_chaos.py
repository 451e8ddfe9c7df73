"""Crashes lose, duplicate and reorder nothing: the chaos run (bench/chaos.py) in small.

About two minutes: 100 numbered messages (visitor A on the WebSocket, B on the long poll), a
librarian on matrix-nio answering each, refdesk SIGKILLed 10 times, the homeserver restarted
twice (once by SIGKILL), a new chat every 8 s. The timing target (convergence within 10 s)
belongs to the benchmark; here convergence only has to happen within the bounded wait, and the
seconds are in the printed report. The counting itself is tested first, without any server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import LEGS, Plan, run_chaos, text_report
from bench.chaos_audit import longest_increasing, queue_notices, repeated_bodies, ring_gaps, tally

BOT = "@refdesk:localhost"
SARI = "@sari:localhost"
DEWI = "@dewi:localhost"


def test_tally_counts_lost_duplicated_and_reordered() -> None:
    sent = ["A-0001", "A-0002", "A-0003", "A-0004", "A-0005"]
    seen = ["A-0001", "A-0003", "A-0002", "A-0003", "A-0005", "X-0001"]
    t = tally(sent, seen)
    assert t.lost == ["A-0004"]
    assert t.duplicated == {"A-0003": 1}
    assert len(t.out_of_order) == 1  # one of A-0002/A-0003 has to move
    assert t.unexpected == ["X-0001"]
    assert tally(sent, sent).ok


def test_one_late_message_is_one_out_of_order() -> None:
    sent = [f"B-{i:04d}" for i in range(1, 101)]
    late_first = [sent[-1], *sent[:-1]]  # B-0100 shown before all the others
    assert tally(sent, late_first).out_of_order == ["B-0100"]
    assert len(longest_increasing([3, 1, 2, 5, 4, 6])) == 4


def _notice(body: str, mentions: list[str] | None = None, edit: bool = False) -> dict:
    content: dict = {"msgtype": "m.notice", "body": body}
    if mentions is not None:
        content["m.mentions"] = {"user_ids": mentions}
    if edit:
        content["m.relates_to"] = {"rel_type": "m.replace", "event_id": "$x"}
    return {"type": "m.room.message", "sender": BOT, "content": content}


def _invite(user_id: str) -> dict:
    return {
        "type": "m.room.member",
        "sender": BOT,
        "state_key": user_id,
        "content": {"membership": "invite"},
    }


def test_ringing_needs_an_invite_and_a_mention_for_each_librarian() -> None:
    rang = [_invite(SARI), _invite(DEWI), _notice("New chat: …", [SARI, DEWI])]
    assert ring_gaps(rang, [SARI, DEWI], BOT) == []
    assert ring_gaps(rang[:2], [SARI, DEWI], BOT) == [
        f"{SARI} not mentioned",
        f"{DEWI} not mentioned",
    ]
    assert ring_gaps([_invite(SARI), rang[2]], [SARI, DEWI], BOT) == [f"{DEWI} not invited"]


def test_queue_notices_count_originals_not_edits() -> None:
    desk = [
        _notice("⏳ Waiting · Chaos A · Literature · “A-0001” · since 10:00", [SARI]),
        _notice("✅ Sari is serving · Chaos A · Literature · “A-0001” · since 10:00", edit=True),
        _notice("⏳ Waiting · Chaos AB · Literature · “AB-0001” · since 10:01"),
    ]
    assert queue_notices(desk, BOT, "Chaos A") == 1
    assert queue_notices(desk + desk[:1], BOT, "Chaos A") == 2
    assert repeated_bodies(desk + desk[:1]) == {desk[0]["content"]["body"]: 2}


@pytest.mark.timeout(420)
async def test_crashes_lose_duplicate_and_reorder_nothing(tmp_path: Path) -> None:
    results = await run_chaos(Plan.ci(), tmp_path / "chaos", progress=True)
    report = text_report(results)
    print(report)
    assert not results["harness_errors"], report
    problems = []
    for label, session in results["sessions"].items():
        for leg in LEGS:
            for what in ("lost", "duplicated", "out_of_order"):
                if session[leg][what]:
                    problems.append(f"{label} {leg}: {session[leg][what]} {what}")
    ringing = results["ringing"]
    if ringing["rang"] != ringing["chats"]:
        problems.append(f"rang {ringing['rang']} of {ringing['chats']} chats")
    for key, found in results["notices"].items():
        if found:
            problems.append(f"{key}: {found}")
    if not results["convergence"]["converged"]:
        problems.append(f"did not converge within {results['convergence']['bounded_wait_s']:.0f} s")
    assert not problems, f"{problems}\n\n{report}"
    assert not results["violations"], report

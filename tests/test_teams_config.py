"""desk.teams, desk.routing and desk.max_active_chats: read, checked with the key path, and
turned into the core's rules."""

from __future__ import annotations

import copy
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from refdesk.config import ConfigError, parse_config
from refdesk.embedded import embedded_config_data
from refdesk.wiring import desk_rules, team_rules
from rooms.session import VisitorForm
from rooms.teams import Assignment

ROOT = Path(__file__).resolve().parent.parent
SARI, DEWI, KEPALA = "@sari:localhost", "@dewi:localhost", "@kepala:localhost"


def config(teams: Any = None, routing: Any = None, **desk: Any) -> dict[str, Any]:
    data = embedded_config_data(
        widget_port=8080, homeserver_port=8008, appservice_port=29330, librarians=[SARI, DEWI]
    )
    data["desk"]["supervisors"] = [KEPALA]
    if teams is not None:
        data["desk"]["teams"] = teams
    if routing is not None:
        data["desk"]["routing"] = routing
    data["desk"].update(desk)
    return data


TEAMS = [
    {"id": "membership", "name": "Membership", "members": [SARI, KEPALA]},
    {
        "id": "bogor",
        "name": "Branch Bogor",
        "members": [DEWI],
        "assignment": "fair",
        "accept_within": 45,
        "overflow_after": 90,
        "max_active_chats": 2,
        "first_response_target": 120,
        "hours": {
            "weekly": {"monday": ["08:00-12:00"]}
            | dict.fromkeys(
                ("tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"), "closed"
            )
        },
    },
]
ROUTING = [
    {"team": "bogor", "pages": ["*/bogor/*"]},
    {"team": "membership", "topics": ["membership"]},
]


def test_teams_and_routes_become_the_cores_rules() -> None:
    parsed = parse_config(config(TEAMS, ROUTING, max_active_chats=4, first_response_target=240))
    rules = team_rules(parsed)
    assert [t.id for t in desk_rules(parsed).queue.teams.teams] == ["membership", "bogor"]
    membership, bogor = rules.teams
    assert membership.members == (SARI, KEPALA) and membership.hours is None
    assert membership.assignment is Assignment.RING_ALL
    assert (membership.overflow_after, membership.accept_within) == (60, 60)
    assert membership.first_response_target == 240  # the desk's
    assert membership.max_active_chats is None and rules.cap(membership) == 4
    assert bogor.assignment is Assignment.FAIR and rules.cap(bogor) == 2
    assert (bogor.accept_within, bogor.overflow_after, bogor.first_response_target) == (45, 90, 120)
    monday_9 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 09:00 WIB
    monday_13 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    form = VisitorForm("Budi", "b@example.org", "membership", page_url="https://x.id/bogor/a")
    assert rules.route(form, monday_9) == bogor
    assert rules.route(form, monday_13) == membership  # the branch has closed
    assert rules.route(VisitorForm("B", "b@example.org", "other"), monday_9) is None
    # Without teams: none, as before.
    assert team_rules(parse_config(config())).teams == ()


@pytest.mark.parametrize(
    ("teams", "routing", "key", "words"),
    [
        (
            [{**TEAMS[0], "members": ["@x:localhost"]}],
            [],
            "desk.teams[0].members[0]",
            "not one of desk.librarians or desk.supervisors",
        ),
        ([{**TEAMS[0], "members": []}], [], "desk.teams[0].members", "at least one"),
        ([{**TEAMS[0], "members": [SARI, SARI]}], [], "desk.teams[0].members[1]", "twice"),
        ([{**TEAMS[0], "members": ["sari"]}], [], "desk.teams[0].members[0]", "Matrix user ID"),
        ([TEAMS[0], {**TEAMS[0], "name": "x"}], [], "desk.teams[1].id", "duplicate"),
        ([{**TEAMS[0], "id": "Membership!"}], [], "desk.teams[0].id", "a-z"),
        (
            [{**TEAMS[0], "assignment": "random"}],
            [],
            "desk.teams[0].assignment",
            "ring_all or fair",
        ),
        ([{**TEAMS[0], "accept_within": 0}], [], "desk.teams[0].accept_within", "between"),
        ([{**TEAMS[0], "overflow_after": "soon"}], [], "desk.teams[0].overflow_after", "integer"),
        ([{**TEAMS[0], "colour": "red"}], [], "desk.teams[0].colour", "not a known setting"),
        (
            [{**TEAMS[0], "hours": {"weekly": {"monday": "9-12"}}}],
            [],
            "desk.teams[0].hours.weekly.monday",
            "HH:MM",
        ),
        (
            [{**TEAMS[0], "hours": {"when_closed": "hide"}}],
            [],
            "desk.teams[0].hours.when_closed",
            "the desk's alone",
        ),
        (
            TEAMS,
            [{"team": "circulation", "topics": ["membership"]}],
            "desk.routing[0].team",
            "unknown team 'circulation'",
        ),
        (
            TEAMS,
            [{"team": "bogor", "topics": ["astrology"]}],
            "desk.routing[0].topics[0]",
            "unknown topic",
        ),
        (
            TEAMS,
            [{"team": "bogor", "pages": ["bogor"]}],
            "desk.routing[0].pages[0]",
            "write *bogor*",
        ),
        (TEAMS, [{"team": "bogor", "pages": ["*/a b*"]}], "desk.routing[0].pages[0]", "spaces"),
        (TEAMS, [{"team": "bogor", "pages": ["**"]}], "desk.routing[0].pages[0]", "every page"),
        (TEAMS, [{"team": "bogor", "pages": [3]}], "desk.routing[0].pages[0]", "URL pattern"),
        (TEAMS, [{"team": "bogor"}], "desk.routing[0]", "topics, pages or both"),
        (TEAMS, [{"team": "bogor", "topic": "x"}], "desk.routing[0].topic", "not a known"),
    ],
)
def test_errors_name_the_key(teams: Any, routing: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(copy.deepcopy(teams), copy.deepcopy(routing)))
    assert info.value.path == key, str(info.value)
    assert words in info.value.problem


def test_max_active_chats_is_checked() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config(max_active_chats=0))
    assert info.value.path == "desk.max_active_chats"


def test_the_samples_teams_and_routing_work_when_uncommented() -> None:
    sample = (ROOT / "config.sample.yaml").read_text()
    data = yaml.safe_load(sample)
    data["appservice"]["as_token"] = "a" * 40
    data["appservice"]["hs_token"] = "b" * 40
    lines = sample.splitlines()
    start = lines.index("  #max_active_chats: 4")
    block = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        block.append(re.sub(r"^(\s*)#(\S.*|  .*)$", r"\1\2", line))
    block = [line for line in block if not line.lstrip().startswith("# ")]
    desk = yaml.safe_load(textwrap.dedent("\n".join(block)))
    assert set(desk) == {"max_active_chats", "teams", "routing"}
    data["desk"].update(desk)
    rules = team_rules(parse_config(data))
    assert [t.id for t in rules.teams] == ["membership"]
    assert rules.teams[0].hours is not None and rules.max_active_chats == 4

"""Teams and routing: plain rules the composition root builds from the config.

A *team* (membership, literature search, e-resources, a branch) is some of the desk's
librarians with their own hours, first-reply target and way of being rung: ``ring_all`` (every
member on duty and available is rung, as the desk rings everyone) or ``fair`` (the chat is
offered to one member at a time: the fewest active chats first, then the longest idle; each
has ``accept_within`` seconds to take it). A chat its team does not take within
``overflow_after`` seconds rings the rest of the desk. *Routes* send a chat to a team by the
topic the visitor chose and, optionally, the page they are on; a chat no route sends anywhere
goes to the whole desk. What happens with these rules is in rooms/assignment.py.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from rooms.hours import ServiceHours
from rooms.ids import UserID
from rooms.session import VisitorForm


class Assignment(enum.StrEnum):
    RING_ALL = "ring_all"
    FAIR = "fair"


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    members: tuple[UserID, ...]
    hours: ServiceHours | None = None  # None: the desk's hours
    first_response_target: int | None = None  # seconds; None: the desk's
    overflow_after: float = 60.0  # seconds unclaimed before the rest of the desk is rung
    assignment: Assignment = Assignment.RING_ALL
    accept_within: float = 60.0  # fair: seconds an offered librarian has to take the chat
    max_active_chats: int | None = None  # None: the desk's

    def is_open(self, at: datetime) -> bool:
        """Within the team's own hours (a team without hours follows the desk's)."""
        return self.hours is None or self.hours.is_open(at)


def page_pattern(pattern: str) -> re.Pattern[str]:
    """A URL pattern where ``*`` is any text, matched against the whole address, ignoring case
    (as the widget matches ``widget.invitation.pages``)."""
    parts = (re.escape(part) for part in pattern.split("*"))
    return re.compile("^" + ".*".join(parts) + "$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Route:
    """Chats with one of ``topics`` (any, when empty) on a page matching one of ``pages``
    (any, when empty) go to ``team``."""

    team: str
    topics: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()

    @cached_property
    def _patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(page_pattern(p) for p in self.pages)

    def matches(self, form: VisitorForm) -> bool:
        if self.topics and form.topic not in self.topics:
            return False
        if self.pages:
            page = form.page_url or ""
            return any(p.match(page) for p in self._patterns)
        return True


@dataclass(frozen=True)
class TeamRules:
    teams: tuple[Team, ...] = ()
    routes: tuple[Route, ...] = ()
    max_active_chats: int | None = None  # per librarian, desk-wide; None: no limit

    def team(self, team_id: str | None) -> Team | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def find(self, word: str) -> Team | None:
        """A team by its id or name, ignoring case (``!duty on membership``)."""
        word = word.strip().lower()
        return next((t for t in self.teams if word in (t.id.lower(), t.name.lower())), None)

    def teams_of(self, user_id: str) -> tuple[Team, ...]:
        return tuple(t for t in self.teams if user_id in t.members)

    def route(self, form: VisitorForm, at: datetime) -> Team | None:
        """The team of the first route that matches, skipping teams outside their hours;
        None: the whole desk."""
        for route in self.routes:
            team = self.team(route.team)
            if team is not None and route.matches(form) and team.is_open(at):
                return team
        return None

    def cap(self, team: Team | None) -> int | None:
        """Most open chats a librarian may have when taking a chat of ``team``."""
        if team is not None and team.max_active_chats is not None:
            return team.max_active_chats
        return self.max_active_chats


NO_TEAMS = TeamRules()

__all__ = ["NO_TEAMS", "Assignment", "Route", "Team", "TeamRules"]

"""Intents: what the desk has decided to tell the chat network, stored before anyone is told.

An intent is written in the same transaction as the state change that causes it (a claim and
its notice, a first message and the ringing it starts), then performed from the store by the
chat-network adapter: at least once, in order per lane, again after a restart. Intents speak the
desk's words (ring, claimed, closed); the adapter decides what each means on its network.

A lane is a session id (everything about one chat happens in order) or ``desk`` (desk-wide
notices and the bot's own housekeeping).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.session import Message, Session

DESK_LANE = "desk"


class IntentKind(enum.StrEnum):
    MESSAGE = "message"  # deliver a stored message into the session's room
    VISITOR_EDIT = "visitor_edit"  # the visitor edited their message: an m.replace as the ghost
    VISITOR_DELETE = "visitor_delete"  # the visitor deleted their message: redact it
    RING = "ring"  # the chat (re)entered the queue: ring the librarians in ``users``
    OFFERED = "offered"  # a team's fair assignment: offer the chat to ``user`` (ring them alone)
    CLAIMED = "claimed"  # a librarian claimed it: tell the room, withdraw other invitations
    TRANSFERRED = "transferred"  # handed to another librarian: ring them
    ESCALATED = "escalated"  # waited too long: ring on-duty librarians and supervisors
    CLOSED = "closed"  # the chat ended: tell the room, let librarians go
    FEEDBACK = "feedback"  # the visitor rated the chat
    VERIFICATION_ASKED = "verification_asked"
    VERIFICATION_DONE = "verification_done"
    READ = "read"  # the visitor has read the librarians' messages up to ``message_id``
    OFFLINE_WAITING = "offline_waiting"  # the desk opened with offline messages waiting
    SAY = "say"  # the adapter's own notice (a command's answer), stored with its cause
    JOIN = "join"  # the adapter's own housekeeping: the bot accepts an invitation
    PURGE_ROOM = "purge_room"  # the chat's retention ran out: remove its room's contents
    PURGE_MEDIA = "purge_media"  # a chat's files outlived their retention: delete them there
    PRIVACY_EXPORT = "privacy_export"  # a supervisor asked for a visitor's data: send the file
    REPORT = "report"  # a viewer asked for a report: summary, chart, and their dashboard link
    PIN_DASHBOARD = "pin_dashboard"  # pin (or unpin) the report dashboard in the desk room
    PARTNER_RING = "partner_ring"  # rolled over to partner libraries: ring their librarians
    PARTNER_POLICY = "partner_policy"  # a partner's librarian joined: post that library's policy
    TAKEN_BACK = "taken_back"  # one of ours took the chat back from a partner's librarian


@dataclass(frozen=True)
class Intent:
    id: int
    lane: str
    kind: IntentKind
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0


@dataclass(frozen=True)
class Work:
    """An intent of a lane with what performing it needs, read (or known) in the same trip."""

    intent: Intent
    session: Session | None  # the lane's session (None for the desk lane)
    message: Message | None  # the message an intent is about, if any

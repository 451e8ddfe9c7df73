"""The command registry: how a command is declared, the context it runs in, the dispatch of
one command line, and !help generated from the declarations.

Topic modules (:mod:`bridge.commands.desk`, :mod:`bridge.commands.session`) declare their
commands with :func:`command`; unknown commands get a pointer to !help; an unexpected error gets
a short reference in the room and the traceback in the log.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from bridge.errors import is_transient
from bridge.matrix_api import MatrixClient
from rooms.desk import Desk
from rooms.ids import UserID
from rooms.queue import QueueError
from rooms.session import Session

log = logging.getLogger("refdesk.bridge.commands")

SESSION = "session"  # a session room
DESK = "desk"  # the desk room, or a direct chat with the bot


@dataclass
class Context:
    desk: Desk
    client: MatrixClient
    room_id: str
    sender: UserID
    sender_name: str
    event_id: str
    session: Session | None
    names: Callable[[str], Awaitable[str]]
    timezone: str
    topic_labels: Mapping[str, str] = field(default_factory=dict)  # in the desk's language
    # A link where this librarian may read a past chat's transcript (None: they may not, or
    # there is no such page); without one, !search points to the chat's room.
    transcript_link: Callable[[Session, UserID], str | None] | None = None

    def topic(self, session: Session) -> str:
        """The label of the visitor's topic (its id if it has none)."""
        return self.topic_labels.get(session.form.topic, session.form.topic)

    def need_session(self) -> Session:
        if self.session is None:
            raise QueueError("This command works in a session room.")
        return self.session


Handler = Callable[[Context, str], Awaitable[str | None]]


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    help: str
    where: frozenset[str]
    handler: Handler


REGISTRY: dict[str, Command] = {}


def command(
    name: str, help: str, *, args: str = "", where: tuple[str, ...] = (SESSION,)
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        REGISTRY[name] = Command(name, args, help, frozenset(where), handler)
        return handler

    return register


def help_text(place: str) -> str:
    lines = ["Commands here:"]
    for cmd in sorted(REGISTRY.values(), key=lambda c: c.name):
        if place in cmd.where:
            usage = f"!{cmd.name}" + (f" {cmd.args}" if cmd.args else "")
            lines.append(f"{usage}: {cmd.help}")
    if place == SESSION:
        lines.append("Anything else you write here reaches the visitor.")
    return "\n".join(lines)


@command("help", "this list", where=(SESSION, DESK))
async def _help(ctx: Context, args: str) -> str:
    return help_text(SESSION if ctx.session is not None else DESK)


async def dispatch(ctx: Context, text: str) -> str | None:
    """Run one command line; returns the reply for the room (None: nothing to say)."""
    word, _, args = text[1:].strip().partition(" ")
    name = word.lower()
    place = SESSION if ctx.session is not None else DESK
    cmd = REGISTRY.get(name)
    if cmd is None:
        return f"Unknown command !{name[:40]}. Type !help for the list."
    if place not in cmd.where:
        where = "a session room" if SESSION in cmd.where else "the desk room or a chat with me"
        return f"!{name} works in {where}. Type !help for what works here."
    try:
        # Its own savepoint: a command that fails half-way leaves no half of its effect.
        return await ctx.desk.transaction(lambda tx: cmd.handler(ctx, args.strip()), savepoint=True)
    except QueueError as exc:
        return str(exc)
    except Exception as exc:
        if is_transient(exc):
            raise  # the homeserver sends the event again; the command runs then
        reference = secrets.token_hex(4)
        log.exception("command !%s failed (reference %s)", name, reference)
        return f"Sorry, that failed (reference {reference}). The desk's log has the details."

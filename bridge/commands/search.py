"""``!search``: past chats found by their words, for librarians in the desk room, a direct chat
with the bot, or a session room (how was this answered before?)."""

from __future__ import annotations

from urllib.parse import quote
from zoneinfo import ZoneInfo

from bridge.commands.base import DESK, SESSION, Context, command
from rooms.search import Found, query_words
from rooms.session import Session

USAGE = "Usage: !search words, e.g. !search perpanjang pinjaman (past chats with these words)"
LIMIT = 5


def room_link(room_id: str) -> str:
    """A matrix.to link to a room (librarians who served the chat are in it)."""
    server = room_id.partition(":")[2]
    via = f"?via={quote(server, safe='')}" if server else ""
    return f"https://matrix.to/#/{quote(room_id, safe='')}{via}"


def _read(ctx: Context, session: Session) -> str:
    link = ctx.transcript_link(session, ctx.sender) if ctx.transcript_link else None
    if link:
        return f"Transcript: {link}"
    if session.room_id:
        return f"Room: {room_link(session.room_id)}"
    return "No room (answered by email)"


def _source(found: Found) -> str:
    passage = found.snippet_from
    if passage.kind == "librarian":
        return passage.who or "Librarian"
    return {"visitor": "Visitor", "note": "Note", "topic": "Topic"}.get(passage.kind, "Text")


@command(
    "search",
    "find past chats by their words (questions, answers, notes, topics); the best 5",
    args="words",
    where=(DESK, SESSION),
)
async def search(ctx: Context, args: str) -> str:
    if not ctx.desk.queue.is_librarian(ctx.sender):
        return "Only the desk's librarians can search past chats."
    if not query_words(args):
        return USAGE
    results = await ctx.desk.search.find(args, limit=LIMIT)
    shown = args if len(args) <= 80 else args[:79] + "…"
    if not results.found:
        return f"No past chat matches “{shown}”."
    tz = ZoneInfo(ctx.timezone)
    head = "Past chats" if results.every_word else "No chat has all these words; past chats"
    lines = [f"{head} with “{shown}”, best first:"]
    for number, found in enumerate(results.found, start=1):
        session = found.session
        when = (session.closed_at or session.created_at).astimezone(tz)
        served = ", ".join(found.librarians) or "no librarian answered"
        lines.append(f"{number}. {when:%Y-%m-%d} · {ctx.topic(session)} · {served}")
        lines.append(f"   {_source(found)}: {found.snippet}")
        lines.append(f"   {_read(ctx, session)}")
    return "\n".join(lines)

"""Commands in a session room: claim, release, transfer, close, note, info, canned answers."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from bridge import store
from bridge.commands.base import SESSION, Context, command
from bridge.commands.reports import tag_prompt
from rooms.ids import UserID
from rooms.queue import QueueError
from rooms.session import Session

_MXID = re.compile(r"@[^\s:]+:[^\s]+")


@command("claim", "serve this visitor yourself")
async def claim(ctx: Context, args: str) -> str | None:
    session = ctx.need_session()
    result = await ctx.desk.queue.claim(session.id, ctx.sender, ctx.sender_name)
    if result.won:
        return None  # the claim notice says it for everyone
    if result.refused is not None:
        return result.refused
    if result.session.owner == ctx.sender:
        return "You already serve this chat."
    if not result.session.is_open:
        return "This chat is closed."
    if await ctx.desk.cooperative.take_back(session.id, ctx.sender, ctx.sender_name) is not None:
        return None  # one of ours took it back from a partner library: the notice says so
    return f"{result.session.owner_name} already serves this chat. You can still help here."


@command("release", "put the chat back in the queue (everyone on duty is rung again)")
async def release(ctx: Context, args: str) -> str | None:
    await ctx.desk.queue.release(ctx.need_session().id, ctx.sender)
    return None


@command(
    "transfer",
    "hand the chat to another librarian (they are rung), or to a team (it waits for them)",
    args="@user|team",
)
async def transfer(ctx: Context, args: str) -> str | None:
    match = _MXID.search(args)
    if match is None:
        teams = ctx.desk.queue.teams
        team = teams.find(args) if args.strip() else None
        if team is not None:
            await ctx.desk.queue.transfer_to_team(ctx.need_session().id, ctx.sender, team.id)
            return None  # the ring notice says it for everyone
        known = "".join(f", !transfer {t.id}" for t in teams.teams)
        return f"Usage: !transfer @user:server{known}"
    target = UserID(match.group(0).rstrip(".,;"))
    name = await ctx.names(target)
    await ctx.desk.queue.transfer(ctx.need_session().id, ctx.sender, target, name)
    return None


@command("close", "end the chat (the visitor is told); a note is kept internally", args="[note]")
async def close(ctx: Context, args: str) -> str | None:
    session = ctx.need_session()
    if not session.is_open:
        return "This chat is already closed."
    if ctx.desk.reports.rules.ask_at_close and await _ask_for_tags(ctx, session):
        return tag_prompt(ctx)
    await ctx.desk.end_session(session.id, by=ctx.sender, note=args or None)
    return None


async def _ask_for_tags(ctx: Context, session: Session) -> bool:
    """Whether to ask for tags before closing: the chat has none and it was not asked yet."""
    tags, scale = await ctx.desk.reports.tags_of(session)
    if tags or scale is not None:
        return False
    key = f"close_asked:{session.id}"
    asked = await ctx.desk.read(lambda tx: store.get_state(tx, key))
    if asked is not None:
        return False
    await ctx.desk.transaction(lambda tx: store.set_state(tx, key, "1"), savepoint=True)
    return True


@command("note", "an internal note: kept with the session, never shown to the visitor", args="text")
async def note(ctx: Context, args: str) -> str | None:
    if not args:
        return "Usage: !note text"
    await ctx.desk.add_note(ctx.need_session(), ctx.sender, args)
    return "Note kept (the visitor does not see it)."


@command("verify", "ask the visitor to confirm membership in the widget (no secret shows here)")
async def verify(ctx: Context, args: str) -> str | None:
    from rooms.desk import DeskError

    try:
        await ctx.desk.request_verification(ctx.need_session(), ctx.sender)
    except DeskError as exc:
        return str(exc)
    return None


@command(
    "ban",
    "end the chat and block the visitor's connection (default 7 days)",
    args="[days] [reason]",
)
async def ban(ctx: Context, args: str) -> str | None:
    from rooms.desk import DeskError

    words = args.split(maxsplit=1)
    days = 7
    if words and words[0].isdigit():
        days = max(1, min(int(words[0]), 365))
        words = words[1:]
    reason = words[0] if words else None
    try:
        await ctx.desk.ban_client(ctx.need_session(), ctx.sender, days, reason)
    except DeskError as exc:
        return str(exc)
    return None  # the closing notice says it, before the librarians leave the room


@command("info", "the visitor's details: form, page, browser, language, waiting time")
async def info(ctx: Context, args: str) -> str:
    session = ctx.need_session()
    form = session.form
    tz = ZoneInfo(ctx.timezone)
    started = session.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    waiting_since = session.queued_at or session.created_at
    end = session.claimed_at or session.closed_at or datetime.now(waiting_since.tzinfo)
    waited = int((end - waiting_since).total_seconds())
    lines = [
        f"Visitor: {form.name} <{form.email}>",
        f"Member number: {form.member_number or '(not given)'}",
        f"Question about: {ctx.topic(session)}",
        f"Language: {form.language}",
        f"Page: {form.page_url or '(unknown)'}",
        f"Browser/device: {form.user_agent or '(unknown)'}",
        f"Started: {started} ({ctx.timezone})",
        f"Status: {session.status.value}"
        + (f", served by {session.owner_name}" if session.owner_name else ""),
        f"Waited: {waited // 60} min {waited % 60:02d} s"
        + ("" if session.claimed_at or not session.is_open else " so far"),
    ]
    notes = await ctx.desk.notes(session.id)
    if notes:
        lines.append("Notes:")
        lines.extend(f"  {author}: {body}" for author, body, _ in notes)
    return "\n".join(lines)


@command("c", "send a knowledge-base answer to the visitor; !c alone lists them", args="[key]")
async def canned(ctx: Context, args: str) -> str | None:
    knowledge = ctx.desk.knowledge
    if not args:
        if not knowledge.keys():
            return "The knowledge base is empty (desk.canned and knowledge in the config)."
        return "Canned answers: " + ", ".join(knowledge.keys()) + ". Send one with !c key."
    session = ctx.need_session()
    key = args.split()[0].lower()
    entry = knowledge.get(key)
    if entry is None:
        raise QueueError(f"No canned answer {key!r}. !c lists them.")
    if not session.is_open:
        return "This chat is closed."
    body = entry.text(session.form.language, visitor=session.form.name, librarian=ctx.sender_name)
    await ctx.desk.librarian_message(
        session, ctx.sender, ctx.sender_name, body, remote_id=f"{ctx.event_id}#canned"
    )
    return f"Sent to the visitor: {body}"


__all__ = ["SESSION"]

"""Commands in the desk room or a direct chat with the bot: duty, the queue and the visitors
on the site."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from bridge.commands.base import DESK, SESSION, Context, command
from rooms.events import InvitationAnswered


@command(
    "duty", "go on or off duty; alone, shows who is on duty", args="[on|off]", where=(DESK, SESSION)
)
async def duty(ctx: Context, args: str) -> str:
    word = args.lower()
    if word in ("on", "off"):
        changed = await ctx.desk.queue.set_duty(ctx.sender, word == "on")
        state = "on duty: new chats ring you" if word == "on" else "off duty: no more rings"
        return f"{ctx.sender_name}, you are {state}." + ("" if changed else " (no change)")
    if word:
        return "Usage: !duty on, !duty off, or !duty to see who is on duty."
    names = [await ctx.names(user) for user in await ctx.desk.queue.on_duty()]
    return "On duty: " + (", ".join(names) if names else "nobody")


@command(
    "queue",
    "who is on duty, the chats waiting and who serves which, and the visitors on the site now",
    where=(DESK, SESSION),
)
async def queue(ctx: Context, args: str) -> str:
    tz = ZoneInfo(ctx.timezone)
    view = await ctx.desk.live_view()
    names = [await ctx.names(user) for user in view.on_duty]
    lines = ["On duty: " + (", ".join(names) if names else "nobody")]
    lines.append(f"Waiting: {len(view.waiting)}")
    for position, (s, waited) in enumerate(view.waiting, start=1):
        since = s.queued_at or s.created_at
        lines.append(
            f"  {position}. {s.form.name} · {ctx.topic(s)} · waiting {minutes(waited)} min "
            f"(since {since.astimezone(tz):%H:%M})"
        )
    lines.append(f"Being served: {len(view.served)}")
    lines.extend(f"  {s.form.name} · {ctx.topic(s)} · {s.owner_name}" for s in view.served)
    if view.visitors is None:
        lines.append("On the site: not known here (the widget runs in other processes).")
        return "\n".join(lines)
    lines.append(f"On the site now: {len(view.visitors)}")
    for v in view.visitors[-MAX_LISTED:]:
        invited = f" · invited by {v.invitation.librarian_name}" if v.invitation else ""
        lines.append(
            f"  #{v.number} · {short_page(v.page)} · {minutes(view.at - v.arrived)} min · "
            f"{v.language}{invited}"
        )
    if len(view.visitors) > MAX_LISTED:
        lines.append(f"  (the {MAX_LISTED} who arrived last are listed)")
    if view.visitors:
        lines.append("!invite-visitor N [text] invites visitor #N to chat with you.")
    return "\n".join(lines)


MAX_LISTED = 30


def minutes(span: timedelta) -> int:
    return max(0, int(span.total_seconds() // 60))


def short_page(page: str, limit: int = 60) -> str:
    """A page address without its scheme, shortened in the middle."""
    page = page.split("://", 1)[-1] or "?"
    return page if len(page) <= limit else page[: limit // 2 - 1] + "…" + page[-(limit // 2) :]


@command(
    "invite-visitor",
    "invite visitor #N on the site (see !queue) to chat with you; text: what their widget says",
    args="N [text]",
    where=(DESK,),
)
async def invite_visitor(ctx: Context, args: str) -> str:
    word, _, text = args.partition(" ")
    word = word.removeprefix("#")
    if not word.isdigit() or len(word) > 9:
        return "Usage: !invite-visitor N [text], N being a visitor's number from !queue."
    invitation = ctx.desk.invite_visitor(
        int(word), ctx.sender, ctx.sender_name, text.strip() or None, reply_to=ctx.room_id
    )
    return (
        f"Visitor #{invitation.visitor} ({short_page(invitation.page)}) is invited to chat with "
        f"{ctx.sender_name}. You will be told when they answer."
    )


def invitation_answer(event: InvitationAnswered) -> str:
    """What the inviting librarian is told of the visitor's answer."""
    invitation = event.invitation
    who = f"Visitor #{invitation.visitor}"
    return {
        "accepted": f"{who} accepted your invitation: their chat is yours, you are invited to it.",
        "declined": f"{who} declined your invitation.",
        "ignored": f"{who} did not answer your invitation; it is withdrawn.",
        "left": f"{who} left the site before answering your invitation.",
    }.get(event.answer, f"{who}: {event.answer}.")

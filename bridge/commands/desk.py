"""Commands in the desk room or a direct chat with the bot: duty, the queue and the visitors
on the site."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from bridge.commands.base import DESK, SESSION, Context, command
from rooms.events import InvitationAnswered
from rooms.ids import UserID
from rooms.session import Session


@command(
    "duty",
    "go on or off duty (for all your teams, or for one: !duty on membership); alone, shows "
    "who is on duty",
    args="[on|off] [team]",
    where=(DESK, SESSION),
)
async def duty(ctx: Context, args: str) -> str:
    word, _, rest = args.lower().partition(" ")
    queue = ctx.desk.queue
    if word in ("on", "off"):
        team = None
        if rest.strip():
            team = queue.teams.find(rest)
            if team is None:
                known = ", ".join(t.id for t in queue.teams.teams) or "none"
                return f"There is no team {rest.strip()!r} (teams: {known})."
        changed = await queue.set_duty(ctx.sender, word == "on", team.id if team else None)
        state = "on duty: new chats ring you" if word == "on" else "off duty: no more rings"
        if team is not None:
            state = (
                f"on duty for the team {team.name}: its chats ring you"
                if word == "on"
                else f"off duty for the team {team.name}: its chats no longer ring you"
            )
        return f"{ctx.sender_name}, you are {state}." + ("" if changed else " (no change)")
    if word:
        return "Usage: !duty on [team], !duty off [team], or !duty to see who is on duty."
    return await _on_duty(ctx)


async def _on_duty(ctx: Context) -> str:
    """Who is on duty (busy ones marked), and for each team its members on duty."""
    queue = ctx.desk.queue
    busy = await queue.busy()

    async def names(users: list[UserID]) -> str:
        shown = [await ctx.names(u) + (" (busy)" if u in busy else "") for u in users]
        return ", ".join(shown) if shown else "nobody"

    lines = ["On duty: " + await names(await queue.on_duty())]
    for team in queue.teams.teams:
        lines.append(f"  team {team.name}: " + await names(await queue.on_duty(team.id)))
    return "\n".join(lines)


@command(
    "busy",
    "no new chats offered or rung to you for now (you stay on duty); !available to resume",
    where=(DESK, SESSION),
)
async def busy(ctx: Context, args: str) -> str:
    changed = await ctx.desk.queue.set_busy(ctx.sender, True)
    return f"{ctx.sender_name}, you are busy: no new chats ring you until !available." + (
        "" if changed else " (no change)"
    )


@command("available", "new chats are offered and rung to you again", where=(DESK, SESSION))
async def available(ctx: Context, args: str) -> str:
    changed = await ctx.desk.queue.set_busy(ctx.sender, False)
    return f"{ctx.sender_name}, you are available: new chats ring you again." + (
        "" if changed else " (no change)"
    )


@command(
    "queue",
    "who is on duty, the chats waiting and who serves which, and the visitors on the site now",
    where=(DESK, SESSION),
)
async def queue(ctx: Context, args: str) -> str:
    tz = ZoneInfo(ctx.timezone)
    view = await ctx.desk.live_view()
    teams = ctx.desk.queue.teams
    lines = (await _on_duty(ctx)).splitlines()
    offers = await ctx.desk.queue.assignment.pending_offers() if teams.teams else {}
    lines.append(f"Waiting: {len(view.waiting)}")
    for position, (s, waited) in enumerate(view.waiting, start=1):
        since = s.queued_at or s.created_at
        offered = f" · offered to {await ctx.names(offers[s.id])}" if s.id in offers else ""
        lines.append(
            f"  {position}. {s.form.name} · {ctx.topic(s)}{team_of(ctx, s)}{offered} · "
            f"waiting {minutes(waited)} min (since {since.astimezone(tz):%H:%M})"
        )
    lines.append(f"Being served: {len(view.served)}")
    lines.extend(
        f"  {s.form.name} · {ctx.topic(s)}{team_of(ctx, s)} · {s.owner_name}" for s in view.served
    )
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


def team_of(ctx: Context, session: Session) -> str:
    """ " · team Membership" for a team's chat ("· team Membership → all" once it rings the
    whole desk), else nothing."""
    if session.team is None:
        return ""
    team = ctx.desk.queue.teams.team(session.team)
    overflowed = " → all" if session.overflowed_at is not None and session.owner is None else ""
    return f" · team {team.name if team else session.team}{overflowed}"


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

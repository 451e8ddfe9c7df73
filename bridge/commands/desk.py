"""Commands in the desk room or a direct chat with the bot: duty and the queue."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bridge.commands.base import DESK, SESSION, Context, command


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


@command("queue", "the chats waiting and who serves which", where=(DESK, SESSION))
async def queue(ctx: Context, args: str) -> str:
    tz = ZoneInfo(ctx.timezone)
    now = datetime.now(UTC)
    sessions = await ctx.desk.open_sessions()
    if not sessions:
        return "The queue is empty and nobody is being served."
    waiting = [s for s in sessions if s.owner is None]
    served = [s for s in sessions if s.owner is not None]
    lines = [f"Waiting: {len(waiting)}"]
    for position, s in enumerate(waiting, start=1):
        since = s.queued_at or s.created_at
        minutes = int((now - since).total_seconds() // 60)
        lines.append(
            f"  {position}. {s.form.name} · {ctx.topic(s)} · waiting {minutes} min "
            f"(since {since.astimezone(tz):%H:%M})"
        )
    lines.append(f"Being served: {len(served)}")
    lines.extend(f"  {s.form.name} · {ctx.topic(s)} · {s.owner_name}" for s in served)
    return "\n".join(lines)

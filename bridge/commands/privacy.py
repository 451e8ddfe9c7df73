"""A visitor's rights from Element, for supervisors: ``!privacy export`` sends the file to them in
a direct chat with the bot; ``!privacy erase`` removes everything (docs/PRIVACY.md)."""

from __future__ import annotations

from bridge.commands.base import DESK, Context, command

USAGE = "Usage: !privacy export ADDRESS|CHAT-ID, or !privacy erase ADDRESS|CHAT-ID"


@command(
    "privacy",
    "a visitor's data: export it (the file comes to you in a direct chat with me) or erase it; "
    "supervisors only",
    args="export|erase ADDRESS|CHAT-ID",
    where=(DESK,),
)
async def privacy(ctx: Context, args: str) -> str:
    if ctx.sender not in ctx.desk.rules.queue.supervisors:
        return "Only a supervisor can export or erase a visitor's data."
    action, _, whom = args.partition(" ")
    whom = whom.strip()
    if action.lower() not in ("export", "erase") or not whom or " " in whom:
        return USAGE
    who = {"email": whom} if "@" in whom else {"session_id": whom}
    if action.lower() == "erase":
        erased = await ctx.desk.rights.erase(**who, by=str(ctx.sender))
        if not erased.sessions:
            return "The desk holds nothing about that address or chat."
        return (
            f"Erased {erased.sessions} chat(s), {erased.items} items; "
            "their rooms are being purged from the homeserver."
        )
    count = await ctx.desk.rights.request_export(**who, by=str(ctx.sender))
    if not count:
        return "The desk holds nothing about that address or chat."
    return (
        f"Exporting {count} chat(s): the file comes to you in a direct chat with me. It holds "
        "personal data: hand it over, then delete the message."
    )

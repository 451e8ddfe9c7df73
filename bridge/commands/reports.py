"""Reports from Element: ``!report`` for report viewers, ``!tag`` for every librarian (a chat's
question category and its READ-scale effort, counted in the reports)."""

from __future__ import annotations

from bridge.commands.base import DESK, SESSION, Context, command
from rooms.reports import PERIOD_HELP, READ_SCALE, PeriodError
from rooms.session import Session


@command(
    "report",
    "the desk's report (figures, a chart, your dashboard link); report viewers only",
    args="[today|week|month|YYYY-MM|FROM..TO] | pin | unpin",
    where=(DESK,),
)
async def report(ctx: Context, args: str) -> str | None:
    reports = ctx.desk.reports
    if not reports.is_viewer(ctx.sender):
        return "Only the desk's report viewers can read reports (reports.viewers in the config)."
    if args.lower() in ("pin", "unpin"):
        if not reports.rules.dashboard:
            return "This desk serves no dashboard (reports.dashboard is off)."
        await reports.pin(ctx.sender, args.lower() == "pin")
        return (
            "The dashboard is pinned at the top of the desk room (Element Web and Desktop); "
            "it opens for report viewers only."
            if args.lower() == "pin"
            else "The dashboard is no longer pinned in the desk room."
        )
    try:
        period = reports.period(args)
    except PeriodError as exc:
        return str(exc) if str(exc).startswith("Unknown") else f"{exc}. Periods: {PERIOD_HELP}."
    await reports.request(ctx.room_id, period, ctx.sender)
    return None


def _shown(tags: list[str], scale: int | None) -> str:
    words = ", ".join(tags) if tags else "no category"
    return words + (f" · READ {scale}" if scale is not None else "")


def _usage(ctx: Context) -> str:
    example = next(iter(ctx.desk.reports.rules.categories), "katalog")
    return f"Usage: !tag CATEGORY … [read 1–6], e.g. !tag {example} read 2"


def _categories(ctx: Context) -> str:
    allowed = ctx.desk.reports.rules.categories
    return f" Categories: {', '.join(allowed)}." if allowed else ""


async def _tag_target(ctx: Context) -> Session | None:
    if ctx.session is not None:
        return ctx.session
    last = await ctx.desk.reports.last_served(ctx.sender)
    return await ctx.desk.get_session(last) if last is not None else None


@command(
    "tag",
    "tag the chat for the reports: its question category and READ-scale effort (1–6); in the "
    "desk room it tags the last chat you served",
    args="CATEGORY … [read 1–6]",
    where=(SESSION, DESK),
)
async def tag(ctx: Context, args: str) -> str:
    if not ctx.desk.queue.is_librarian(ctx.sender):
        return "Only the desk's librarians can tag chats."
    session = await _tag_target(ctx)
    if session is None:
        return "You have served no chat in the last day to tag."
    where = "" if ctx.session is not None else f" (your last chat, {session.form.name})"
    if not args:
        tags, scale = await ctx.desk.reports.tags_of(session)
        return f"Tags{where}: {_shown(tags, scale)}. {_usage(ctx)}.{_categories(ctx)}"
    try:
        tags, scale = await ctx.desk.reports.tag(session, ctx.sender, args)
    except ValueError as exc:
        return f"{exc} {_usage(ctx)}.{_categories(ctx)}"
    return f"Tagged{where}: {_shown(tags, scale)}."


@command("untag", "remove a tag from the chat", args="CATEGORY", where=(SESSION,))
async def untag(ctx: Context, args: str) -> str:
    if not ctx.desk.queue.is_librarian(ctx.sender):
        return "Only the desk's librarians can tag chats."
    if not args or " " in args:
        return "Usage: !untag CATEGORY"
    session = ctx.need_session()
    if not await ctx.desk.reports.untag(session, args):
        return f"This chat has no tag {args[:40]!r}."
    tags, scale = await ctx.desk.reports.tags_of(session)
    return f"Tags: {_shown(tags, scale)}."


def tag_prompt(ctx: Context) -> str:
    """What the bot asks at ``!close`` when a chat has no tag yet."""
    scale = f"{READ_SCALE.start}–{READ_SCALE.stop - 1}"
    return (
        f"Before it closes: tag this chat for the reports with !tag CATEGORY read {scale}."
        f"{_categories(ctx)} Then !close again, or !close again now to close it untagged."
    )

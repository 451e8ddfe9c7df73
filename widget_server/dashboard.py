"""The report dashboard for the head of service: figures with drill-down, charts, the chats behind
each figure and their transcripts, CSV export; reached by a signed link from the bot or pinned in
Element as a widget (the widget API's OpenID token, checked against the homeserver).

Every page carries the viewer's dashboard pass (``s``, signed, hours long; rooms/reporting.py)
and is checked again on each request. Pages are server-rendered HTML, charts inline SVG: no
script (but the widget page's handshake), no request to anyone but this server, readable on a
phone, printable.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from rooms import charts
from rooms.desk import Desk
from rooms.errors import UnknownSession
from rooms.report_views import duration, rating, share, trend
from rooms.reporting import LINK, PASS, AccessDenied
from rooms.reports import (
    FILTERS,
    PERIOD_HELP,
    WAIT_BUCKETS,
    WEEKDAYS,
    ChatFacts,
    Period,
    PeriodError,
    Report,
    outcome,
)

log = logging.getLogger("refdesk.widget_server.dashboard")

OpenIDCheck = Callable[[str, str], Awaitable[str | None]]
"""(access token, server name) → the Matrix user the homeserver vouches for, or None."""

_CURRENT = ' aria-current="page"'

_STYLE = """
:root{--ink:#1d2b36;--muted:#5b6770;--line:#dde3e8;--accent:#00695c;--bad:#b23c00}
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);margin:0;background:#f6f8f9}
header{background:#fff;border-bottom:1px solid var(--line);padding:.8em 1em}
header h1{font-size:1.15em;margin:0 0 .4em}nav a{margin-right:1em}
main{padding:1em;max-width:70em;margin:auto}a{color:var(--accent)}
form.period{display:flex;flex-wrap:wrap;gap:.4em;align-items:center}
form.period input,form.period select,form.period button{font:inherit;padding:.3em .5em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(10.5em,1fr));gap:.6em;
margin:1em 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.6em .8em;
text-decoration:none;color:inherit;display:block}
.card b{display:block;font-size:1.6em;line-height:1.2}.card span{color:var(--muted);font-size:.9em}
.card small{display:block;color:var(--muted)}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.8em;
margin:1em 0;overflow-x:auto}
section h2{font-size:1.05em;margin:0 0 .5em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .5em;
border-bottom:1px solid var(--line);vertical-align:top}th{font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
svg{max-width:100%;height:auto}.muted{color:var(--muted)}.bad{color:var(--bad)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(20em,1fr));gap:0 1em}
blockquote{margin:.2em 0 .6em;padding-left:.6em;border-left:3px solid var(--line)}
@media print{header nav,form.period,.noprint{display:none}body{background:#fff}
section,.card{break-inside:avoid;border-color:#999}a{color:inherit;text-decoration:none}}
"""


def _csp(embed: bool, nonce: str | None = None) -> str:
    script = f"'nonce-{nonce}'" if nonce else "'none'"
    frames = "*" if embed else "'none'"
    return (
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {script}; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {frames}"
    )


def _page(title: str, body: str, *, embed: bool, status: int = 200) -> web.Response:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        headers={
            "Content-Security-Policy": _csp(embed),
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def _refusal(message: str, embed: bool = False, status: int = 403) -> web.Response:
    body = (
        f"<main><h1>Reports</h1><p>{html.escape(message)}</p>"
        '<p class="muted">In Element, send <code>!report</code> to the desk bot for a new link.'
        "</p></main>"
    )
    return _page("Reports", body, embed=embed, status=status)


class Dashboard:
    def __init__(
        self,
        desk: Desk,
        desk_name: str,
        topic_labels: dict[str, str],
        verify_openid: OpenIDCheck | None,
        address: Callable[[web.Request], str] = lambda request: request.remote or "",
    ) -> None:
        self.desk = desk
        self.desk_name = desk_name
        self.topic_labels = topic_labels
        self.verify_openid = verify_openid
        self.address = address
        # OpenID checks per client address in the last minute: each asks the homeserver.
        self._checks: dict[str, deque[float]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/reports/open", self.open_link),
            web.get("/reports", self.summary),
            web.get("/reports/", self.summary),
            web.get("/reports/live", self.live),
            web.get("/reports/chats", self.chats),
            web.get("/reports/chats/{session_id}", self.chat),
            web.get("/reports/export.csv", self.export),
            web.get("/reports/widget", self.widget),
            web.post("/reports/openid", self.openid),
        ]

    # access

    async def open_link(self, request: web.Request) -> web.StreamResponse:
        """The bot's link: checked, then exchanged for a dashboard pass."""
        try:
            viewer = await self.desk.reports.check(request.query.get("t", ""), LINK)
        except AccessDenied as exc:
            return _refusal(str(exc))
        token, _ = await self.desk.reports.sign(viewer, PASS)
        chat = request.query.get("chat", "")
        if chat.isalnum() and len(chat) < 40:  # a link from !search: that chat's transcript
            raise web.HTTPSeeOther(f"/reports/chats/{chat}?" + urlencode({"s": token}))
        params = {"s": token, "period": request.query.get("period", "")}
        raise web.HTTPSeeOther("/reports/?" + urlencode(params))

    async def _viewer(self, request: web.Request) -> str:
        try:
            return await self.desk.reports.check(request.query.get("s", ""), PASS)
        except AccessDenied as exc:
            raise _Refused(str(exc)) from None

    def _period(self, request: web.Request) -> Period:
        try:
            return self.desk.reports.period(request.query.get("period", ""))
        except PeriodError as exc:
            raise _Refused(f"{exc}. Periods: {PERIOD_HELP}.", status=400) from None

    # pages

    async def summary(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._summary)

    async def chats(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._chats)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._chat)

    async def export(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._export)

    async def live(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._live)

    async def _guarded(
        self,
        request: web.Request,
        page: Callable[[web.Request, _Links], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        embed = request.query.get("embed") == "1"
        try:
            await self._viewer(request)
            period = self._period(request)
            return await page(request, _Links(request, period, embed))
        except _Refused as exc:
            return _refusal(exc.message, embed, exc.status)

    def _header(self, links: _Links, current: str) -> str:
        p = links.period
        presets = ("today", "yesterday", "week", "last-week", "month", "last-month")
        options = "".join(f"<option>{name}</option>" for name in presets)
        hidden = f'<input type="hidden" name="s" value="{html.escape(links.token)}">' + (
            '<input type="hidden" name="embed" value="1">' if links.embed else ""
        )
        nav = " ".join(
            f'<a href="{links.to(path)}"{_CURRENT if name == current else ""}>{name}</a>'
            for name, path in (
                ("Summary", "/reports/"),
                ("Live", "/reports/live"),
                ("CSV", "/reports/export.csv"),
            )
        )
        return (
            f"<header><h1>{html.escape(self.desk_name)} · Reports · {html.escape(p.label)}</h1>"
            '<form class="period" method="get" action="/reports/">'
            f"{hidden}<label>Period <input name=period list=presets size=22 "
            f'value="{html.escape(p.label)}" aria-describedby=periodhelp></label>'
            f"<datalist id=presets>{options}</datalist><button>Show</button>"
            f'<span id=periodhelp class="muted">{html.escape(PERIOD_HELP)}</span></form>'
            f"<nav>{nav}</nav></header>"
        )

    async def _summary(self, request: web.Request, links: _Links) -> web.StreamResponse:
        report = await self.desk.reports.report(links.period)
        svgs = await asyncio.to_thread(_charts, report, self.topic_labels)
        body = self._header(links, "Summary") + "<main>" + self._cards(report, links)
        body += (
            f"<section><h2>Chats per day</h2>{svgs['volume']}</section>"
            '<div class="grid2"><section><h2>Wait for the first reply</h2>'
            f"{svgs['waits']}{self._waits(report, links)}</section>"
            f"<section><h2>Satisfaction</h2>{svgs['ratings']}{self._ratings(report, links)}"
            "</section></div>"
            f"<section><h2>When visitors ask</h2>{svgs['heatmap']}{self._busiest(report, links)}"
            "</section>"
            f"{self._librarians(report, links)}{self._teams(report, links)}"
            '<div class="grid2">'
            + self._counts("Topics", report.by_topic, "topic", links, self.topic_labels)
            + self._counts("Languages", report.by_language, "language", links)
            + self._counts("Pages", report.by_page, "page", links)
            + self._counts("Tags", report.tags, "tag", links)
            + self._read_scale(report, links)
            + self._counts("Verification", report.verification, "verification", links)
            + "</div>"
            + self._comments(report, links)
        )
        body += (
            f'<p class="muted">Times in {html.escape(report.timezone)}. First-reply times count '
            "the desk's open hours only. Compared with "
            f"{html.escape(report.previous.label)}. Missed: the visitor left before any "
            "librarian replied.</p></main>"
        )
        return _page(f"Reports {report.period.label}", body, embed=links.embed)

    def _cards(self, report: Report, links: _Links) -> str:
        f = report.figures

        def card(label: str, value: str, figure: str, note: str = "") -> str:
            small = f"<small>{html.escape(note)}</small>" if note else ""
            return (
                f'<a class="card" href="{links.chats(figure)}"><span>{html.escape(label)}</span>'
                f"<b>{html.escape(value)}</b>{small}</a>"
            )

        def delta(name: str, kind: str) -> str:
            return trend(report, name, kind).strip(" ()") or "no change known"

        target = duration(report.target).replace(" 00 s", "")
        cards = [
            card("Chats", str(f.chats), "started", delta("chats", "count")),
            card("Answered", str(f.answered), "answered"),
            card("Missed", str(f.missed), "missed", delta("missed", "count")),
            card("Waiting now", str(f.waiting), "waiting") if f.waiting else "",
            card(
                "First reply, median",
                duration(f.wait_median),
                "answered",
                delta("wait_median", "seconds"),
            ),
            card("First reply, p90", duration(f.wait_p90), "over_target"),
            card(
                f"Within {target}",
                share(f.within_target),
                "within_target",
                delta("within_target", "share"),
            ),
            card("Chat length, median", duration(f.duration_median), "answered"),
            card(
                "Offline messages",
                str(f.offline),
                "offline",
                f"{f.offline_answered} answered, median {duration(f.offline_answer_median)}",
            ),
            card(
                "Satisfaction",
                f"{rating(f.rating_average)} / 5",
                "rated",
                f"{f.rating_count} ratings; {delta('rating_average', 'rating')}",
            ),
        ]
        if report.partners:
            cards.append(card("Answered by partners", str(report.partners), "partner"))
        return '<div class="cards">' + "".join(cards) + "</div>"

    def _waits(self, report: Report, links: _Links) -> str:
        cells = "".join(
            f'<td class="n"><a href="{links.chats("wait", str(i))}">{n}</a></td>'
            for i, n in enumerate(report.wait_distribution)
        )
        head = "".join(f'<th class="n">{html.escape(label)}</th>' for label, _ in WAIT_BUCKETS)
        return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"

    def _ratings(self, report: Report, links: _Links) -> str:
        cells = "".join(
            f'<td class="n"><a href="{links.chats("rating", str(i + 1))}">{n}</a></td>'
            for i, n in enumerate(report.ratings)
        )
        head = "".join(f'<th class="n">{"★" * (i + 1)}</th>' for i in range(5))
        return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"

    def _busiest(self, report: Report, links: _Links) -> str:
        hours = sorted(
            ((n, d, h) for d, row in enumerate(report.heatmap) for h, n in enumerate(row) if n),
            reverse=True,
        )[:6]
        if not hours:
            return '<p class="muted">No chats in this period.</p>'
        items = "".join(
            f'<li><a href="{links.chats("hour", f"{d}-{h}")}">{WEEKDAYS[d]} '
            f"{h:02d}:00–{h + 1:02d}:00</a>: {n}</li>"
            for n, d, h in hours
        )
        return f"<p>Busiest hours:</p><ol>{items}</ol>"

    def _librarians(self, report: Report, links: _Links) -> str:
        if not report.librarians:
            return ""
        rows = "".join(
            f'<tr><td><a href="{links.chats("librarian", p.user_id)}">{html.escape(p.name)}</a>'
            f'</td><td class="n">{p.served}</td>'
            f'<td class="n">{html.escape(duration(p.first_reply_median))}</td>'
            f'<td class="n">{html.escape(duration(p.duration_median))}</td>'
            f'<td class="n">{html.escape(rating(p.rating_average))} ({p.rating_count})</td>'
            f'<td class="n">{p.transfers_out} / {p.transfers_in}</td></tr>'
            for p in report.librarians
        )
        return (
            "<section><h2>Per librarian</h2><table><tr><th>Librarian</th>"
            '<th class="n">Chats served</th><th class="n">First reply (median)</th>'
            '<th class="n">Length (median)</th><th class="n">Rating (count)</th>'
            f'<th class="n">Transfers out / in</th></tr>{rows}</table></section>'
        )

    def _teams(self, report: Report, links: _Links) -> str:
        if not report.teams:
            return ""
        rows = "".join(
            f'<tr><td><a href="{links.chats("team", t.team)}">{html.escape(t.name)}</a></td>'
            f'<td class="n">{t.chats}</td><td class="n">{t.answered}</td>'
            f'<td class="n">{t.missed}</td>'
            f'<td class="n">{html.escape(duration(t.wait_median))}</td>'
            f'<td class="n">{html.escape(share(t.within_target))} '
            f"({html.escape(duration(t.target).replace(' 00 s', ''))})</td></tr>"
            for t in report.teams
        )
        return (
            "<section><h2>Per team</h2><table><tr><th>Team</th>"
            '<th class="n">Chats</th><th class="n">Answered</th><th class="n">Missed</th>'
            '<th class="n">First reply (median)</th><th class="n">Within its target</th></tr>'
            f"{rows}</table></section>"
        )

    def _counts(
        self,
        title: str,
        counts: list[tuple[str, int]],
        figure: str,
        links: _Links,
        labels: dict[str, str] | None = None,
    ) -> str:
        if not counts:
            return f'<section><h2>{title}</h2><p class="muted">None.</p></section>'
        rows = "".join(
            f'<tr><td><a href="{links.chats(figure, key)}">'
            f"{html.escape((labels or {}).get(key, key))}</a></td>"
            f'<td class="n">{n}</td></tr>'
            for key, n in counts
        )
        return f"<section><h2>{title}</h2><table>{rows}</table></section>"

    def _read_scale(self, report: Report, links: _Links) -> str:
        rows = "".join(
            f'<tr><td><a href="{links.chats("read", str(i + 1))}">READ {i + 1}</a></td>'
            f'<td class="n">{n}</td></tr>'
            for i, n in enumerate(report.read_scale)
        )
        untagged = (
            f'<p><a href="{links.chats("untagged")}">Answered, untagged</a>: {report.untagged}</p>'
        )
        return f"<section><h2>Effort (READ scale)</h2><table>{rows}</table>{untagged}</section>"

    def _comments(self, report: Report, links: _Links) -> str:
        if not report.comments:
            return ""
        tz = ZoneInfo(report.timezone)
        items = "".join(
            f'<li><a href="{links.chat(c.session_id)}">{c.at.astimezone(tz):%Y-%m-%d %H:%M}</a>'
            f" · {'★' * c.rating} · {html.escape(c.librarian)}"
            f"<blockquote>{html.escape(c.text)}</blockquote></li>"
            for c in report.comments
        )
        return f"<section><h2>Comments</h2><ul>{items}</ul></section>"

    async def _chats(self, request: web.Request, links: _Links) -> web.StreamResponse:
        figure = request.query.get("figure", "started")
        value = request.query.get("value", "")
        if figure not in FILTERS:
            raise _Refused(f"Unknown figure {figure[:40]!r}.", status=400)
        chats = await self.desk.reports.chats(links.period, figure, value)
        tz = ZoneInfo(self.desk.reports.timezone)
        rows = "".join(self._chat_row(c, links, tz) for c in chats)
        title = f"{figure.replace('_', ' ')}{f': {value}' if value else ''}"
        body = self._header(links, "Chats") + (
            f"<main><h2>{html.escape(title)} · {len(chats)} chat{'s' * (len(chats) != 1)}</h2>"
            "<section><table><tr><th>Started</th><th>Outcome</th><th>Topic</th>"
            '<th class="n">First reply</th><th>Librarian</th><th class="n">Rating</th>'
            f"<th>Tags</th></tr>{rows}</table></section></main>"
        )
        return _page(f"Chats · {title}", body, embed=links.embed)

    def _chat_row(self, c: ChatFacts, links: _Links, tz: ZoneInfo) -> str:
        wait = self.desk.reports.wait(c)
        tags = ", ".join(c.tags) + (f" · READ {c.read_scale}" if c.read_scale else "")
        return (
            f'<tr><td><a href="{links.chat(c.session_id)}">'
            f"{c.created_at.astimezone(tz):%Y-%m-%d %H:%M}</a></td>"
            f"<td>{html.escape(outcome(c).replace('_', ' '))}</td>"
            f"<td>{html.escape(self.topic_labels.get(c.topic, c.topic))}</td>"
            f'<td class="n">{html.escape(duration(wait))}</td>'
            f"<td>{html.escape(c.owner_name or c.owner or '–')}</td>"
            f'<td class="n">{c.rating or "–"}</td><td>{html.escape(tags)}</td></tr>'
        )

    async def _chat(self, request: web.Request, links: _Links) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        try:
            session = await self.desk.get_session(session_id)
        except UnknownSession:
            raise _Refused("No chat with this id.", status=404) from None
        if session.is_open:
            raise _Refused("This chat is still open: read it in its room in Element.", status=409)
        c = await self.desk.reports.chat_facts(session.id)
        _, transcript = await self.desk.transcripts.render(session, pictures=True)
        tz = ZoneInfo(self.desk.reports.timezone)
        about = ""
        if c is not None:
            about = (
                "<section><table>"
                f"<tr><th>Outcome</th><td>{html.escape(outcome(c).replace('_', ' '))}</td></tr>"
                f"<tr><th>First reply</th><td>{html.escape(duration(self.desk.reports.wait(c)))}"
                "</td></tr>"
                f"<tr><th>Librarian</th><td>{html.escape(c.owner_name or '–')}</td></tr>"
                f"<tr><th>Rating</th><td>{c.rating or '–'}"
                f"{' · ' + html.escape(c.comment) if c.comment else ''}</td></tr>"
                f"<tr><th>Tags</th><td>{html.escape(', '.join(c.tags) or '–')}"
                f"{f' · READ {c.read_scale}' if c.read_scale else ''}</td></tr>"
                "</table></section>"
            )
        if c is not None and c.purged:
            body_html = '<p class="muted">This chat outlived its retention: its messages are gone.'
        else:
            body_html = transcript[transcript.index("<body>") + 6 : transcript.rindex("</body>")]
        started = session.created_at.astimezone(tz)
        body = self._header(links, "Chat") + (
            f"<main><h2>Chat of {started:%Y-%m-%d %H:%M}</h2>{about}"
            f"<section>{body_html}</section></main>"
        )
        return _page("Chat transcript", body, embed=links.embed)

    async def _live(self, request: web.Request, links: _Links) -> web.StreamResponse:
        """Now: who is on duty, chats waiting and for how long, who serves which, and the
        visitors on the library's pages (this widget process's). Refreshes itself."""
        view = await self.desk.live_view()
        tz = ZoneInfo(self.desk.reports.timezone)
        esc = html.escape

        on_duty = ", ".join(esc(u) for u in view.on_duty) or "nobody"
        waiting = "".join(
            f"<tr><td>{i}</td><td>{esc(s.form.name)}</td>"
            f"<td>{esc(self.topic_labels.get(s.form.topic, s.form.topic))}</td>"
            f'<td class="n">{esc(duration(wait.total_seconds()))}</td></tr>'
            for i, (s, wait) in enumerate(view.waiting, start=1)
        )
        served = "".join(
            f"<tr><td>{esc(s.owner_name or s.owner or '')}</td><td>{esc(s.form.name)}</td>"
            f"<td>{esc(self.topic_labels.get(s.form.topic, s.form.topic))}</td>"
            f'<td class="n">'
            f"{esc(duration((view.at - (s.claimed_at or s.created_at)).total_seconds()))}"
            "</td></tr>"
            for s in view.served
        )
        if view.visitors is None:
            visitors = '<p class="muted">This process serves no widget: it sees no visitors.</p>'
        elif not view.visitors:
            visitors = '<p class="muted">Nobody has the widget open now.</p>'
        else:
            visitors = (
                '<table><tr><th>#</th><th>Page</th><th class="n">On it for</th>'
                "<th>Language</th></tr>"
                + "".join(
                    f"<tr><td>{v.number}</td><td>{esc(v.page)}</td>"
                    f'<td class="n">{esc(duration((view.at - v.arrived).total_seconds()))}</td>'
                    f"<td>{esc(v.language)}</td></tr>"
                    for v in view.visitors
                )
                + "</table><p class=muted>Invite one from Element: "
                "<code>!invite-visitor NUMBER [text]</code>.</p>"
            )
        body = self._header(links, "Live") + (
            f"<main><p>On duty: {on_duty}</p>"
            f"<section><h2>Waiting · {len(view.waiting)}</h2>"
            + (
                '<table><tr><th>#</th><th>Visitor</th><th>Topic</th><th class="n">Waiting</th>'
                f"</tr>{waiting}</table>"
                if waiting
                else '<p class="muted">Nobody is waiting.</p>'
            )
            + f"</section><section><h2>Being served · {len(view.served)}</h2>"
            + (
                "<table><tr><th>Librarian</th><th>Visitor</th><th>Topic</th>"
                f'<th class="n">For</th></tr>{served}</table>'
                if served
                else '<p class="muted">No chat is being served.</p>'
            )
            + f"</section><section><h2>On the library's pages now</h2>{visitors}</section>"
            f'<p class="muted">As of {view.at.astimezone(tz):%H:%M:%S}'
            "; this page refreshes every 15 seconds.</p></main>"
        )
        response = _page("Live", body, embed=links.embed)
        response.headers["Refresh"] = "15"
        return response

    async def _export(self, request: web.Request, links: _Links) -> web.StreamResponse:
        text = await self.desk.reports.csv(links.period)
        name = f"refdesk-chats-{links.period.label.replace('..', '_to_')}.csv"
        return web.Response(
            body=("\ufeff" + text).encode("utf-8"),  # the BOM: spreadsheets read it as UTF-8
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store",
            },
        )

    def _throttled(self, address: str) -> int:
        """Seconds to wait when ``address`` asked for more than its OpenID checks a minute."""
        now = time.monotonic()
        window = self._checks.setdefault(address, deque())
        _prune(window, now)
        if len(window) >= OPENID_PER_MINUTE:
            return int(60 - (now - window[0])) + 1
        window.append(now)
        if len(self._checks) > 10_000:  # forget quiet addresses
            for key in [k for k, w in self._checks.items() if not w or now - w[-1] > 60]:
                del self._checks[key]
        return 0

    # Element widget

    async def widget(self, request: web.Request) -> web.StreamResponse:
        nonce = secrets.token_urlsafe(16)
        document = _WIDGET_PAGE.replace("{nonce}", nonce).replace(
            "{title}", html.escape(self.desk_name)
        )
        return web.Response(
            text=document,
            content_type="text/html",
            headers={
                "Content-Security-Policy": _csp(True, nonce),
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def openid(self, request: web.Request) -> web.StreamResponse:
        """The widget's OpenID token, checked with the homeserver: a pass for a viewer."""
        try:
            data = await request.json()
        except ValueError:
            data = None
        token = data.get("access_token") if isinstance(data, dict) else None
        server = data.get("matrix_server_name") if isinstance(data, dict) else None
        if not isinstance(token, str) or not isinstance(server, str) or len(token) > 2000:
            return web.json_response(
                {"error": "bad_request", "message": "Send access_token and matrix_server_name."},
                status=400,
            )
        wait = self._throttled(self.address(request))
        if wait:
            return web.json_response(
                {"error": "too_many_requests", "message": "Too many sign-ins; wait a minute."},
                status=429,
                headers={"Retry-After": str(wait)},
            )
        if self.verify_openid is None:
            return web.json_response(
                {"error": "unavailable", "message": "Sign-in from Element is not set up."},
                status=503,
            )
        user_id = await self.verify_openid(token, server)
        if user_id is None:
            return web.json_response(
                {"error": "invalid_token", "message": "The homeserver did not accept the token."},
                status=403,
            )
        if not self.desk.reports.is_viewer(user_id):
            log.info("dashboard refused to a non-viewer")
            return web.json_response(
                {"error": "not_a_viewer", "message": "You may not read this desk's reports."},
                status=403,
            )
        pass_token, _ = await self.desk.reports.sign(user_id, PASS)
        url = "/reports/?" + urlencode({"s": pass_token, "embed": "1"})
        return web.json_response({"url": url}, headers={"Cache-Control": "no-store"})


OPENID_PER_MINUTE = 10


def _prune(window: deque[float], now: float) -> None:
    while window and now - window[0] > 60:
        window.popleft()


class _Refused(Exception):
    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _Links:
    """Links within the dashboard: each carries the pass, the period and the embedding."""

    def __init__(self, request: web.Request, period: Period, embed: bool) -> None:
        self.token = request.query.get("s", "")
        self.period = period
        self.embed = embed

    def to(self, path: str, **params: str) -> str:
        query = {"s": self.token, "period": self.period.label, **params}
        if self.embed:
            query["embed"] = "1"
        return html.escape(f"{path}?{urlencode(query)}")

    def chats(self, figure: str, value: str = "") -> str:
        return self.to("/reports/chats", figure=figure, **({"value": value} if value else {}))

    def chat(self, session_id: str) -> str:
        return self.to(f"/reports/chats/{session_id}")


def _charts(report: Report, topic_labels: dict[str, str]) -> dict[str, str]:
    """The dashboard's charts as inline SVG (drawn in a worker thread)."""
    return {
        "volume": charts.svg(partial(charts.volume, report=report), (9.0, 3.0)),
        "waits": charts.svg(partial(charts.waits, report=report), (6.0, 3.2)),
        "ratings": charts.svg(partial(charts.ratings, report=report), (6.0, 3.2)),
        "heatmap": charts.svg(partial(charts.heatmap, report=report), (9.0, 3.4)),
    }


_WIDGET_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title} · Reports</title>
<style>body{font:15px/1.5 system-ui,sans-serif;margin:2em;color:#1d2b36}</style></head>
<body><p id="status">Signing you in with Element…</p>
<script nonce="{nonce}">
(function () {
  "use strict";
  var status = document.getElementById("status");
  var params = new URLSearchParams(location.search);
  var widgetId = params.get("widgetId") || "";
  var target = "*";
  try { target = new URL(params.get("parentUrl") || "").origin; } catch (e) { target = "*"; }
  var asked = false;
  function say(text) { status.textContent = text; }
  function post(message) { window.parent.postMessage(message, target); }
  function ask() {
    if (asked) return;
    asked = true;
    post({api: "fromWidget", widgetId: widgetId, requestId: "refdesk-openid",
          action: "get_openid", data: {}});
  }
  function signIn(credentials) {
    if (!credentials || credentials.state !== "allowed") {
      say(credentials && credentials.state === "request" ?
        "Allow the reports widget to verify your identity in Element…" :
        "Element did not share your identity: the reports stay closed.");
      return;
    }
    fetch("/reports/openid", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({access_token: credentials.access_token,
                            matrix_server_name: credentials.matrix_server_name})})
      .then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
      .then(function (res) { if (res[0]) location.replace(res[1].url); else say(res[1].message); })
      .catch(function () { say("The desk could not be reached. Try again later."); });
  }
  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || !event.data || typeof event.data !== "object") return;
    var m = event.data;
    if (m.api === "toWidget") {
      var reply = {};
      if (m.action === "capabilities") reply = {capabilities: []};
      if (m.action === "supported_api_versions") {
        reply = {supported_versions: ["0.0.1", "0.0.2", "org.matrix.msc1960"]};
      }
      post(Object.assign({}, m, {response: reply}));
      if (m.action === "openid_credentials") signIn(m.data);
      else if (m.action === "capabilities" || m.action === "notify_capabilities") ask();
      return;
    }
    if (m.api === "fromWidget" && m.requestId === "refdesk-openid" && m.response) {
      signIn(m.response);
    }
  });
  setTimeout(ask, 1500);
  post({api: "fromWidget", widgetId: widgetId, requestId: "refdesk-loaded",
        action: "content_loaded", data: {}});
})();
</script></body></html>
"""

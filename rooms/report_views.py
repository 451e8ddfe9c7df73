"""A report in words: the summary the bot posts (plain text for phones, HTML with a table for
Element's desktop), and the small formats every view shares."""

from __future__ import annotations

import html

from rooms.reports import Figures, Report

TOPICS_SHOWN = 5


def duration(seconds: float | None) -> str:
    """``45 s``, ``3 min 05 s``, ``2 h 10 min``, ``3 d 4 h``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def rating(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def trend(report: Report, name: str, kind: str = "count") -> str:
    """`` (▲ 3)`` against the previous period; empty when there is nothing to compare."""
    delta = report.trend(name)
    if delta is None or (kind == "count" and getattr(report.before, name) == 0):
        return ""
    smallest = {"share": 0.005, "rating": 0.05, "seconds": 0.5}.get(kind, 0.5)
    if abs(delta) < smallest:  # what would show as 0 is no change
        return " (=)"
    arrow = "▲" if delta > 0 else "▼"
    if kind == "share":
        return f" ({arrow} {abs(delta) * 100:.0f} pts)"
    if kind == "seconds":
        return f" ({arrow} {duration(abs(delta))})"
    if kind == "rating":
        return f" ({arrow} {abs(delta):.1f})"
    return f" ({arrow} {abs(delta):.0f})"


def key_lines(report: Report) -> list[str]:
    f: Figures = report.figures
    target = duration(report.target).replace(" 00 s", "")
    lines = [
        f"Chats: {f.chats}{trend(report, 'chats')} · answered {f.answered} · missed {f.missed}"
        + (f" · waiting now {f.waiting}" if f.waiting else ""),
        f"First reply: median {duration(f.wait_median)}{trend(report, 'wait_median', 'seconds')}"
        f" · p90 {duration(f.wait_p90)} · within {target}: {share(f.within_target)}"
        f"{trend(report, 'within_target', 'share')}",
        f"Chat length: median {duration(f.duration_median)}",
        f"Offline messages: {f.offline} · answered {f.offline_answered}"
        f" · median answer {duration(f.offline_answer_median)} (open hours)",
        f"Satisfaction: {rating(f.rating_average)} / 5 from {f.rating_count} rating"
        f"{'' if f.rating_count == 1 else 's'}{trend(report, 'rating_average', 'rating')}",
    ]
    if report.partners:
        lines.append(f"Answered by partner libraries: {report.partners}")
    return lines


def summary(report: Report, topic_label: dict[str, str], link_note: str) -> tuple[str, str]:
    """(plain text, HTML) of ``!report``'s answer."""
    title = (
        f"📊 Desk report {report.period.label} ({report.timezone}), against {report.previous.label}"
    )
    facts = key_lines(report)
    topics = [f"{topic_label.get(t, t)} {n}" for t, n in report.by_topic[:TOPICS_SHOWN]]
    if topics:
        facts.append("Topics: " + " · ".join(topics))
    if report.teams:
        facts.append(
            "Teams: "
            + " · ".join(
                f"{t.name} {t.chats} (missed {t.missed}, first reply {duration(t.wait_median)}, "
                f"{share(t.within_target)} within {duration(t.target).replace(' 00 s', '')})"
                for t in report.teams
            )
        )
    if report.tags or any(report.read_scale):
        tags = " · ".join(f"{t} {n}" for t, n in report.tags[:TOPICS_SHOWN]) or "–"
        scale = " ".join(f"{i + 1}:{n}" for i, n in enumerate(report.read_scale) if n)
        facts.append(f"Tags: {tags}; READ scale {scale or '–'}; untagged {report.untagged}")
    people = report.librarians
    lines = [title, *facts]
    if people:
        lines.append("Per librarian (chats · first reply · length · rating · transfers out/in):")
        lines.extend(
            f"• {p.name}: {p.served} · {duration(p.first_reply_median)} · "
            f"{duration(p.duration_median)} · {rating(p.rating_average)} ({p.rating_count}) · "
            f"{p.transfers_out}/{p.transfers_in}"
            for p in people
        )
    lines.append(link_note)
    text = "\n".join(lines)

    esc = html.escape
    parts = [f"<p><strong>{esc(title)}</strong></p><ul>"]
    parts.extend(f"<li>{esc(line)}</li>" for line in facts)
    parts.append("</ul>")
    if people:
        parts.append(
            "<table><thead><tr><th>Librarian</th><th>Chats</th><th>First reply (median)</th>"
            "<th>Length (median)</th><th>Rating</th><th>Transfers out/in</th></tr></thead><tbody>"
        )
        parts.extend(
            f"<tr><td>{esc(p.name)}</td><td>{p.served}</td>"
            f"<td>{esc(duration(p.first_reply_median))}</td>"
            f"<td>{esc(duration(p.duration_median))}</td>"
            f"<td>{esc(rating(p.rating_average))} ({p.rating_count})</td>"
            f"<td>{p.transfers_out}/{p.transfers_in}</td></tr>"
            for p in people
        )
        parts.append("</tbody></table>")
    parts.append(f"<p>{esc(link_note)}</p>")
    return text, "".join(parts)

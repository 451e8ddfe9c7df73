"""Matrix message content in and out: sanitized librarian HTML, notices with mentions."""

from __future__ import annotations

import html
import re
from typing import Any

from rooms.markup import sanitize_html

_REPLY_FALLBACK = re.compile(r"^(> .*\n)+\n", re.MULTILINE)


def strip_reply_fallback(body: str) -> str:
    return _REPLY_FALLBACK.sub("", body, count=1) if body.startswith("> ") else body


def text_and_html(content: dict[str, Any]) -> tuple[str, str | None]:
    """The plain body and, when the sender formatted it, sanitized HTML."""
    body = strip_reply_fallback(str(content.get("body", "")))
    formatted = content.get("formatted_body")
    if content.get("format") == "org.matrix.custom.html" and isinstance(formatted, str):
        cleaned = sanitize_html(formatted)
        if cleaned and cleaned != html.escape(body):
            return body, cleaned
    return body, None


def notice(
    body: str, mentions: list[str] | tuple[str, ...] = (), html_body: str | None = None
) -> dict[str, Any]:
    """A bot notice; listed users are mentioned intentionally so their clients ring."""
    content: dict[str, Any] = {"msgtype": "m.notice", "body": body}
    if html_body is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = html_body
    content["m.mentions"] = {"user_ids": sorted(set(mentions))} if mentions else {}
    return content


def pill(user_id: str, name: str | None = None) -> str:
    """An HTML mention link (Element shows it as a pill)."""
    label = html.escape(name or user_id)
    return f'<a href="https://matrix.to/#/{html.escape(user_id)}">{label}</a>'


def edit(original_event_id: str, new_content: dict[str, Any]) -> dict[str, Any]:
    """An m.replace edit of one of the bot's own messages."""
    return {
        **{k: v for k, v in new_content.items() if k != "m.mentions"},
        "body": f"* {new_content['body']}",
        "m.new_content": new_content,
        "m.relates_to": {"rel_type": "m.replace", "event_id": original_event_id},
        "m.mentions": {},
    }

"""End-of-chat feedback: a 1–5 rating and a comment, kept with the librarian who served."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.ids import SessionID
from rooms.session import ValidationError

COMMENT_MAX = 2000


@dataclass(frozen=True)
class Feedback:
    session_id: SessionID
    rating: int
    comment: str | None
    librarian: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def stars(self) -> str:
        return "★" * self.rating + "☆" * (5 - self.rating)


def validate_feedback(raw: dict[str, Any]) -> tuple[int, str | None]:
    problems: dict[str, str] = {}
    rating = raw.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        problems["rating"] = "must be a whole number from 1 to 5"
    comment = raw.get("comment")
    if comment is not None and not isinstance(comment, str):
        problems["comment"] = "must be a string"
    elif isinstance(comment, str) and len(comment.strip()) > COMMENT_MAX:
        problems["comment"] = f"must be at most {COMMENT_MAX} characters"
    for key in sorted(set(raw) - {"rating", "comment"}):
        problems[str(key)[:40]] = "unknown field"
    if problems:
        raise ValidationError(problems)
    assert isinstance(rating, int)
    text = comment.strip() if isinstance(comment, str) else None
    return rating, text or None

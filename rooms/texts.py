"""What the desk tells visitors in the chat, in their language (the words: the language files)."""

from __future__ import annotations

from rooms.language import language


def text(key: str, code: str, **values: object) -> str:
    return language(code).text("desk", key, **values)

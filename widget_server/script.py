"""``/widget.js``: the widget with the desk's languages written in, built once at start.

The widget's words come from the language files (:mod:`rooms.language`), so a language is added
without touching the script: the server writes the words of the languages the desk offers into
the one marked place. The result is kept with its gzip form and an ETag, so a visitor on a slow
connection downloads it compressed once and afterwards only asks whether it changed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from rooms.language import Language

SOURCE = Path(__file__).parent / "static" / "widget.js"
MARK = "/*refdesk:texts*/null"


@dataclass(frozen=True)
class Script:
    body: bytes
    gzipped: bytes
    etag: str

    async def response(self, request: web.Request) -> web.Response:
        headers = {
            "Content-Type": "text/javascript; charset=utf-8",
            "Cache-Control": "no-cache",  # ask each time; an unchanged script costs a 304
            "ETag": self.etag,
            "Vary": "Accept-Encoding",
        }
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", "").lower():
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=self.gzipped, headers=headers)
        return web.Response(body=self.body, headers=headers)


def words(languages: Iterable[Language]) -> dict[str, object]:
    """What the widget reads: its texts per language (with the language's own name, the rating
    scale and the locale) and the other codes browsers send."""
    texts: dict[str, object] = {}
    aliases: dict[str, str] = {}
    for language in languages:
        texts[language.code] = {
            **language.words("widget"),
            "langName": language.name,
            "r": list(language.ratings),
            "locale": language.locale,
        }
        aliases.update(dict.fromkeys(language.aliases, language.code))
    return {"texts": texts, "aliases": aliases}


def build(languages: Iterable[Language], source: Path = SOURCE) -> Script:
    template = source.read_text(encoding="ascii")
    if template.count(MARK) != 1:
        raise ValueError(f"{source} must hold {MARK} exactly once")
    # ASCII only (host pages may use any charset): json escapes everything else.
    data = json.dumps(words(languages), ensure_ascii=True, separators=(",", ":"))
    body = template.replace(MARK, data).encode("ascii")
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Script(body, gzip.compress(body, compresslevel=9, mtime=0), etag)

"""One knowledge base for the FAQ search and `!c`: config, ranking, the API, a librarian."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from refdesk.config import ConfigError, parse_config
from refdesk.embedded import embedded_config_data
from rooms.knowledge import Entry, KnowledgeBase
from tests.conftest import Stack
from tests.helpers import Librarian, Visitor
from tests.test_spine import open_chat

CARD = Entry(
    "card",
    {"id": "Bawa KTP ke loket {desk}.", "en": "Bring an ID card."},
    {"id": "Cara membuat kartu anggota", "en": "How to get a member card"},
    public=True,
)
WIFI = Entry(
    "wifi",
    {"id": "Sandi wifi ada di meja informasi.", "en": "The wifi password is at the desk."},
    {"id": "Sandi wifi perpustakaan", "en": "Library wifi password"},
    public=True,
)
PRIVATE = Entry("internal", {"id": "Kartu rusak: ganti gratis.", "en": "x"}, {}, public=False)


def test_search_ranks_by_question_and_hides_private_entries() -> None:
    kb = KnowledgeBase([CARD, WIFI, PRIVATE])
    assert [e.key for e in kb.search("kartu anggota", "id")] == ["card"]
    assert [e.key for e in kb.search("WIFI?", "id")] == ["wifi"]
    assert [e.key for e in kb.search("kar", "id")] == ["card"]  # prefix while typing
    assert kb.search("zzz", "id") == []
    assert {e.key for e in kb.search("", "en")} == {"card", "wifi"}
    assert kb.get("internal") is PRIVATE  # librarians can still send it with !c
    assert CARD.text("id", desk="Perpusnas") == "Bawa KTP ke loket Perpusnas."
    assert CARD.text("id") == "Bawa KTP ke loket ."  # a missing value never crashes


def test_config_builds_one_knowledge_base(tmp_path: Path) -> None:
    extra = tmp_path / "faq.yaml"
    extra.write_text(
        yaml.safe_dump({"opening": {"question": "Kapan buka?", "answer": "Senin-Jumat."}})
    )
    data = embedded_config_data(widget_port=1, homeserver_port=2, appservice_port=3, librarians=[])
    data["knowledge"] = {"files": [str(extra)], "entries": {"card": {"answer": "Bawa KTP"}}}
    data["desk"]["greeting"] = {"id": "Halo {visitor}!", "en": "Hi {visitor}!"}
    config = parse_config(data)
    keys = {e.key: e for e in config.desk.knowledge}
    assert {"hours", "membership", "opening", "card"} <= set(keys)
    assert keys["opening"].public and not keys["card"].public and not keys["hours"].public
    assert config.desk.greeting["en"] == "Hi {visitor}!"
    data["knowledge"] = {"entries": {"bad": {"question": "Q?", "answer": 3}}}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == "knowledge.entries.bad.answer"
    data["knowledge"] = {"entries": {"x": {"answer": "A", "public": True}}}
    with pytest.raises(ConfigError, match="needs a question"):
        parse_config(data)
    data["knowledge"] = {"files": [str(tmp_path / "missing.yaml")]}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == "knowledge.files[0]"


async def test_faq_search_through_the_api(stack: Stack, visitor: Visitor) -> None:
    status, body = await visitor.request("GET", "/api/faq?q=kartu%20anggota&language=id")
    assert status == 200
    assert body["entries"][0]["key"] == "membership-card"
    assert body["entries"][0]["question"] == "Bagaimana cara membuat kartu anggota?"
    status, body = await visitor.request("GET", "/api/faq?q=journal%20login&language=en")
    assert [e["key"] for e in body["entries"]] == ["ejournal-login"]
    # Private canned answers are not offered to visitors.
    status, body = await visitor.request("GET", "/api/faq?q=open&language=en")
    assert "hours" not in [e["key"] for e in body["entries"]]
    status, body = await visitor.request("GET", "/api/faq?language=xx")
    assert (status, body["error"]) == (400, "bad_parameter")
    status, body = await visitor.request("GET", "/api/faq?q=" + "a" * 201)
    assert (status, body["error"]) == (400, "bad_parameter")


async def test_librarian_sends_a_faq_entry_with_the_same_command(
    stack: Stack, visitor: Visitor, librarians: dict[str, Librarian]
) -> None:
    sari = librarians["sari"]
    room_id = await open_chat(stack, visitor, sari, "Saya tidak bisa login e-journal")
    await sari.send(room_id, "!c ejournal-login")
    sent = await visitor.wait_for(lambda m: m["body"].startswith("Gunakan nomor anggota"))
    assert sent["origin"] == "librarian"

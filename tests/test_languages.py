"""Languages are data (issue 14): one file per language, checked at start; a third language is a
file and two lines of config, and the widget, the desk's notices, the hours and the emails all
speak it."""

from __future__ import annotations

import copy
import gzip
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import ClientSession
from playwright.async_api import Browser, expect

from refdesk.config import ConfigError, parse_config
from refdesk.language_files import BUILTIN, available, builtin, parse_language
from rooms.hours import format_next_open
from rooms.language import Languages, install, installed
from rooms.texts import text
from tests.conftest import Stack
from tests.helpers import Librarian
from tests.test_config import good
from tests.test_widget_browser import (  # noqa: F401
    browser,
    bubbles,
    demo_page,
    open_form,
)
from tests.test_widget_browser_more import join_session
from widget_server import script

# A third language as an admin would add it: Malay, from the Indonesian file (close kin), with
# the texts a test reads translated.
MALAY = {
    "name": "Bahasa Melayu",
    "locale": "ms-MY",
    "aliases": [],
    "holidays": None,
    ("widget", "launch"): "Sembang dengan pustakawan",
    ("widget", "title"): "Tanya Pustakawan Kami",
    ("widget", "question"): "Soalan anda",
    ("widget", "start"): "Mula sembang",
    ("desk", "claimed"): "{librarian} kini membantu anda.",
    ("topics", "other"): "Lain-lain",
    ("dates", "tomorrow"): "esok pada {clock}",
    ("transcript", "title"): "Transkrip sembang",
}


def raw(code: str) -> dict[str, Any]:
    data = yaml.safe_load((BUILTIN / f"{code}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def malay() -> dict[str, Any]:
    data = raw("id")
    for key, value in MALAY.items():
        if isinstance(key, tuple):
            data[key[0]][key[1]] = value
        else:
            data[key] = value
    return data


def write_malay(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ms.yaml"
    path.write_text(yaml.safe_dump(malay(), allow_unicode=True), encoding="utf-8")
    return path


def speaking(data: Any, code: str, like: str = "id") -> Any:
    """The config ``data`` with a ``code`` text beside every per-language ``like`` text."""
    if isinstance(data, dict):
        out = {key: speaking(value, code, like) for key, value in data.items()}
        if like in out and "en" in out and isinstance(out[like], str):
            out[code] = out[like]
        return out
    if isinstance(data, list):
        return [speaking(item, code, like) for item in data]
    return data


def problem(code: str, data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_language(code, data, builtin()["en"])
    return str(info.value)


# -- the files ----------------------------------------------------------------------------------


def test_the_built_in_languages_hold_every_text_with_the_same_placeholders() -> None:
    languages = builtin()
    assert set(languages) >= {"id", "en"}
    english = languages["en"]
    for language in languages.values():
        for section, words in english.sections.items():
            assert set(language.sections[section]) == set(words), (language.code, section)
    indonesian = languages["id"]
    assert indonesian.clock(time(9, 5)) == "09.05" and english.clock(time(9, 5)) == "09:05"
    assert indonesian.long_date(date(2027, 6, 30)) == "30 Juni 2027"
    assert indonesian.aliases == ("in",)  # what older browsers send for Indonesian


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("widget", "send", None), "widget.send: is required"),
        (("widget", "sendd", "Kirim"), "widget.sendd: is not a known setting"),
        (("desk", "claimed", "Dilayani."), "desk.claimed: must use exactly {librarian}"),
        (("desk", "claimed", "{pustakawan} melayani"), "desk.claimed: must use exactly"),
        (
            ("widget", "pos", "Antrean nomor"),
            "widget.pos: must use exactly no {placeholder} and 1 %s",
        ),
        (("desk", "escalated", "nomor {position"), "desk.escalated: has an unmatched"),
        (("days", None, ["Senin"]), "days: must list 7 non-empty texts"),
        (("ratings", None, [1, 2, 3, 4, 5]), "ratings: must list 5"),
        (("clock", None, "{hour}"), "clock: must use exactly {hour}, {minute}"),
        (("name", None, None), "name: is required"),
        (("colour", None, "red"), "colour: is not a known setting"),
        (("aliases", None, ["Indonesian"]), "aliases: must list language codes"),
    ],
)
def test_a_broken_language_file_is_refused_with_the_key_named(
    change: tuple[str, str | None, Any], words: str
) -> None:
    data = malay()
    section, key, value = change
    node, name = (data[section], key) if key is not None else (data, section)
    if value is None:
        node.pop(name, None)
    else:
        node[name] = value
    assert words in problem("ms", data)


def test_file_problems_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "ms.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"ms\.yaml: not valid YAML at line 2"):
        available(tmp_path)
    data = malay()
    del data["desk"]["claimed"]
    (tmp_path / "ms.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        available(tmp_path)
    assert str(info.value) == f"{tmp_path / 'ms.yaml'}: desk.claimed: is required"
    (tmp_path / "ms.yaml").unlink()
    write_malay(tmp_path).rename(tmp_path / "Malay.yaml")
    with pytest.raises(ConfigError, match="named by its code"):
        available(tmp_path)


# -- the config ---------------------------------------------------------------------------------


def test_a_third_language_is_a_file_and_the_config_names_it(tmp_path: Path) -> None:
    write_malay(tmp_path / "languages")
    data = speaking(good(), "ms")
    data["desk"]["languages_directory"] = "languages"  # relative to the config file
    data["desk"]["languages"] = ["id", "en", "ms"]
    config = parse_config(data, source=tmp_path / "refdesk.yaml")
    assert config.desk.languages.codes == ("id", "en", "ms")
    assert config.desk.languages["ms"].name == "Bahasa Melayu"
    # The built-in topics (the config lists none) are labelled by each language's file.
    assert dict(config.desk.topics[-1].labels) == {
        "id": "Lainnya",
        "en": "Other",
        "ms": "Lain-lain",
    }
    # Left out, desk.languages offers every language there is, the default first.
    del data["desk"]["languages"]
    data["desk"]["default_language"] = "en"
    config = parse_config(data, source=tmp_path / "refdesk.yaml")
    assert config.desk.languages.codes == ("en", "id", "ms")


@pytest.mark.parametrize(
    ("desk", "path", "words"),
    [
        ({"languages": ["id", "fr"]}, "desk.languages[1]", "no language file for 'fr'"),
        ({"languages": ["id", "en", "id"]}, "desk.languages", "twice"),
        ({"languages": ["en"]}, "desk.default_language", "one of desk.languages (en)"),
        ({"languages_directory": "nowhere"}, "desk.languages_directory", "not a directory"),
        ({"languages": "id"}, "desk.languages", "must be a list"),
    ],
)
def test_language_settings_name_the_key(
    tmp_path: Path, desk: dict[str, Any], path: str, words: str
) -> None:
    data = copy.deepcopy(good())
    data["desk"].update(desk)
    with pytest.raises(ConfigError) as info:
        parse_config(data, source=tmp_path / "refdesk.yaml")
    assert info.value.path == path and words in info.value.problem


def test_a_per_language_setting_without_the_third_language_names_the_key(tmp_path: Path) -> None:
    write_malay(tmp_path)
    data = copy.deepcopy(good())
    data["desk"]["languages_directory"] = str(tmp_path)
    data["desk"]["languages"] = ["id", "en", "ms"]
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == "desk.canned.hours.ms" and info.value.problem == "is required"


def test_a_chat_in_a_language_the_desk_dropped_reads_in_the_default() -> None:
    saved = installed()
    try:
        install(Languages([builtin()["en"], builtin()["id"]], "en"))
        assert text("claimed", "ms", librarian="Dewi") == "Dewi is now helping you."
    finally:
        install(saved)


# -- the widget's script ------------------------------------------------------------------------


def test_the_script_carries_the_offered_languages_in_ascii(tmp_path: Path) -> None:
    english, indonesian = builtin()["en"], builtin()["id"]
    ms = parse_language("ms", malay(), english)
    built = script.build([indonesian, english, ms])
    body = built.body.decode("ascii")  # raises on anything else
    assert "/*refdesk:texts*/" not in body
    assert '"ms":{' in body and "Sembang dengan pustakawan" in body
    assert body.index('"id":{') < body.index('"en":{')  # the default first: the widget's fallback
    assert '"aliases":{"in":"id"}' in body
    assert gzip.decompress(built.gzipped) == built.body
    only = script.build([english])
    assert '"id":{' not in only.body.decode() and only.etag != built.etag


async def test_the_script_is_served_compressed_and_revalidated(stack: Stack) -> None:
    async with ClientSession() as http:
        url = f"{stack.widget_url}/widget.js"
        async with http.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
            assert resp.headers["Cache-Control"] == "no-cache"
            etag = resp.headers["ETag"]
            body = await resp.read()  # aiohttp decompresses
        assert b"Chat with a librarian" in body and b"Obrolan dengan pustakawan" in body
        async with http.get(url, headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304 and not await resp.read()
        async with http.get(url, headers={"Accept-Encoding": "identity"}) as resp:
            assert "Content-Encoding" not in resp.headers and await resp.read() == body


# -- end to end ---------------------------------------------------------------------------------


async def test_a_malay_browser_gets_the_third_language_everywhere(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
    tmp_path: Path,
) -> None:
    """With ms.yaml in the languages directory and ``ms`` in ``desk.languages`` (no code), a
    Malay browser gets the widget in Malay, the switch goes round all three languages, the
    desk's notice in the chat is Malay, and so is the next opening."""
    write_malay(tmp_path / "languages")
    data = speaking(yaml.safe_load(stack.config_path.read_text(encoding="utf-8")), "ms")
    data["desk"]["languages_directory"] = str(tmp_path / "languages")
    data["desk"]["languages"] = ["id", "en", "ms"]
    saved, malay_config = stack.config, parse_config(data, source=stack.config_path)
    await stack.stop_refdesk()
    stack.config = malay_config
    try:
        await stack.start_refdesk()
        async with demo_page(browser, stack, locale="ms-MY") as page:
            launcher = page.locator("[data-refdesk=launcher]")
            await expect(launcher).to_have_attribute("aria-label", "Sembang dengan pustakawan")
            await open_form(page)
            panel = page.locator("[data-refdesk=panel]")
            await expect(panel).to_have_attribute("lang", "ms")
            form = page.locator("[data-refdesk=form]")
            await expect(form.locator("label[for=rd-question]")).to_contain_text("Soalan anda")
            await expect(form.locator("[name=topic] option").last).to_have_text("Lain-lain")
            switch = page.locator("[data-refdesk=language]")
            for shown, then in (("ID", "id"), ("EN", "en"), ("MS", "ms")):
                await expect(switch).to_have_text(shown)
                await switch.click()
                await expect(panel).to_have_attribute("lang", then)
            await expect(switch).to_have_attribute("aria-label", "Bahasa Indonesia")

            dewi = librarians["dewi"]
            await form.locator("[name=name]").fill("Aminah")
            await form.locator("[name=email]").fill("aminah@example.my")
            await form.locator("[name=topic]").select_option("other")
            await form.locator("[name=question]").fill("Ada buku Hamka?")
            await form.locator("[data-refdesk=start]").click()
            await expect(bubbles(page, "visitor")).to_have_count(1)
            _, room_id = await join_session(stack, page, dewi)
            await dewi.send(room_id, "!claim")
            said = "Dewi Librarian kini membantu anda."
            await expect(bubbles(page, "desk").filter(has_text=said)).to_have_count(1)
        # The hours speak it too: 09.00 WIB tomorrow, asked at 21.00 WIB.
        opens, now = datetime(2026, 3, 3, 2, tzinfo=UTC), datetime(2026, 3, 2, 14, tzinfo=UTC)
        assert format_next_open(opens, now, ZoneInfo("Asia/Jakarta"), "ms") == "esok pada 09.00"
    finally:
        await stack.restore(saved)

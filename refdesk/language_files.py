"""Language files: every text a visitor reads, one YAML file per language.

refdesk ships ``id.yaml`` and ``en.yaml`` in ``refdesk/languages/``; an admin adds a language by
putting ``<code>.yaml`` in the directory named by ``desk.languages_directory`` (a file there with
a built-in code replaces the built-in one) and listing the code in ``desk.languages``. Each file is
checked against the English one: the same keys (none missing, none unknown), the same
``{placeholders}`` and ``%s`` in every text, seven days, twelve months, five ratings. A problem
stops the start with the file and the key named.
"""

from __future__ import annotations

import re
import string
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from refdesk.config_reader import ConfigError, Reader
from rooms.language import SECTIONS, Language, Languages, install

BUILTIN = Path(__file__).parent / "languages"
REFERENCE = "en"  # the file every other is checked against
CODE = re.compile(r"^[a-z]{2,3}$")  # ISO 639-1 or 639-3: what a browser sends first
_LISTS = {"days": 7, "months": 12, "ratings": 5}


def _placeholders(text: str) -> tuple[frozenset[str], int]:
    names = frozenset(name for _, name, _, _ in string.Formatter().parse(text) if name is not None)
    return names, text.count("%s")


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(path), f"not valid YAML{where}") from None


def _text(reader: Reader, key: str, like: str | None) -> str:
    value = reader.text(key)
    if like is not None:
        try:
            found = _placeholders(value)
        except ValueError:
            raise ConfigError(reader._key(key), "has an unmatched { or }") from None
        want = _placeholders(like)
        if found != want:
            names = ", ".join(f"{{{n}}}" for n in sorted(want[0])) or "no {placeholder}"
            shown = f"{names} and {want[1]} %s" if want[1] else names
            raise ConfigError(reader._key(key), f"must use exactly {shown}, as in {like!r}")
    return value


def parse_language(code: str, data: Any, reference: Language | None) -> Language:
    """One language file's contents (``reference``: the English one, to check against)."""
    root = Reader(data)

    def like(section: str, key: str) -> str | None:
        return reference.sections[section].get(key) if reference else None

    lists: dict[str, tuple[str, ...]] = {}
    for key, count in _LISTS.items():
        items = root.items(key)
        if len(items) != count or not all(isinstance(i, str) and i.strip() for i in items):
            raise ConfigError(key, f"must list {count} non-empty texts")
        lists[key] = tuple(items)
    aliases = root.items("aliases", [])
    if not all(isinstance(a, str) and CODE.match(a) for a in aliases):
        raise ConfigError("aliases", "must list language codes like 'in'")
    holidays = root._get("holidays", None)
    if holidays is not None and not isinstance(holidays, str):
        raise ConfigError("holidays", "must be a language code of the holidays library, or null")
    sections: dict[str, dict[str, str]] = {}
    for name in SECTIONS:
        section = root.section(name)
        keys = list(reference.sections[name]) if reference else [str(k) for k in section.data]
        sections[name] = {key: _text(section, key, like(name, key)) for key in keys}
        section.check_unknown()
    clock = _text(root, "clock", reference.clock_pattern if reference else "{hour}{minute}")
    language = Language(
        code=code,
        name=root.text("name"),
        locale=root.text("locale"),
        days=lists["days"],
        months=lists["months"],
        ratings=lists["ratings"],
        closed=root.text("closed"),
        clock_pattern=clock,
        sections=sections,
        aliases=tuple(aliases),
        holidays=holidays,
    )
    root.check_unknown()
    return language


def _load(path: Path, reference: Language | None) -> Language:
    try:
        return parse_language(path.stem, _read(path), reference)
    except ConfigError as exc:
        if exc.path.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc.path}" if exc.path else str(path), exc.problem) from None


@cache
def builtin() -> dict[str, Language]:
    """The languages refdesk ships, by code."""
    reference = _load(BUILTIN / f"{REFERENCE}.yaml", None)
    found = {REFERENCE: reference}
    for path in sorted(BUILTIN.glob("*.yaml")):
        if path.stem != REFERENCE:
            found[path.stem] = _load(path, reference)
    return found


def available(directory: Path | None) -> dict[str, Language]:
    """The built-in languages, and those in ``directory`` (which may replace a built-in one)."""
    found = dict(builtin())
    if directory is None:
        return found
    if not directory.is_dir():
        raise ConfigError("desk.languages_directory", f"{directory} is not a directory")
    for path in sorted(directory.glob("*.yaml")):
        if not CODE.match(path.stem):
            raise ConfigError(
                str(path), "a language file is named by its code, like ms.yaml or jv.yaml"
            )
        found[path.stem] = _load(path, found[REFERENCE])
    return found


def install_builtin(fallback: str = "id") -> Languages:
    """Speak the built-in languages (commands and tests that read no config)."""
    languages = Languages(builtin().values(), fallback)
    install(languages)
    return languages

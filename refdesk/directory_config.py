"""The ``verification:`` section of the config and the member directory it describes.

Every problem raises :class:`refdesk.config_reader.ConfigError` with its key path
(``verification.directory.base_url: is required``). Secrets (passwords, client secrets, header
values, an API key in a URL) are kept out of every ``repr`` and never quoted in an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from directories.http_json import PLACEHOLDER as MEMBER_NUMBER_PLACEHOLDER
from directories.http_json import FieldMapping, HttpJsonDirectory
from directories.koha import KohaAuth, KohaBasicAuth, KohaDirectory, KohaOAuth
from directories.local import DirectoryFileError, LocalDirectory
from refdesk.config_reader import PLACEHOLDER, ConfigError, Reader
from rooms.directory import (
    DATE_OF_BIRTH,
    FIELDS,
    MEMBER_NUMBER,
    PHONE,
    SECRET_FIELDS,
    MemberDirectory,
)
from rooms.verification import VerificationRules

SECTION = "verification"
DEMO_MEMBERS = Path(__file__).resolve().with_name("demo_members.yaml")
DEFAULT_FIELDS = (MEMBER_NUMBER, DATE_OF_BIRTH)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


@dataclass(frozen=True)
class LocalDirectoryConfig:
    path: Path

    @property
    def is_demo(self) -> bool:
        return self.path == DEMO_MEMBERS


@dataclass(frozen=True)
class KohaDirectoryConfig:
    base_url: str
    auth: KohaAuth  # its secret is repr=False
    timeout: float = 5.0
    category_names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpDirectoryConfig:
    url: str = field(repr=False)  # may carry an API key in its query
    mapping: FieldMapping
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    timeout: float = 5.0


SourceConfig = LocalDirectoryConfig | KohaDirectoryConfig | HttpDirectoryConfig


@dataclass(frozen=True)
class DirectoryConfig:
    """The whole ``verification:`` section."""

    fields: tuple[str, ...] = DEFAULT_FIELDS
    auto_after_claim: bool = False
    max_attempts_per_session: int = 3
    max_attempts_per_client: int = 10
    directory: SourceConfig = field(default_factory=lambda: LocalDirectoryConfig(DEMO_MEMBERS))

    @property
    def rules(self) -> VerificationRules:
        return VerificationRules(
            fields=self.fields,
            max_attempts_per_session=self.max_attempts_per_session,
            max_attempts_per_client=self.max_attempts_per_client,
        )


def _seconds(reader: Reader, key: str, default: float) -> float:
    reader.seen.add(key)
    value = reader.data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 60:
        raise ConfigError(reader._key(key), "must be a number of seconds from 0.1 to 60")
    return float(value)


def _secret(reader: Reader, key: str) -> str:
    """A required secret; the error never quotes it."""
    reader.seen.add(key)
    value = reader.data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(reader._key(key), "is required (a non-empty string)")
    if PLACEHOLDER in value:
        raise ConfigError(reader._key(key), "still holds the placeholder; put the real secret")
    return value


def _http_url(reader: Reader, key: str, *, quote_value: bool) -> str:
    reader.seen.add(key)
    value = reader.data.get(key)
    path = reader._key(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "is required (an http:// or https:// URL)")
    value = value.strip()
    shown = f", got {value!r}" if quote_value else ""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ConfigError(path, f"is not a valid URL{shown}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, f"must be an http:// or https:// URL{shown}")
    if "@" in parts.netloc:
        raise ConfigError(path, "must not hold a user or password; use the auth settings")
    return value


def _fields(reader: Reader) -> tuple[str, ...]:
    raw = reader.items("fields", list(DEFAULT_FIELDS))
    path = reader._key("fields")
    chosen: list[str] = []
    for index, name in enumerate(raw):
        if name not in FIELDS:
            raise ConfigError(f"{path}[{index}]", f"must be one of {', '.join(FIELDS)}")
        if name in chosen:
            raise ConfigError(f"{path}[{index}]", f"{name} is listed twice")
        chosen.append(name)
    if MEMBER_NUMBER not in chosen:
        raise ConfigError(path, "must include member_number")
    if not set(SECRET_FIELDS) & set(chosen):
        raise ConfigError(path, "must include date_of_birth, phone or both")
    # The widget asks in a fixed order: member number first.
    return tuple(name for name in FIELDS if name in chosen)


def _local(reader: Reader, base_dir: Path) -> LocalDirectoryConfig:
    reader.seen.add("path")
    raw = reader.data.get("path")
    if raw is None:
        return LocalDirectoryConfig(DEMO_MEMBERS)
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(reader._key("path"), "must be the path of a YAML member file")
    path = Path(raw).expanduser()
    return LocalDirectoryConfig(path if path.is_absolute() else base_dir / path)


def _koha(reader: Reader) -> KohaDirectoryConfig:
    base_url = _http_url(reader, "base_url", quote_value=True).rstrip("/")
    ar = reader.section("auth")
    kind = ar.text("type")
    auth: KohaAuth
    if kind == "basic":
        auth = KohaBasicAuth(ar.text("username"), _secret(ar, "password"))
    elif kind == "oauth":
        auth = KohaOAuth(ar.text("client_id"), _secret(ar, "client_secret"))
    else:
        raise ConfigError(ar._key("type"), "must be basic or oauth")
    ar.check_unknown()
    reader.seen.add("category_names")
    names = reader.data.get("category_names") or {}
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in names.items()
    ):
        raise ConfigError(
            reader._key("category_names"),
            "must map Koha category codes to names, like MHS: Mahasiswa",
        )
    return KohaDirectoryConfig(
        base_url=base_url,
        auth=auth,
        timeout=_seconds(reader, "timeout_seconds", 5.0),
        category_names={k: v.strip() for k, v in names.items()},
    )


def _mapping(reader: Reader, fields: tuple[str, ...]) -> FieldMapping:
    mr = reader.section("mapping")

    def one(key: str, needed: bool) -> str | None:
        mr.seen.add(key)
        value = mr.data.get(key)
        if value is None:
            if needed:
                why = "" if key == "name" else f": verification.fields asks for {key}"
                raise ConfigError(mr._key(key), f"is required{why}")
            return None
        if not isinstance(value, str) or not _PATH.match(value):
            raise ConfigError(mr._key(key), "must be a dotted path into the answer, like data.name")
        return value

    mr.seen.add(PHONE)
    raw_phone = mr.data.get(PHONE)
    phones: list[str] = []
    if raw_phone is not None:
        phones = raw_phone if isinstance(raw_phone, list) else [raw_phone]
    for index, item in enumerate(phones):
        if not isinstance(item, str) or not _PATH.match(item):
            place = mr._key(PHONE) + (f"[{index}]" if isinstance(raw_phone, list) else "")
            raise ConfigError(place, "must be a dotted path (or a list of them), like data.mobile")
    if PHONE in fields and not phones:
        raise ConfigError(mr._key(PHONE), "is required: verification.fields asks for phone")
    mapping = FieldMapping(
        name=one("name", True) or "",
        member_type=one("member_type", False),
        expires=one("expires", False),
        date_of_birth=one(DATE_OF_BIRTH, DATE_OF_BIRTH in fields),
        phone=tuple(phones),
    )
    mr.check_unknown()
    return mapping


def _http(reader: Reader, fields: tuple[str, ...]) -> HttpDirectoryConfig:
    url = _http_url(reader, "url", quote_value=False)
    if MEMBER_NUMBER_PLACEHOLDER not in url:
        raise ConfigError(reader._key("url"), f"must contain {MEMBER_NUMBER_PLACEHOLDER}")
    reader.seen.add("headers")
    raw_headers = reader.data.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise ConfigError(reader._key("headers"), "must map header names to values")
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        place = f"{reader._key('headers')}.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigError(place, "is not a valid HTTP header name")
        if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
            raise ConfigError(place, "must be a one-line text")
        if PLACEHOLDER in value:
            raise ConfigError(place, "still holds the placeholder; put the real value")
        headers[name] = value.strip()
    return HttpDirectoryConfig(
        url=url,
        mapping=_mapping(reader, fields),
        headers=headers,
        timeout=_seconds(reader, "timeout_seconds", 5.0),
    )


def parse_directory(data: dict[str, Any] | None, base_dir: Path) -> DirectoryConfig:
    """Build the ``verification:`` section (``None``: all defaults, the demo member list).

    Relative paths are taken from ``base_dir`` (the config file's folder).
    """
    reader = Reader(data, SECTION)
    fields = _fields(reader)
    auto_after_claim = reader.boolean("auto_after_claim", False)
    per_session = reader.integer("max_attempts_per_session", 3, low=1, high=20)
    per_client = reader.integer("max_attempts_per_client", 10, low=1, high=1000)
    dr = reader.section("directory", required=False)
    kind = dr.text("type", "local")
    source: SourceConfig
    if kind == "local":
        source = _local(dr, base_dir)
    elif kind == "koha":
        source = _koha(dr)
    elif kind == "http":
        source = _http(dr, fields)
    else:
        raise ConfigError(dr._key("type"), "must be local, koha or http")
    dr.check_unknown()
    reader.check_unknown()
    return DirectoryConfig(fields, auto_after_claim, per_session, per_client, source)


def demo_warning(cfg: DirectoryConfig | None) -> str | None:
    """What to tell the admin while visitors are checked against the bundled demo list."""
    if cfg is None or not isinstance(cfg.directory, LocalDirectoryConfig):
        return None
    if not cfg.directory.is_demo:
        return None
    return (
        f"{SECTION}.directory: visitors are verified against refdesk's demo list of invented "
        f"members ({DEMO_MEMBERS}), not the library's; point {SECTION}.directory at your member "
        "directory (path: a YAML member list, or type: koha or http)"
    )


def build_directory(cfg: DirectoryConfig) -> MemberDirectory:
    """The directory the config describes. A local member file is read (and checked) now."""
    source = cfg.directory
    if isinstance(source, LocalDirectoryConfig):
        try:
            directory = LocalDirectory.from_file(source.path)
        except DirectoryFileError as exc:
            raise ConfigError(f"{SECTION}.directory.path", f"{source.path}: {exc}") from None
        return directory
    if isinstance(source, KohaDirectoryConfig):
        return KohaDirectory(
            source.base_url,
            source.auth,
            timeout=source.timeout,
            category_names=source.category_names,
        )
    return HttpJsonDirectory(
        source.url, source.mapping, headers=source.headers, timeout=source.timeout
    )

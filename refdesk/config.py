"""Typed configuration, built once at start from one YAML file.

Every problem is reported with its key path (``widget.listen_port: must be an integer``) so an
admin can fix the file without reading code. The admin's file is never rewritten, except
for one line edit: `refdesk generate-registration` fills in the appservice tokens while they
still hold the placeholder (:mod:`refdesk.config_file`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from mailer.settings import MailSettings
from refdesk.config_reader import PLACEHOLDER, ConfigError, Reader
from refdesk.cooperative_config import parse_cooperative
from refdesk.directory_config import DirectoryConfig, parse_directory
from refdesk.hours_config import HoursConfig, parse_hours
from refdesk.language_files import available
from rooms.attachments import GROUPS, AttachmentRules
from rooms.cooperative import CooperativeRules
from rooms.knowledge import Entry
from rooms.language import Languages
from rooms.reporting import ReportRules
from rooms.reports import parse_tags

# Outgoing mail (transcripts, offline replies): the config section is the mailer's own settings.
EmailConfig = MailSettings

_MXID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-\[\]:]+$")
_LOCALPART = re.compile(r"^[a-z0-9._=\-/]+$")
_TOPIC_ID = re.compile(r"^[a-z0-9_\-]{1,40}$")


@dataclass(frozen=True)
class HomeserverConfig:
    url: str
    domain: str
    # A server admin's access token (Synapse): purged chats' rooms are deleted, not redacted.
    admin_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AppserviceConfig:
    id: str
    listen_host: str
    listen_port: int
    url: str
    as_token: str = field(repr=False)
    hs_token: str = field(repr=False)
    bot_localpart: str
    bot_displayname: str
    ghost_prefix: str


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded")


@dataclass(frozen=True)
class Invitation:
    """A friendly "can we help?" prompt the widget shows on matching pages (off by default)."""

    after: int = 30  # seconds on the page first
    pages: tuple[str, ...] = ()  # URL patterns (* any text); none: every page
    text: dict[str, str] = field(default_factory=dict)  # per language; none: the widget's own


@dataclass(frozen=True)
class WidgetConfig:
    listen_host: str
    listen_port: int
    public_url: str
    allowed_origins: tuple[str, ...]
    """Normalised origins (``https://lib.example``, lower case, no default port) or ``*``."""
    max_message_length: int
    new_sessions_per_minute: int = 10
    edit_window: int = 900
    """Seconds during which a visitor may edit or delete their own message (0: never)."""
    invitation: Invitation | None = None
    trusted_proxies: tuple[IPNetwork, ...] = LOOPBACK
    forwarded_header: str = "x-forwarded-for"
    attachments: AttachmentRules = field(default_factory=AttachmentRules)

    @property
    def own_origin(self) -> str:
        """The origin of ``public_url``: where the demo page is served from."""
        origin = web_origin(self.public_url)
        assert origin is not None  # public_url is checked to be an http(s) URL
        return origin


def web_origin(url: str) -> str | None:
    """The origin of an http(s) URL as browsers send it (``scheme://host[:port]``, lower case,
    no default port), or None when ``url`` has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower case; IPv6 without brackets
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class Topic:
    id: str
    labels: dict[str, str]


@dataclass(frozen=True)
class TeamConfig:
    """One of ``desk.teams``: some of the desk's librarians with their own hours, target and
    way of being rung (rooms/teams.py)."""

    id: str
    name: str
    members: tuple[str, ...]
    hours: HoursConfig | None = None  # None: the desk's
    first_response_target: int | None = None  # seconds; None: desk.first_response_target
    overflow_after: int = 60
    assignment: str = "ring_all"  # or fair
    accept_within: int = 60
    max_active_chats: int | None = None  # None: desk.max_active_chats


@dataclass(frozen=True)
class RouteConfig:
    """One of ``desk.routing``: chats with one of ``topics`` on a page matching one of
    ``pages`` (either may be empty: any) go to ``team``."""

    team: str
    topics: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()


ASSIGNMENTS = ("ring_all", "fair")


@dataclass(frozen=True)
class DeskConfig:
    name: str
    librarians: tuple[str, ...]
    default_language: str
    timezone: str
    topics: tuple[Topic, ...]
    languages: Languages  # offered to visitors, the default first (its fallback)
    supervisors: tuple[str, ...] = ()
    escalate_after: int = 120
    canned: dict[str, dict[str, str]] = field(default_factory=dict)
    greeting: dict[str, str] = field(default_factory=dict)
    knowledge: tuple[Entry, ...] = ()
    teams: tuple[TeamConfig, ...] = ()
    routing: tuple[RouteConfig, ...] = ()
    max_active_chats: int | None = None  # per librarian; None: no limit
    first_response_target: int = 300


@dataclass(frozen=True)
class DatabaseConfig:
    """The store: a SQLite file (``path``, the default) or a PostgreSQL server (``url``)."""

    path: Path | None = None
    url: str | None = field(default=None, repr=False)  # may hold a password

    @property
    def target(self) -> str | Path:
        """What ``rooms.store.open_database`` opens."""
        if self.url is not None:
            return self.url
        assert self.path is not None
        return self.path

    @property
    def shown(self) -> str:
        """Where the store is, for messages and logs (never a password)."""
        if self.url is not None:
            parts = urlsplit(self.url)
            port = f":{parts.port}" if parts.port else ""
            return f"PostgreSQL {parts.hostname or 'localhost'}{port}{parts.path or '/'}"
        return f"SQLite {self.path}"


@dataclass(frozen=True)
class OfflineConfig:
    batch_delay: int = 60
    unseen_after: int = 300
    link_valid_days: int = 14
    resume_page: str | None = None  # default: the widget server's demo page


RETENTION_KEYS = ("messages", "attachments", "feedback_comments", "verification_audit")


@dataclass(frozen=True)
class PrivacyConfig:
    """Days each kind of data is kept after a chat closes (None: forever)."""

    retention: dict[str, int | None] = field(
        default_factory=lambda: dict.fromkeys(RETENTION_KEYS, 180)
    )
    notice: dict[str, str] = field(default_factory=dict)  # the widget's privacy line, per language
    link: str | None = None  # the library's privacy policy page


@dataclass(frozen=True)
class MetricsConfig:
    """``/metrics`` for Prometheus: on the appservice listener, and on ``listen_port`` if set;
    never on the widget's port."""

    enabled: bool = True
    listen_host: str = "127.0.0.1"
    listen_port: int | None = None  # a listener of its own (None: the appservice's only)
    bearer_token: str | None = field(default=None, repr=False)  # None: none asked
    allowed_networks: tuple[IPNetwork, ...] = ()  # who may scrape (none: whoever reaches it)


@dataclass(frozen=True)
class LoggingConfig:
    level: str


@dataclass(frozen=True)
class Config:
    homeserver: HomeserverConfig
    appservice: AppserviceConfig
    widget: WidgetConfig
    desk: DeskConfig
    database: DatabaseConfig
    logging: LoggingConfig
    email: EmailConfig = field(default_factory=EmailConfig)
    source: Path | None = None
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    verification: DirectoryConfig | None = None  # None: off
    hours: HoursConfig | None = None  # None: always open
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    reports: ReportRules = field(default_factory=ReportRules)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cooperative: CooperativeRules = field(default_factory=CooperativeRules)  # no partners: off

    @property
    def bot_mxid(self) -> str:
        return f"@{self.appservice.bot_localpart}:{self.homeserver.domain}"


# The built-in topics, when the config lists none: labelled by each language file.
DEFAULT_TOPICS = ("literature", "membership", "eresources", "complaint", "other")


def _topics(reader: Reader, languages: Languages) -> tuple[Topic, ...]:
    if reader.data.get("topics") is None:
        reader.seen.add("topics")
        return tuple(
            Topic(key, {lang.code: lang.text("topics", key) for lang in languages})
            for key in DEFAULT_TOPICS
        )
    raw = reader.items("topics")
    if not raw:
        raise ConfigError(reader._key("topics"), "must list at least one topic")
    topics: list[Topic] = []
    for index, item in enumerate(raw):
        item_reader = Reader(item, f"{reader._key('topics')}[{index}]")
        topic_id = item_reader.text("id")
        if not _TOPIC_ID.match(topic_id):
            raise ConfigError(item_reader._key("id"), "must be 1-40 of a-z, 0-9, _ and -")
        if any(t.id == topic_id for t in topics):
            raise ConfigError(item_reader._key("id"), f"duplicate topic id {topic_id!r}")
        labels = item_reader.section("label")
        label_map = {lang: labels.text(lang) for lang in languages.codes}
        labels.check_unknown()
        item_reader.check_unknown()
        topics.append(Topic(topic_id, label_map))
    return tuple(topics)


def _languages(reader: Reader, source: Path | None) -> Languages:
    """``desk.languages`` (the codes offered, the default first; all available when left out),
    ``desk.default_language`` and ``desk.languages_directory`` (more language files)."""
    directory = None
    if reader.data.get("languages_directory") is not None:
        directory = Path(reader.text("languages_directory"))
        if source is not None and not directory.is_absolute():
            directory = source.parent / directory
    reader.seen.add("languages_directory")
    found = available(directory)
    default = reader.text("default_language", "id")
    if default not in found:
        raise ConfigError(
            reader._key("default_language"), f"must be one of {', '.join(sorted(found))}"
        )
    if reader.data.get("languages") is None:
        reader.seen.add("languages")
        codes = [default, *sorted(set(found) - {default})]
    else:
        codes = reader.items("languages")
        for index, code in enumerate(codes):
            if code not in found:
                where = f"{reader._key('languages')}[{index}]"
                known = ", ".join(sorted(found))
                raise ConfigError(
                    where,
                    f"no language file for {code!r} (available: {known}); see docs/LANGUAGES.md",
                )
        if len(set(codes)) != len(codes):
            raise ConfigError(reader._key("languages"), "lists a language twice")
        if default not in codes:
            raise ConfigError(
                reader._key("default_language"),
                f"must be one of desk.languages ({', '.join(codes)})",
            )
    return Languages((found[code] for code in codes), default)


def _privacy(reader: Reader, languages: tuple[str, ...]) -> PrivacyConfig:
    """``privacy.retention``: days (1 to 36500) or ``forever``, per kind of data; ``notice``
    and ``link``: what the widget says before the first message."""
    retention = reader.section("retention", required=False)
    days: dict[str, int | None] = {}
    for key in RETENTION_KEYS:
        value = retention.data.get(key)
        if isinstance(value, str) and value.strip().lower() == "forever":
            retention.seen.add(key)
            days[key] = None
        else:
            days[key] = retention.integer(key, 180, low=1, high=36500)
    retention.check_unknown()
    notice = _per_language(reader, "notice", languages, required=False)
    link = reader.url("link") if reader.data.get("link") is not None else None
    reader.seen.add("link")
    reader.check_unknown()
    return PrivacyConfig(days, notice, link)


def _user_ids(reader: Reader, key: str) -> list[str]:
    values = reader.items(key, [])
    for index, mxid in enumerate(values):
        if not isinstance(mxid, str) or not _MXID.match(mxid):
            raise ConfigError(
                f"{reader._key(key)}[{index}]",
                f"must be a Matrix user ID like @sari:example.org, got {mxid!r}",
            )
    return values


def _optional_integer(reader: Reader, key: str, *, low: int, high: int) -> int | None:
    if reader.data.get(key) is None:
        reader.seen.add(key)
        return None
    return reader.integer(key, low=low, high=high)


def _teams(
    reader: Reader,
    librarians: list[str],
    supervisors: list[str],
    timezone: str,
    languages: tuple[str, ...],
) -> tuple[TeamConfig, ...]:
    """``desk.teams``: each with an ``id``, ``name``, ``members`` (the desk's librarians or
    supervisors), and optionally its own ``hours`` (a section like the top-level ``hours``),
    ``first_response_target``, ``overflow_after``, ``assignment`` (ring_all or fair),
    ``accept_within`` and ``max_active_chats``."""
    staff = set(librarians) | set(supervisors)
    teams: list[TeamConfig] = []
    for index, item in enumerate(reader.items("teams", [])):
        where = f"{reader._key('teams')}[{index}]"
        team = Reader(item, where)
        team_id = team.text("id")
        if not _TOPIC_ID.match(team_id):
            raise ConfigError(team._key("id"), "must be 1-40 of a-z, 0-9, _ and -")
        if any(t.id == team_id for t in teams):
            raise ConfigError(team._key("id"), f"duplicate team id {team_id!r}")
        members = _user_ids(team, "members")
        if not members:
            raise ConfigError(team._key("members"), "must list at least one member")
        for member_index, member in enumerate(members):
            member_where = f"{team._key('members')}[{member_index}]"
            if member not in staff:
                raise ConfigError(
                    member_where, f"{member} is not one of desk.librarians or desk.supervisors"
                )
            if members.index(member) != member_index:
                raise ConfigError(member_where, f"{member} is listed twice")
        hours = None
        team.seen.add("hours")
        if team.data.get("hours") is not None:
            raw = team.data["hours"]
            if isinstance(raw, dict) and "when_closed" in raw:
                raise ConfigError(
                    f"{team._key('hours')}.when_closed",
                    "is the desk's alone (top-level hours.when_closed)",
                )
            hours = parse_hours(raw, timezone, languages, path=team._key("hours"))
        assignment = team.text("assignment", "ring_all").strip()
        if assignment not in ASSIGNMENTS:
            raise ConfigError(
                team._key("assignment"), f"must be ring_all or fair, got {assignment!r}"
            )
        teams.append(
            TeamConfig(
                id=team_id,
                name=team.text("name", team_id),
                members=tuple(members),
                hours=hours,
                first_response_target=_optional_integer(
                    team, "first_response_target", low=1, high=86400
                ),
                overflow_after=team.integer("overflow_after", 60, low=1, high=86400),
                assignment=assignment,
                accept_within=team.integer("accept_within", 60, low=1, high=3600),
                max_active_chats=_optional_integer(team, "max_active_chats", low=1, high=100),
            )
        )
        team.check_unknown()
    names = [t.name.lower() for t in teams]
    for index, name in enumerate(names):
        if names.index(name) != index or name in {t.id for t in teams[:index]}:
            raise ConfigError(f"{reader._key('teams')}[{index}].name", "is another team's name")
    return tuple(teams)


def _page_pattern(value: Any, where: str) -> str:
    """A URL pattern where ``*`` is any text, matched against the whole page address."""
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ConfigError(where, "must be a URL pattern such as */e-resources*")
    pattern = value.strip()
    if any(c.isspace() for c in pattern):
        raise ConfigError(where, f"{pattern!r} has spaces; a page address has none")
    if not pattern.startswith(("*", "http://", "https://")):
        raise ConfigError(
            where,
            f"{pattern!r} is matched against the whole address (https://…): "
            f"write *{pattern}* for pages that contain it",
        )
    if not pattern.replace("*", ""):
        raise ConfigError(where, "matches every page: leave pages out instead")
    return pattern


def _routing(
    reader: Reader, teams: tuple[TeamConfig, ...], topics: tuple[Topic, ...]
) -> tuple[RouteConfig, ...]:
    """``desk.routing``: in order, the first route that matches (and whose team is open)
    sends a new chat to its team; no route: the whole desk."""
    known_teams = [t.id for t in teams]
    known_topics = [t.id for t in topics]
    routes: list[RouteConfig] = []
    for index, item in enumerate(reader.items("routing", [])):
        route = Reader(item, f"{reader._key('routing')}[{index}]")
        team = route.text("team")
        if team not in known_teams:
            known = ", ".join(known_teams) or "none"
            raise ConfigError(route._key("team"), f"unknown team {team!r} (desk.teams: {known})")
        route_topics = route.items("topics", [])
        for topic_index, topic in enumerate(route_topics):
            if topic not in known_topics:
                raise ConfigError(
                    f"{route._key('topics')}[{topic_index}]",
                    f"unknown topic {topic!r} (desk.topics: {', '.join(known_topics)})",
                )
        pages = [
            _page_pattern(page, f"{route._key('pages')}[{page_index}]")
            for page_index, page in enumerate(route.items("pages", []))
        ]
        route.check_unknown()
        if not route_topics and not pages:
            raise ConfigError(route.path, "needs topics, pages or both")
        routes.append(RouteConfig(team, tuple(route_topics), tuple(pages)))
    return tuple(routes)


def _per_language(
    reader: Reader, key: str, languages: tuple[str, ...], required: bool = True
) -> dict[str, str]:
    """``key: text`` (same in every language) or ``key: {id: text, en: text}``, one text for
    each of the desk's languages."""
    reader.seen.add(key)
    value = reader.data.get(key)
    path = reader._key(key)
    if value is None and not required:
        return {}
    if isinstance(value, str) and value.strip():
        return {lang: value for lang in languages}
    if isinstance(value, dict):
        item = Reader(value, path)
        texts = {lang: item.text(lang) for lang in languages}
        item.check_unknown()
        return texts
    raise ConfigError(path, "must be a text or {id: text, en: text}")


def _attachments(widget: Reader) -> AttachmentRules:
    """``widget.attachments``: ``max_size`` in MB (10) and the kinds of file taken (``types``:
    image, pdf, text, office; all by default)."""
    reader = widget.section("attachments", required=False)
    max_size = reader.integer("max_size", 10, low=1, high=100)
    types = reader.items("types", list(GROUPS))
    for index, kind in enumerate(types):
        if kind not in GROUPS:
            raise ConfigError(
                f"{reader._key('types')}[{index}]", f"must be one of {', '.join(GROUPS)}"
            )
    reader.check_unknown()
    return AttachmentRules(max_size * 1024 * 1024, tuple(dict.fromkeys(types)))


def _invitation(widget: Reader, languages: tuple[str, ...]) -> Invitation | None:
    """``widget.invitation``: ``enabled`` (false), ``after`` seconds (30), ``pages`` (URL
    patterns with ``*``; none: every page), ``text`` (one text or one per language)."""
    if widget.data.get("invitation") is None:
        widget.seen.add("invitation")
        return None
    reader = widget.section("invitation")
    enabled = reader.boolean("enabled", False)
    pages = reader.items("pages", [])
    for index, page in enumerate(pages):
        if not isinstance(page, str) or not page.strip() or len(page) > 500:
            raise ConfigError(
                f"{reader._key('pages')}[{index}]", "must be a URL pattern such as */e-resources*"
            )
    invitation = Invitation(
        after=reader.integer("after", 30, low=0, high=3600),
        pages=tuple(p.strip() for p in pages),
        text=_per_language(reader, "text", languages, required=False),
    )
    reader.check_unknown()
    return invitation if enabled else None


def _greeting(reader: Reader, languages: tuple[str, ...]) -> dict[str, str]:
    return _per_language(reader, "greeting", languages, required=False)


def _knowledge(
    reader: Reader,
    canned: dict[str, dict[str, str]],
    source: Path | None,
    languages: tuple[str, ...],
) -> tuple[Entry, ...]:
    """Canned answers and FAQ entries: one knowledge base."""
    entries = {key: Entry(key, texts, {}, public=False) for key, texts in canned.items()}
    raw_entries: list[tuple[str, Any]] = []
    inline = reader.data.get("entries") or {}
    reader.seen.add("entries")
    if not isinstance(inline, dict):
        raise ConfigError(reader._key("entries"), "must map keys to entries")
    raw_entries.extend((reader._key(f"entries.{k}"), (k, v)) for k, v in inline.items())
    for index, name in enumerate(reader.items("files", [])):
        path = Path(str(name))
        if source is not None and not path.is_absolute():
            path = source.parent / path
        where = f"{reader._key('files')}[{index}]"
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(where, f"cannot read {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(where, f"{path} must map keys to entries")
        raw_entries.extend((f"{path.name}: {k}", (k, v)) for k, v in loaded.items())
    for place, (key, value) in raw_entries:
        if not isinstance(key, str) or not _TOPIC_ID.match(key):
            raise ConfigError(place, "keys must be 1-40 of a-z, 0-9, _ and -")
        item = Reader(value, place)
        answer = _per_language(item, "answer", languages)
        question = _per_language(item, "question", languages, required=False)
        public = item.data.get("public", bool(question))
        item.seen.add("public")
        if not isinstance(public, bool):
            raise ConfigError(f"{place}.public", "must be true or false")
        if public and not question:
            raise ConfigError(f"{place}.question", "a public (FAQ) entry needs a question")
        item.check_unknown()
        entries[key] = Entry(key, answer, question, public)
    reader.check_unknown()
    return tuple(entries.values())


def _canned(reader: Reader, languages: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Canned answers: ``key: text`` or ``key: {id: text, en: text}``."""
    reader.seen.add("canned")
    raw = reader.data.get("canned") or {}
    path = reader._key("canned")
    if not isinstance(raw, dict):
        raise ConfigError(path, "must map short keys to answer texts")
    canned: dict[str, dict[str, str]] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _TOPIC_ID.match(key):
            raise ConfigError(f"{path}.{key}", "keys must be 1-40 of a-z, 0-9, _ and -")
        if isinstance(value, str) and value.strip():
            canned[key] = {lang: value for lang in languages}
        elif isinstance(value, dict):
            item = Reader(value, f"{path}.{key}")
            canned[key] = {lang: item.text(lang) for lang in languages}
            item.check_unknown()
        else:
            raise ConfigError(f"{path}.{key}", "must be a text or {id: text, en: text}")
    return canned


def _origins(reader: Reader) -> tuple[str, ...]:
    origins: list[str] = []
    for index, value in enumerate(reader.items("allowed_origins", ["*"])):
        origin = value if value == "*" else web_origin(value) if isinstance(value, str) else None
        if origin is not None and origin != "*":
            parts = urlsplit(value.strip())
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                origin = None
        if origin is None:
            raise ConfigError(
                f"{reader._key('allowed_origins')}[{index}]",
                "must be '*' or an origin like https://lib.example (no path)",
            )
        origins.append(origin)
    return tuple(origins)


def _networks(reader: Reader, key: str, default: list[str]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for index, value in enumerate(reader.items(key, default)):
        where = f"{reader._key(key)}[{index}]"
        text = value.strip() if isinstance(value, str) else ""
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError:
            try:
                meant = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigError(where, "not a network like 10.0.0.0/8") from None
            raise ConfigError(
                where, f"{text} has host bits set: write {meant} (or one address without /)"
            ) from None
    return tuple(networks)


def _database(reader: Reader, source: Path | None) -> DatabaseConfig:
    """``path`` (SQLite, relative to the config file) or ``url`` (PostgreSQL), not both."""
    if "url" in reader.data and reader.data["url"] is not None:
        if reader.data.get("path") is not None:
            raise ConfigError(reader._key("url"), "give either path (SQLite) or url, not both")
        reader.seen.add("path")
        url = reader.text("url")
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(
                reader._key("url"),
                "must be a PostgreSQL URL like postgresql://refdesk:secret@db.example/refdesk",
            )
        try:
            parts.port  # noqa: B018 - a malformed port raises here
        except ValueError:
            raise ConfigError(reader._key("url"), "has a port that is not a number") from None
        if not parts.path.strip("/"):
            raise ConfigError(reader._key("url"), "must name the database (…/refdesk)")
        if PLACEHOLDER in url:
            raise ConfigError(reader._key("url"), f"still holds the placeholder {PLACEHOLDER}")
        return DatabaseConfig(url=url)
    reader.seen.add("url")
    path = Path(reader.text("path", "refdesk.db"))
    if source is not None and not path.is_absolute():
        path = source.parent / path
    return DatabaseConfig(path=path)


def _forwarded_header(reader: Reader) -> str:
    header = reader.text("forwarded_header", "x-forwarded-for").strip().lower()
    if header not in FORWARDED_HEADERS:
        raise ConfigError(
            reader._key("forwarded_header"), f"must be {' or '.join(FORWARDED_HEADERS)}"
        )
    return header


def _email(er: Reader) -> EmailConfig:
    if not er.data or er.data.get("host") in (None, ""):
        er.seen.update(er.data)
        return EmailConfig()
    security = er.text("security", "starttls")
    if security not in ("starttls", "ssl", "none"):
        raise ConfigError(er._key("security"), "must be starttls, ssl or none")
    username = er.data.get("username")
    password = er.data.get("password")
    er.seen.update({"username", "password"})
    if (username is None) != (password is None):
        raise ConfigError(er._key("password"), "username and password go together")
    if isinstance(password, str) and PLACEHOLDER in password:
        raise ConfigError(er._key("password"), "still holds the placeholder CHANGE_ME")
    from_address = er.text("from_address")
    for key, value in (("from_address", from_address), ("reply_to", er.data.get("reply_to"))):
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+$", str(value)):
            raise ConfigError(er._key(key), f"not an email address: {value!r}")
    config = EmailConfig(
        host=er.text("host"),
        port=er.integer("port", 587 if security == "starttls" else 465, low=1, high=65535),
        security=security,
        username=str(username) if username is not None else None,
        password=str(password) if password is not None else None,
        from_address=from_address,
        from_name=er.text("from_name", "Tanya Pustakawan"),
        reply_to=er.data.get("reply_to"),
    )
    er.seen.add("reply_to")
    er.check_unknown()
    return config


def _reports(reader: Reader, target: int) -> ReportRules:
    viewers = None
    if reader.data.get("viewers") is not None:
        viewers = tuple(_user_ids(reader, "viewers"))
    reader.seen.add("viewers")
    categories: list[str] = []
    for index, raw in enumerate(reader.items("categories", [])):
        try:
            tags, scale = parse_tags(str(raw)) if isinstance(raw, str) else ([], None)
        except ValueError as exc:
            raise ConfigError(f"{reader._key('categories')}[{index}]", str(exc)) from None
        if len(tags) != 1 or scale is not None or tags[0] != raw.lower():
            raise ConfigError(
                f"{reader._key('categories')}[{index}]",
                f"must be one word of letters, digits, . - _ (got {raw!r})",
            )
        categories.append(tags[0])
    rules = ReportRules(
        viewers=viewers,
        first_response_target=target,
        categories=tuple(dict.fromkeys(categories)),
        ask_at_close=reader.boolean("ask_at_close", False),
        link_minutes=reader.integer("link_minutes", 15, low=1, high=24 * 60),
        pass_hours=reader.integer("pass_hours", 8, low=1, high=7 * 24),
        dashboard=reader.boolean("dashboard", True),
    )
    reader.check_unknown()
    return rules


def _metrics(reader: Reader, appservice: AppserviceConfig, widget: WidgetConfig) -> MetricsConfig:
    """``metrics``: ``enabled``, a listener of its own (``listen_host``, ``listen_port``), and
    who may scrape (``bearer_token``, ``allowed_networks``)."""
    enabled = reader.boolean("enabled", True)
    listen_host = reader.text("listen_host", "127.0.0.1")
    listen_port = None
    if reader.data.get("listen_port") is not None:
        listen_port = reader.integer("listen_port", low=1, high=65535)
        if listen_port == widget.listen_port:
            raise ConfigError(
                reader._key("listen_port"),
                "must not be widget.listen_port: /metrics is never served to visitors",
            )
        if listen_port == appservice.listen_port:
            raise ConfigError(
                reader._key("listen_port"),
                "is appservice.listen_port, which serves /metrics already; leave it out",
            )
    reader.seen.add("listen_port")
    token = None
    if reader.data.get("bearer_token") is not None:
        token = reader.text("bearer_token")
        if PLACEHOLDER in token or len(token) < 16:
            raise ConfigError(
                reader._key("bearer_token"),
                "still holds the placeholder or is shorter than 16 characters",
            )
    reader.seen.add("bearer_token")
    networks = _networks(reader, "allowed_networks", [])
    reader.check_unknown()
    return MetricsConfig(enabled, listen_host, listen_port, token, networks)


def parse_config(data: Any, source: Path | None = None) -> Config:
    """Build a :class:`Config` from parsed YAML, or raise :class:`ConfigError`."""
    root = Reader(data)

    hs = root.section("homeserver")
    admin_token = None
    if hs.data.get("admin_token") is not None:
        admin_token = hs.text("admin_token")
    hs.seen.add("admin_token")
    homeserver = HomeserverConfig(
        url=hs.url("url"), domain=hs.text("domain"), admin_token=admin_token
    )
    hs.check_unknown()

    asr = root.section("appservice")
    appservice = AppserviceConfig(
        id=asr.text("id", "refdesk"),
        listen_host=asr.text("listen_host", "127.0.0.1"),
        listen_port=asr.integer("listen_port", 29330, low=1, high=65535),
        url=asr.url("url", "http://127.0.0.1:29330"),
        as_token=asr.text("as_token", secret=True),
        hs_token=asr.text("hs_token", secret=True),
        bot_localpart=asr.text("bot_localpart", "refdesk"),
        bot_displayname=asr.text("bot_displayname", "Reference desk"),
        ghost_prefix=asr.text("ghost_prefix", "refdesk_v_"),
    )
    if appservice.as_token == appservice.hs_token:
        raise ConfigError("appservice.hs_token", "must differ from appservice.as_token")
    for key in ("bot_localpart", "ghost_prefix"):
        if not _LOCALPART.match(getattr(appservice, key)):
            raise ConfigError(f"appservice.{key}", "may only hold a-z, 0-9 and . _ = - /")
    if appservice.bot_localpart.startswith(appservice.ghost_prefix):
        raise ConfigError("appservice.bot_localpart", "must not start with appservice.ghost_prefix")
    asr.check_unknown()

    dr = root.section("desk", required=False)
    languages = _languages(dr, source)
    codes = languages.codes

    wr = root.section("widget", required=False)
    widget = WidgetConfig(
        listen_host=wr.text("listen_host", "127.0.0.1"),
        listen_port=wr.integer("listen_port", 8080, low=1, high=65535),
        public_url=wr.url("public_url", "http://localhost:8080"),
        allowed_origins=_origins(wr),
        max_message_length=wr.integer("max_message_length", 4000, low=1, high=65536),
        new_sessions_per_minute=wr.integer("new_sessions_per_minute", 10, low=1, high=100_000),
        edit_window=wr.integer("edit_window", 900, low=0, high=86400),
        invitation=_invitation(wr, codes),
        attachments=_attachments(wr),
        trusted_proxies=_networks(wr, "trusted_proxies", [str(n) for n in LOOPBACK]),
        forwarded_header=_forwarded_header(wr),
    )
    wr.check_unknown()

    librarians = _user_ids(dr, "librarians")
    supervisors = _user_ids(dr, "supervisors")
    timezone = dr.text("timezone", "Asia/Jakarta")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("desk.timezone", f"unknown time zone {timezone!r}") from None
    desk = DeskConfig(
        name=dr.text("name", "Tanya Pustakawan"),
        librarians=tuple(librarians),
        default_language=languages.fallback,
        timezone=timezone,
        topics=_topics(dr, languages),
        supervisors=tuple(supervisors),
        escalate_after=dr.integer("escalate_after", 120, low=1, high=86400),
        canned=_canned(dr, codes),
        greeting=_greeting(dr, codes),
        knowledge=(),
        languages=languages,
    )
    target = dr.integer("first_response_target", 300, low=1, high=86400)
    teams = _teams(dr, librarians, supervisors, timezone, codes)
    desk = DeskConfig(
        **{
            **desk.__dict__,
            "teams": teams,
            "routing": _routing(dr, teams, desk.topics),
            "max_active_chats": _optional_integer(dr, "max_active_chats", low=1, high=100),
            "first_response_target": target,
        }
    )
    dr.check_unknown()
    knowledge = _knowledge(root.section("knowledge", required=False), desk.canned, source, codes)
    desk = DeskConfig(**{**desk.__dict__, "knowledge": knowledge})

    dbr = root.section("database", required=False)
    database = _database(dbr, source)
    dbr.check_unknown()

    lr = root.section("logging", required=False)
    level = lr.text("level", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level", "must be DEBUG, INFO, WARNING or ERROR")
    lr.check_unknown()

    email = _email(root.section("email", required=False))
    orr = root.section("offline", required=False)
    offline = OfflineConfig(
        batch_delay=orr.integer("batch_delay", 60, low=0, high=86400),
        unseen_after=orr.integer("unseen_after", 300, low=0, high=7 * 86400),
        link_valid_days=orr.integer("link_valid_days", 14, low=1, high=365),
        resume_page=orr.url("resume_page", f"{widget.public_url}/demo"),
    )
    orr.check_unknown()
    privacy = _privacy(root.section("privacy", required=False), codes)
    reports = _reports(root.section("reports", required=False), target)
    metrics = _metrics(root.section("metrics", required=False), appservice, widget)
    root.seen.update({"verification", "hours", "cooperative"})
    cooperative = parse_cooperative(
        root.data.get("cooperative"), path="cooperative", local=(*librarians, *supervisors)
    )
    verification = None
    if "verification" in root.data:
        base_dir = source.parent if source is not None else Path.cwd()
        verification = parse_directory(root.data["verification"] or {}, base_dir)
    hours = None
    if "hours" in root.data:
        hours = parse_hours(root.data["hours"] or {}, timezone, codes)

    root.check_unknown()
    return Config(
        homeserver,
        appservice,
        widget,
        desk,
        database,
        LoggingConfig(level),
        email,
        source,
        offline,
        verification,
        hours,
        privacy,
        reports,
        metrics=metrics,
        cooperative=cooperative,
    )


def load_config(path: Path) -> Config:
    """Read and validate a config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}: not valid YAML{where}: {problem}") from None
    return parse_config(data, source=path.resolve())

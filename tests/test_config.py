"""Config: every problem names its key path; the sample documents every key."""

from __future__ import annotations

import copy
import re
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from refdesk.cli import main
from refdesk.config import ConfigError, EmailConfig, load_config, parse_config
from refdesk.directory_config import (
    HttpDirectoryConfig,
    KohaDirectoryConfig,
    LocalDirectoryConfig,
    demo_warning,
    parse_directory,
)
from refdesk.embedded import embedded_config_data

ROOT = Path(__file__).resolve().parent.parent


def good() -> dict[str, Any]:
    return embedded_config_data(
        widget_port=8080,
        homeserver_port=8008,
        appservice_port=29330,
        librarians=["@sari:localhost"],
    )


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(good())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


def test_generated_config_is_valid() -> None:
    config = parse_config(good())
    assert config.bot_mxid == "@refdesk:localhost"
    assert config.desk.topics[0].id == "literature"
    assert config.appservice.as_token != config.appservice.hs_token


@pytest.mark.parametrize(
    ("path", "value", "expected_key", "words"),
    [
        ("homeserver.url", _DELETE, "homeserver.url", "required"),
        ("homeserver.url", "ftp://x", "homeserver.url", "http"),
        ("widget.listen_port", "eighty", "widget.listen_port", "integer"),
        ("widget.listen_port", 70000, "widget.listen_port", "between"),
        ("widget.allowed_origins", ["lib.example"], "widget.allowed_origins[0]", "origin"),
        ("appservice.as_token", "CHANGE_ME", "appservice.as_token", "placeholder"),
        ("appservice.ghost_prefix", "Bad Prefix", "appservice.ghost_prefix", "a-z"),
        ("desk.librarians", ["sari"], "desk.librarians[0]", "Matrix user ID"),
        ("desk.timezone", "Mars/Olympus", "desk.timezone", "unknown time zone"),
        ("desk.default_language", "fr", "desk.default_language", "one of"),
        ("desk.topics", [{"id": "x", "label": {"id": "X"}}], "desk.topics[0].label.en", "required"),
        ("desk.topics", [], "desk.topics", "at least one"),
        ("desk.colour", "blue", "desk.colour", "not a known setting"),
        ("logging.level", "LOUD", "logging.level", "DEBUG"),
        ("desk.first_response_target", 0, "desk.first_response_target", "between"),
        ("reports.viewers", ["kepala"], "reports.viewers[0]", "Matrix user ID"),
        ("reports.categories", ["two words"], "reports.categories[0]", "one word"),
        ("reports.categories", ["read 3"], "reports.categories[0]", "one word"),
        ("reports.link_minutes", 0, "reports.link_minutes", "between"),
        ("reports.dashboard", "yes please", "reports.dashboard", "true or false"),
        ("reports.colour", "blue", "reports.colour", "not a known setting"),
    ],
)
def test_errors_name_the_key(path: str, value: Any, expected_key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_change(path, value))
    assert info.value.path == expected_key
    assert words in info.value.problem


def test_same_tokens_refused() -> None:
    data = good()
    data["appservice"]["hs_token"] = data["appservice"]["as_token"]
    with pytest.raises(ConfigError, match=r"appservice\.hs_token"):
        parse_config(data)


def test_invalid_yaml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("homeserver:\n  url: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(with_change("widget.listen_port", "x")))
    assert main(["check-config", str(path)]) == 2
    assert "widget.listen_port" in capsys.readouterr().err
    path.write_text(yaml.safe_dump(good()))
    assert main(["check-config", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def _section(text: str, name: str, indent: str = "") -> list[str]:
    """The lines of the block ``name:`` opens (at ``indent``), up to the next shallower key."""
    lines = text.splitlines()
    start = lines.index(f"{indent}{name}:")
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.strip() and not line.startswith(indent + " ") and not line.startswith("#"):
            break
        block.append(line)
    return block


def _uncomment(lines: list[str]) -> str:
    """The settings among commented lines (``#key:`` and their ``#  child:`` lines) as YAML.

    Prose comments are ``# text``: one space after the ``#``.
    """
    settings = []
    for line in lines:
        match = re.match(r"^(\s*)#(\S.*|  .*)$", line)
        if match:
            settings.append(match[1] + match[2])
    return textwrap.dedent("\n".join(settings))


def _paragraph(lines: list[str], first: str) -> list[str]:
    """The lines from the one starting with ``first`` (stripped) to the next blank line."""
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(first))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<off>#?)(?P<key>[a-z_]+):(?:\s|$)")


def _documented(lines: list[str], index: int) -> bool:
    """A key line has a comment of its own at the end, or one above it at its indentation
    (sibling keys may share one: `listen_host` and `listen_port` under one comment)."""
    line = lines[index]
    match = _KEY_LINE.match(line)
    assert match is not None
    if re.search(r"\s#\s", line[match.end() :]):
        return True
    indent = match["indent"]
    for above in reversed(lines[:index]):
        if above.startswith(f"{indent}# "):
            return True
        sibling = _KEY_LINE.match(above)
        deeper = above.startswith(f"{indent} ") or above.startswith(f"{indent}#  ")
        if not (deeper or (sibling is not None and sibling["indent"] == indent)):
            return False
    return False


def test_sample_documents_every_key(tmp_path: Path) -> None:
    sample = (ROOT / "config.sample.yaml").read_text()
    lines = sample.splitlines()
    data = yaml.safe_load(sample)
    # Every key of a full config appears in the sample.
    for section, values in good().items():
        assert section in data, section
        for key in values:
            assert key in data[section], f"{section}.{key} missing from config.sample.yaml"
    # Each setting of a section, and each setting shown commented out (`#key:`), has a comment.
    checked = 0
    for index, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if match and (match["indent"] == "  " or match["off"]):
            assert _documented(lines, index), f"no comment for line {index + 1}: {line!r}"
            checked += 1
    assert checked > 60
    # Email is off in the sample, and every one of its settings is shown, commented out.
    email_lines = _section(sample, "email")
    email = yaml.safe_load(_uncomment(email_lines))
    assert set(email) == {f.name for f in fields(EmailConfig)}
    assert not any(re.match(r"^  [a-z]", line) for line in email_lines)


def test_sample_is_valid_with_real_tokens_and_its_commented_settings_work(
    tmp_path: Path,
) -> None:
    sample = (ROOT / "config.sample.yaml").read_text()
    data = yaml.safe_load(sample)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == "appservice.as_token"
    data["appservice"]["as_token"] = "a" * 40
    data["appservice"]["hs_token"] = "b" * 40
    config = parse_config(data)  # nothing else to fill in
    assert config.hours is not None and config.hours.schedule.holidays_country == "ID"
    assert not config.email.enabled
    assert demo_warning(config.verification) is not None
    assert "demo list of invented members" in str(demo_warning(config.verification))

    # Email, switched on by removing the `#`s: valid once the password is real.
    email = _uncomment(_section(sample, "email"))
    data["email"] = yaml.safe_load(email)
    with pytest.raises(ConfigError, match="placeholder") as info:
        parse_config(data)
    assert info.value.path == "email.password"
    data["email"] = yaml.safe_load(email.replace("CHANGE_ME", "a real password"))
    config = parse_config(data)
    assert config.email.enabled and config.email.host == "smtp.library.example"
    assert config.email.reply_to == "layanan@library.example"

    # Each kind of member directory, as the sample shows it commented out.
    directory = _section(sample, "directory", "  ")
    local = yaml.safe_load("type: local\n" + _uncomment(_paragraph(directory, "#path:")))
    cfg = parse_directory({"directory": local}, tmp_path)
    assert cfg.directory == LocalDirectoryConfig(tmp_path / "members.yaml")
    assert demo_warning(cfg) is None
    for first, kind in (("#type: koha", KohaDirectoryConfig), ("#type: http", HttpDirectoryConfig)):
        block = _uncomment(_paragraph(directory, first))
        with pytest.raises(ConfigError, match="placeholder"):
            parse_directory({"directory": yaml.safe_load(block)}, tmp_path)
        block = block.replace("CHANGE_ME", "a-real-secret")
        cfg = parse_directory({"directory": yaml.safe_load(block)}, tmp_path)
        assert isinstance(cfg.directory, kind)


def _token_lines(text: str) -> dict[str, str]:
    return {
        m[1]: m[2] for m in re.finditer(r"^  (as_token|hs_token): (\S+)\r?$", text, re.MULTILINE)
    }


def test_generate_registration_fills_the_placeholder_tokens_in_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "config.yaml"
    original = (ROOT / "config.sample.yaml").read_text()
    config_path.write_text(original)
    config_path.chmod(0o640)
    out = tmp_path / "registration.yaml"
    args = ["generate-registration", "--config", str(config_path), "--output", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "Wrote fresh appservice.as_token and appservice.hs_token" in said
    assert f"Wrote {out}" in said
    filled = config_path.read_text()
    tokens = _token_lines(filled)
    assert tokens["as_token"] != tokens["hs_token"] and len(tokens["as_token"]) == 64
    # Only the two token lines changed; every comment and every other byte stayed.
    changed = [
        (old, new)
        for old, new in zip(original.splitlines(True), filled.splitlines(True), strict=True)
        if old != new
    ]
    assert changed == [
        ("  as_token: CHANGE_ME\n", f"  as_token: {tokens['as_token']}\n"),
        ("  hs_token: CHANGE_ME\n", f"  hs_token: {tokens['hs_token']}\n"),
    ]
    assert config_path.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*.tmp"))
    reg = yaml.safe_load(out.read_text())
    assert (reg["as_token"], reg["hs_token"]) == (tokens["as_token"], tokens["hs_token"])
    assert reg["rate_limited"] is False
    assert reg["namespaces"]["users"][0] == {
        "exclusive": True,
        "regex": r"@refdesk_v_.*:example\.org",
    }
    assert out.stat().st_mode & 0o777 == 0o600  # tokens: readable by the owner only
    # Real tokens are never replaced: a second run changes nothing in the config.
    assert main(args) == 0
    assert "Wrote fresh" not in capsys.readouterr().out
    assert config_path.read_text() == filled
    assert yaml.safe_load(out.read_text())["as_token"] == tokens["as_token"]


def test_generate_registration_keeps_quotes_comments_and_line_endings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = good()
    data["appservice"]["hs_token"] = "h" * 40  # a real one: kept
    text = yaml.safe_dump(data, sort_keys=False).replace(
        f"  as_token: {data['appservice']['as_token']}\n",
        "  as_token: 'CHANGE_ME'   # from the sample\n",
    )
    config_path = tmp_path / "config.yaml"
    config_path.write_bytes(text.replace("\n", "\r\n").encode())
    out = tmp_path / "registration.yaml"
    args = ["generate-registration", "--config", str(config_path), "--output", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    assert "Wrote fresh appservice.as_token into" in capsys.readouterr().out
    before, after = text.replace("\n", "\r\n").encode(), config_path.read_bytes()
    changed = [
        (old, new)
        for old, new in zip(before.split(b"\n"), after.split(b"\n"), strict=True)
        if old != new
    ]
    assert len(changed) == 1
    assert re.fullmatch(rb"  as_token: '[\w-]{64}'   # from the sample\r", changed[0][1])
    assert load_config(config_path).appservice.hs_token == "h" * 40


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("appservice: {as_token: CHANGE_ME, hs_token: CHANGE_ME}\n", "no `appservice:` block"),
        (
            "appservice:\n  as_token: CHANGE_ME\n  hs_token: CHANGE_ME\n  hs_token: CHANGE_ME\n",
            "2 `hs_token: CHANGE_ME` lines",
        ),
    ],
)
def test_generate_registration_refuses_lines_it_cannot_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, why: str
) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text("homeserver: {url: 'http://127.0.0.1:8008', domain: x.org}\n" + text)
    before = config_path.read_bytes()
    out = tmp_path / "registration.yaml"
    args = ["generate-registration", "--config", str(config_path), "--output", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: appservice.as_token: still holds the placeholder")
    assert why in err and "left the file unchanged" in err
    assert "\n    as_token: " in err and "\n    hs_token: " in err  # fresh ones to paste
    assert config_path.read_bytes() == before and not out.exists()


def test_generate_registration_reports_other_errors_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "config.yaml"
    sample = (ROOT / "config.sample.yaml").read_text()
    config_path.write_text(sample.replace('- "@sari:example.org"', "- sari"))
    out = tmp_path / "registration.yaml"
    args = ["generate-registration", "--config", str(config_path), "--output", str(out)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "Wrote fresh appservice.as_token" in captured.out  # kept for the next run
    assert "config error: desk.librarians[0]: must be a Matrix user ID" in captured.err
    assert not out.exists()


def test_check_config_warns_until_directory_and_email_are_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(good()))  # no member directory path, no email
    assert main(["check-config", str(path)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: verification.directory: ")
    assert "demo list of invented members" in warnings[0]
    assert warnings[1].startswith("warning: email: off (no email.host)")
    (tmp_path / "members.yaml").write_text(
        "members:\n  - {member_number: X-1, name: Ani, date_of_birth: 1990-01-02}\n"
    )
    data = with_change("verification.directory", {"type": "local", "path": "members.yaml"})
    data["email"] = {"host": "smtp.library.example", "from_address": "tanya@library.example"}
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("database", "problem"),
    [
        ({"url": "mysql://db/refdesk"}, "must be a PostgreSQL URL"),
        ({"url": "postgresql://db.example"}, "must name the database"),
        ({"url": "postgresql://db.example:port/refdesk"}, "port that is not a number"),
        ({"url": "postgresql://refdesk:CHANGE_ME@db/refdesk"}, "placeholder"),
        ({"url": "postgresql://db/refdesk", "path": "refdesk.db"}, "not both"),
    ],
)
def test_database_url_problems_name_the_key(database: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_change("database", database))
    assert info.value.path == "database.url" and problem in info.value.problem


def test_database_is_sqlite_by_default_or_postgresql_by_url(tmp_path: Path) -> None:
    sqlite = parse_config(good(), source=tmp_path / "refdesk.yaml").database
    assert sqlite.url is None and sqlite.target == tmp_path / "refdesk.db"
    url = "postgresql://refdesk:s3cret@db.library.example:5433/refdesk"
    postgres = parse_config(with_change("database", {"url": url})).database
    assert postgres.target == url and postgres.path is None
    assert postgres.shown == "PostgreSQL db.library.example:5433/refdesk"  # never the password
    assert "s3cret" not in repr(postgres)

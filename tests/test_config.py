"""Config: every problem names its key path; the sample documents every key."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from refdesk.cli import main
from refdesk.config import ConfigError, load_config, parse_config
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


def test_sample_documents_every_key_and_only_needs_real_tokens(tmp_path: Path) -> None:
    sample = (ROOT / "config.sample.yaml").read_text()
    data = yaml.safe_load(sample)
    # Every key of a full config appears in the sample, and each has a comment above it.
    for section, values in good().items():
        assert section in data, section
        for key in values:
            assert key in data[section], f"{section}.{key} missing from config.sample.yaml"
    for line_no, line in enumerate(sample.splitlines()):
        match = re.match(r"^  (\w+):", line)
        if match and not sample.splitlines()[line_no - 1].strip().startswith(("#", "-", "label")):
            prev = sample.splitlines()[line_no - 1].strip()
            assert prev.startswith("#") or re.match(r"^\w+:", prev), f"no comment for {line}"
    # The sample is valid except for its placeholder tokens.
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == "appservice.as_token"
    data["appservice"]["as_token"] = "a" * 40
    data["appservice"]["hs_token"] = "b" * 40
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.path == "email.password"
    data["email"]["password"] = "a real password"
    config = parse_config(data)
    assert config.hours is not None and config.verification is not None
    assert config.hours.schedule.holidays_country == "ID"


def test_generate_registration_refuses_placeholders_then_writes(tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text((ROOT / "config.sample.yaml").read_text())
    out = tmp_path / "registration.yaml"
    cmd = [
        sys.executable,
        "-m",
        "refdesk.cli",
        "generate-registration",
        "--config",
        str(config_path),
    ]
    first = subprocess.run([*cmd, "--output", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 2 and "as_token:" in first.stderr and not out.exists()
    data = yaml.safe_load(config_path.read_text())
    data["appservice"]["as_token"] = "a" * 40
    data["appservice"]["hs_token"] = "b" * 40
    data["email"]["password"] = "a real password"
    config_path.write_text(yaml.safe_dump(data))
    second = subprocess.run([*cmd, "--output", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert second.returncode == 0, second.stderr
    reg = yaml.safe_load(out.read_text())
    assert reg["as_token"] == "a" * 40 and reg["hs_token"] == "b" * 40
    assert reg["rate_limited"] is False
    assert reg["namespaces"]["users"][0] == {
        "exclusive": True,
        "regex": r"@refdesk_v_.*:example\.org",
    }
    assert out.stat().st_mode & 0o077 == 0  # tokens: readable by the owner only

"""Careful writes to the admin's files: the appservice tokens filled in place, atomic writes.

refdesk rewrites nothing in the admin's config except this one case: while ``appservice.as_token``
or ``appservice.hs_token`` still holds the ``CHANGE_ME`` placeholder, ``refdesk
generate-registration`` puts a fresh token on that line. It is a line edit, not a YAML round
trip: every comment and every other line stays byte for byte, and the result is checked by
parsing it again before it replaces the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bridge.registration import new_token
from refdesk.config import PLACEHOLDER, ConfigError

SECTION = "appservice"
TOKEN_KEYS = ("as_token", "hs_token")
_SECTION_LINE = re.compile(rf"^{SECTION}[ \t]*:[ \t]*(#.*)?$")
_TOKEN_LINE = re.compile(
    r"^(?P<head>[ \t]+(?P<key>as_token|hs_token)[ \t]*:[ \t]*)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|[^\s#'\"][^#]*?)"
    r"(?P<tail>[ \t]*(?:#.*)?)$"
)


def _placeholder_keys(data: Any) -> list[str]:
    section = data.get(SECTION) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return []
    return [
        key
        for key in TOKEN_KEYS
        if isinstance(section.get(key), str) and PLACEHOLDER in section[key]
    ]


def _plain_token(make_token: Callable[[], str]) -> str:
    """A token YAML reads back as the same string, written bare or in quotes."""
    while True:
        token = make_token()
        if yaml.safe_load(token) == token:
            return token


def _by_hand(path: Path, keys: list[str], why: str) -> ConfigError:
    lines = "\n".join(f"    {key}: {new_token()}" for key in keys)
    return ConfigError(
        f"{SECTION}.{keys[0]}",
        f"still holds the placeholder, but {path} {why}, so refdesk left the file unchanged. "
        f"Put fresh tokens in by hand and run again:\n  {SECTION}:\n{lines}",
    )


def fill_placeholder_tokens(
    path: Path, make_token: Callable[[], str] = new_token
) -> dict[str, str]:
    """Replace the ``CHANGE_ME`` appservice tokens in the config file ``path``, in place.

    Returns the tokens written, by key (empty when none held the placeholder: real tokens are
    never replaced). A file that cannot be read or parsed is left to :func:`load_config` to
    report. Raises :class:`ConfigError` when the token lines cannot be found safely.
    """
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
        keys = _placeholder_keys(yaml.safe_load(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    if not keys:
        return {}
    # Keep every line ending as it is ("\r\n" too): split on "\n" only.
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _SECTION_LINE.match(line.rstrip("\r"))]
    start = starts[0] if starts else None
    if start is None:
        raise _by_hand(path, keys, f"has no `{SECTION}:` block with one token per line")
    found: dict[str, list[int]] = {key: [] for key in keys}
    for index in range(start + 1, len(lines)):
        body = lines[index].rstrip("\r")
        if body and not body[0].isspace() and not body.startswith("#"):
            break  # the next top-level key ends the section
        match = _TOKEN_LINE.match(body)
        if match and match["key"] in found and PLACEHOLDER in match["value"]:
            found[match["key"]].append(index)
    for key, where in found.items():
        if len(where) != 1:
            wanted = f"`{key}: {PLACEHOLDER}`"
            count = f"{len(where)} {wanted} lines" if where else f"no {wanted} line"
            raise _by_hand(path, keys, f"has {count} under `{SECTION}:`")
    tokens: dict[str, str] = {}
    for key, (index,) in found.items():
        line = lines[index]
        ending = "\r" if line.endswith("\r") else ""
        match = _TOKEN_LINE.match(line.rstrip("\r"))
        assert match is not None
        token = _plain_token(make_token)
        value = match["value"]
        quoted = f"{value[0]}{token}{value[0]}" if value[0] in "'\"" else token
        lines[index] = f"{match['head']}{quoted}{match['tail']}{ending}"
        tokens[key] = token
    new_text = "\n".join(lines)
    # Prove the edit did exactly this: the same document, with the new tokens in place.
    expected = yaml.safe_load(text)
    expected[SECTION].update(tokens)
    if yaml.safe_load(new_text) != expected:
        raise _by_hand(path, keys, "does not hold the tokens as plain `key: value` lines")
    write_atomically(path.resolve(), new_text.encode("utf-8"))
    return tokens


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` in one step (a crash leaves the old or the new file).

    The file keeps its mode and owner when it exists, or gets ``mode`` (default 0600). A new
    mode is set before any content is written, so secrets are never readable by others.
    """
    try:
        before: os.stat_result | None = path.stat()
    except FileNotFoundError:
        before = None
    if mode is None:
        mode = stat.S_IMODE(before.st_mode) if before is not None else 0o600
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if before is not None and (before.st_uid, before.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(OSError):
                    os.fchown(fh.fileno(), before.st_uid, before.st_gid)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

"""What every part of the config file is read with: the key-path error and the YAML walker.

:mod:`refdesk.config` and the sections it delegates (:mod:`refdesk.directory_config`,
:mod:`refdesk.hours_config`) build on this module, so none of them imports another to read.
"""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = "CHANGE_ME"


class ConfigError(Exception):
    """A config problem, with the key path it concerns."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class Reader:
    """Walks the YAML tree and names the key path in every error."""

    def __init__(self, data: Any, path: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path or "(top level)", "must be a mapping of keys to values")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def section(self, key: str, required: bool = True) -> Reader:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(self._key(key), "is required")
            return Reader({}, self._key(key))
        return Reader(self.data[key], self._key(key))

    def _get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _REQUIRED:
                raise ConfigError(self._key(key), "is required")
            return default
        return self.data[key]

    def text(self, key: str, default: Any = None, *, secret: bool = False) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(self._key(key), "must be a non-empty string")
        if secret and (PLACEHOLDER in value or len(value) < 16):
            raise ConfigError(
                self._key(key),
                "still holds a placeholder or is too short; "
                "run `refdesk generate-registration` to fill in real tokens",
            )
        return value

    def integer(self, key: str, default: Any = None, *, low: int, high: int) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self._key(key), f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(self._key(key), f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(self._key(key), f"must be true or false, got {value!r}")
        return value

    def items(self, key: str, default: Any = None) -> list[Any]:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, list):
            raise ConfigError(self._key(key), "must be a list")
        return value

    def url(self, key: str, default: Any = None) -> str:
        value = self.text(key, default)
        if not re.match(r"^https?://[^\s/]+", value):
            raise ConfigError(self._key(key), f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.seen:
                raise ConfigError(
                    self._key(str(key)), "is not a known setting (check the spelling)"
                )


_REQUIRED = object()

"""Numbered schema migrations, one module a version: append only, never edit one that shipped.

Each module ``vNNNN_<name>.py`` holds ``DESCRIPTION`` and its SQL for each engine (``SQLITE``,
``POSTGRES``: statements separated by ``;``). Every migration runs in its own transaction and is
recorded in the ``version`` table; a database newer than the code is refused. PostgreSQL desks
begin at v7, whose PostgreSQL part is the whole schema of that version.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: str
    postgres: str

    def statements(self, dialect: str) -> list[str]:
        script = self.sqlite if dialect == "sqlite" else self.postgres
        return [s.strip() for s in script.split(";") if s.strip()]


def _load() -> tuple[Migration, ...]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        match = re.fullmatch(r"v(\d{4})_\w+", module.name)
        if match is None:
            continue
        loaded = importlib.import_module(f"{__name__}.{module.name}")
        found.append(Migration(int(match[1]), loaded.DESCRIPTION, loaded.SQLITE, loaded.POSTGRES))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("store migrations must be numbered 1, 2, 3… without gaps")
    return tuple(found)


MIGRATIONS: tuple[Migration, ...] = _load()

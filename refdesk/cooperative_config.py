"""The ``cooperative`` section of the config file: partner libraries that cover for this desk.

::

    cooperative:
      after: 60
      partners:
        - name: "Perpustakaan Universitas Mitra"
          librarians: ["@rina:lib.mitra.example"]
          hours: {monday: "17:00-21:00", saturday: "09:00-15:00"}   # left out: every hour
          policy: "Cannot renew loans: refer patrons to layanan@perpustakaan.example."

Every problem names its key path (``cooperative.partners[0].librarians[1]: ...``).
"""

from __future__ import annotations

import re
from typing import Any

from refdesk.config_reader import ConfigError, Reader
from refdesk.hours_config import _weekly
from rooms.cooperative import CooperativeRules, Partner
from rooms.ids import UserID

_MXID = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-\[\]:]+$")


def parse_cooperative(data: Any, *, path: str, local: tuple[str, ...]) -> CooperativeRules:
    """``local``: this desk's own librarians and supervisors (a partner cannot be one)."""
    reader = Reader(data, path)
    after = reader.integer("after", 60, low=0, high=86400)
    partners: list[Partner] = []
    seen: dict[str, str] = {}
    for index, raw in enumerate(reader.items("partners", [])):
        item = Reader(raw, f"{reader._key('partners')}[{index}]")
        name = item.text("name").strip()
        if any(p.name == name for p in partners):
            raise ConfigError(item._key("name"), f"two partners are called {name!r}")
        librarians = item.items("librarians")
        if not librarians:
            raise ConfigError(item._key("librarians"), "must list at least one Matrix user ID")
        users: list[UserID] = []
        for number, mxid in enumerate(librarians):
            where = f"{item._key('librarians')}[{number}]"
            if not isinstance(mxid, str) or not _MXID.match(mxid):
                raise ConfigError(
                    where, f"must be a Matrix user ID like @rina:lib.mitra.example, got {mxid!r}"
                )
            if mxid in local:
                raise ConfigError(where, f"{mxid} is one of this desk's own librarians")
            if mxid in seen:
                raise ConfigError(where, f"{mxid} is already a librarian of {seen[mxid]!r}")
            seen[mxid] = name
            users.append(UserID(mxid))
        hours = None
        if item.data.get("hours") is not None:
            hours = _weekly(item.data["hours"], item._key("hours"), complete=False)
        item.seen.add("hours")
        policy = item.data.get("policy")
        item.seen.add("policy")
        if policy is not None and not isinstance(policy, str):
            raise ConfigError(item._key("policy"), "must be a text")
        item.check_unknown()
        partners.append(Partner(name, tuple(users), (policy or "").strip(), hours))
    reader.check_unknown()
    return CooperativeRules(tuple(partners), float(after))

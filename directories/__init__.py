"""Member directories the desk can check visitors against: a local YAML list
(:mod:`directories.local`), Koha's REST API (:mod:`directories.koha`) and any HTTP service
that answers with JSON (:mod:`directories.http_json`).

Each implements :class:`rooms.directory.MemberDirectory` and decides with
:func:`rooms.directory.check`, so every directory applies the same matching rules; what is
here is only how a member record is fetched or read. ``refdesk/directory_config.py`` picks one
from the config.
"""

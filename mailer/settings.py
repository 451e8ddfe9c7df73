"""What the mailer needs to know, given to it by the composition root (``refdesk/wiring.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MailSettings:
    """The SMTP relay and the sender. ``host`` None: email is off."""

    host: str | None = None
    port: int = 587
    security: str = "starttls"
    """``starttls``, ``ssl`` (implicit TLS) or ``none``."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str = "refdesk@localhost"
    from_name: str = "Tanya Pustakawan"
    reply_to: str | None = None

    @property
    def enabled(self) -> bool:
        return self.host is not None

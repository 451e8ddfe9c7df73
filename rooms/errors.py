"""What the desk refuses, with a stable ``code`` for API clients."""

from __future__ import annotations


class DeskError(Exception):
    """A request the desk refuses; ``code`` is stable for API clients."""

    code = "desk_error"


class UnknownSession(DeskError):
    code = "unknown_session"


class InvalidToken(DeskError):
    code = "invalid_token"


class SessionClosedError(DeskError):
    code = "session_closed"


class MessageTooLong(DeskError):
    code = "message_too_long"


class SessionStillOpen(DeskError):
    code = "session_open"


class TooManyRequests(DeskError):
    code = "too_many_requests"


class EmailUnavailable(DeskError):
    code = "email_unavailable"


class VerificationOff(DeskError):
    code = "verification_unavailable"


class VerificationNotRequested(DeskError):
    code = "verification_not_requested"


class BadLink(DeskError):
    code = "invalid_link"


class ClientBanned(DeskError):
    code = "client_banned"


class UnknownMessage(DeskError):
    code = "unknown_message"


class NotYourMessage(DeskError):
    code = "not_your_message"


class EditWindowPassed(DeskError):
    code = "edit_window_passed"


class MessageDeleted(DeskError):
    code = "message_deleted"

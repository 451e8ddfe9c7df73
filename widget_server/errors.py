"""One JSON error shape for the visitor API, and the middleware that enforces it."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from rooms.desk import (
    BadLink,
    ClientBanned,
    DeskError,
    EditWindowPassed,
    EmailUnavailable,
    InvalidToken,
    MessageDeleted,
    MessageTooLong,
    NotYourMessage,
    SessionClosedError,
    SessionStillOpen,
    TooManyRequests,
    UnknownMessage,
    UnknownSession,
    VerificationNotRequested,
    VerificationOff,
)
from rooms.session import ValidationError

log = logging.getLogger("refdesk.widget_server")

_STATUS = {
    UnknownSession: 404,
    InvalidToken: 403,
    SessionClosedError: 409,
    MessageTooLong: 413,
    SessionStillOpen: 409,
    TooManyRequests: 429,
    EmailUnavailable: 503,
    VerificationOff: 503,
    BadLink: 403,
    ClientBanned: 403,
    VerificationNotRequested: 409,
    UnknownMessage: 404,
    NotYourMessage: 403,
    EditWindowPassed: 409,
    MessageDeleted: 409,
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


def desk_error_status(exc: DeskError) -> int:
    return _STATUS.get(type(exc), 400)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_error(request: web.Request, exc: Exception) -> web.Response | None:
    """The ``{"error", "message"}`` answer for a failure under /api (with a fitting status);
    None for an HTTP exception that should go out as it is (the caller re-raises it)."""
    if isinstance(exc, ApiError):
        response = error_response(exc.status, exc.code, exc.message, **exc.extra)
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    if isinstance(exc, ValidationError):
        return error_response(
            422, "validation_failed", "Some fields are missing or invalid.", fields=exc.fields
        )
    if isinstance(exc, DeskError):
        return error_response(desk_error_status(exc), exc.code, str(exc))
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_response(413, "request_too_large", "The request body is too large.")
    if isinstance(exc, web.HTTPNotFound):
        if request.path.startswith("/api/"):
            return error_response(404, "not_found", "No such API endpoint.")
        return None
    if isinstance(exc, web.HTTPMethodNotAllowed):
        if request.path.startswith("/api/"):
            return error_response(
                405, "method_not_allowed", f"Use {', '.join(sorted(exc.allowed_methods))}."
            )
        return None
    if isinstance(exc, web.HTTPException):
        return None
    reference = secrets.token_hex(4)
    log.exception("internal error %s on %s %s", reference, request.method, request.path)
    return error_response(
        500,
        "internal_error",
        "Something went wrong on our side. Please try again.",
        reference=reference,
    )

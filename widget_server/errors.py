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
    EmailUnavailable,
    InvalidToken,
    MessageTooLong,
    SessionClosedError,
    SessionStillOpen,
    TooManyRequests,
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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure under /api becomes ``{"error", "message"}`` with a fitting status."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, **exc.extra)
        if "retry_after" in exc.extra:
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response
    except ValidationError as exc:
        return error_response(
            422, "validation_failed", "Some fields are missing or invalid.", fields=exc.fields
        )
    except DeskError as exc:
        return error_response(desk_error_status(exc), exc.code, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request_too_large", "The request body is too large.")
    except web.HTTPNotFound:
        if request.path.startswith("/api/"):
            return error_response(404, "not_found", "No such API endpoint.")
        raise
    except web.HTTPMethodNotAllowed as exc:
        if request.path.startswith("/api/"):
            return error_response(
                405, "method_not_allowed", f"Use {', '.join(sorted(exc.allowed_methods))}."
            )
        raise
    except web.HTTPException:
        raise
    except Exception:
        reference = secrets.token_hex(4)
        log.exception("internal error %s on %s %s", reference, request.method, request.path)
        return error_response(
            500,
            "internal_error",
            "Something went wrong on our side. Please try again.",
            reference=reference,
        )

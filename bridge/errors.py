"""Which failures are worth retrying: the homeserver or the store was briefly unavailable."""

from __future__ import annotations

from bridge.matrix_api import HomeserverUnavailable, MatrixError
from rooms.store import TRANSIENT_ERRORS


def is_transient(exc: BaseException) -> bool:
    """True for failures that pass by themselves (an outage, a 5xx, a 429, a busy store);
    False for refusals and errors in the data, which a retry would only repeat."""
    if isinstance(exc, HomeserverUnavailable | TimeoutError):
        return True
    if isinstance(exc, MatrixError):
        return exc.transient
    return isinstance(exc, TRANSIENT_ERRORS)

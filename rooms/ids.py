"""Typed identifiers: visitor-side and Matrix-side names never mix."""

from typing import NewType

SessionID = NewType("SessionID", str)
"""Public id of one visitor conversation (lowercase base32, safe in a Matrix localpart)."""

MessageID = NewType("MessageID", int)
"""Store id of one message; also the visitor API's cursor."""

RoomID = NewType("RoomID", str)
"""Opaque reference to the session's room on the chat network (set by the bridge)."""

UserID = NewType("UserID", str)
"""Opaque reference to a librarian's account on the chat network."""

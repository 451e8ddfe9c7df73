"""The ``attachments`` table: a chat's files — a visitor's (checked, without metadata) until the
room has them, a librarian's as fetched from the homeserver for the widget."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rooms.store.database import Tx


@dataclass(frozen=True)
class Stored:
    id: int
    session_id: str
    mimetype: str
    filename: str
    size: int
    width: int | None
    height: int | None
    data: bytes | None
    thumbnail: bytes | None
    thumb_mimetype: str | None
    thumb_width: int | None
    thumb_height: int | None
    mxc: str | None
    thumb_mxc: str | None


async def add(
    tx: Tx,
    session_id: str,
    *,
    mimetype: str,
    filename: str,
    data: bytes,
    width: int | None,
    height: int | None,
    thumbnail: bytes | None,
    thumb_mimetype: str | None,
    thumb_width: int | None,
    thumb_height: int | None,
    mxc: str | None,
    at: datetime,
) -> int:
    found = await tx.fetchval(
        """
        INSERT INTO attachments (session_id, mimetype, filename, size, width, height, data,
                                 thumbnail, thumb_mimetype, thumb_width, thumb_height, mxc,
                                 created_at)
        VALUES (:s, :m, :f, :size, :w, :h, :data, :t, :tm, :tw, :th, :mxc, :at)
        RETURNING id
        """,
        {
            "s": session_id,
            "m": mimetype,
            "f": filename,
            "size": len(data),
            "w": width,
            "h": height,
            "data": data,
            "t": thumbnail,
            "tm": thumb_mimetype,
            "tw": thumb_width,
            "th": thumb_height,
            "mxc": mxc,
            "at": at,
        },
    )
    return int(found)


async def get(tx: Tx, session_id: str, attachment_id: int) -> Stored | None:
    """An attachment of this chat (of no other: the caller's token names the chat)."""
    row = await tx.fetchone(
        "SELECT * FROM attachments WHERE id = :id AND session_id = :s",
        {"id": attachment_id, "s": session_id},
    )
    if row is None:
        return None
    return Stored(
        id=row["id"],
        session_id=row["session_id"],
        mimetype=row["mimetype"],
        filename=row["filename"],
        size=row["size"],
        width=row["width"],
        height=row["height"],
        data=bytes(row["data"]) if row["data"] is not None else None,
        thumbnail=bytes(row["thumbnail"]) if row["thumbnail"] is not None else None,
        thumb_mimetype=row["thumb_mimetype"],
        thumb_width=row["thumb_width"],
        thumb_height=row["thumb_height"],
        mxc=row["mxc"],
        thumb_mxc=row["thumb_mxc"],
    )


async def set_uploaded(tx: Tx, attachment_id: int, mxc: str, thumb_mxc: str | None) -> None:
    await tx.execute(
        "UPDATE attachments SET mxc = :mxc, thumb_mxc = :t WHERE id = :id",
        {"mxc": mxc, "t": thumb_mxc, "id": attachment_id},
    )

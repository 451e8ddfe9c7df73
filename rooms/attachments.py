"""A file sent in a chat: what it really is (by its content, never its name or the browser's
word), whether the desk takes it, and an image's pixels without their metadata.

Pillow decodes and re-encodes images: a phone photo's EXIF (GPS position, device, time) and any
XMP or text chunks are dropped before anything is stored or forwarded, and the picture is turned
upright first (EXIF orientation), so nothing visible changes. Decoding runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from rooms.errors import DeskError

# What a desk may accept, by group; the config names groups (widget.attachments.types).
TYPES: dict[str, tuple[str, str]] = {
    # mimetype: (group, extension)
    "image/png": ("image", "png"),
    "image/jpeg": ("image", "jpg"),
    "image/gif": ("image", "gif"),
    "image/webp": ("image", "webp"),
    "application/pdf": ("pdf", "pdf"),
    "text/plain": ("text", "txt"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("office", "docx"),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("office", "xlsx"),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        "office",
        "pptx",
    ),
    "application/vnd.oasis.opendocument.text": ("office", "odt"),
    "application/vnd.oasis.opendocument.spreadsheet": ("office", "ods"),
    "application/vnd.oasis.opendocument.presentation": ("office", "odp"),
    "application/msword": ("office", "doc"),
    "application/vnd.ms-excel": ("office", "xls"),
    "application/vnd.ms-powerpoint": ("office", "ppt"),
}
GROUPS = ("image", "pdf", "text", "office")
THUMBNAIL = 800  # pixels, the longer side: what the room shows before the photo is opened
_OOXML = {"word/": "wordprocessingml.document", "xl/": "spreadsheetml.sheet"}
_OOXML["ppt/"] = "presentationml.presentation"
_OLE = {"doc": "application/msword", "xls": "application/vnd.ms-excel"}
_OLE["ppt"] = "application/vnd.ms-powerpoint"
_MARKUP = re.compile(rb"<\s*(!doctype|html|head|body|script|svg|iframe|\?xml)", re.IGNORECASE)


class AttachmentRefused(DeskError):
    """The file is not taken; ``code`` says why (too large, type not allowed, unreadable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AttachmentRules:
    max_size: int = 10 * 1024 * 1024
    types: tuple[str, ...] = GROUPS


@dataclass(frozen=True)
class CheckedFile:
    data: bytes
    mimetype: str
    filename: str
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    thumb_mimetype: str | None = None
    thumb_width: int | None = None
    thumb_height: int | None = None


def sniff(data: bytes, filename: str = "") -> str | None:
    """The file's type by its first bytes (and structure), or None if it is none we know."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return _zip_type(data)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):  # an old Office file: by its name
        return _OLE.get(filename.rsplit(".", 1)[-1].lower())
    return "text/plain" if _plain_text(data) else None


def _zip_type(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if "mimetype" in names:  # OpenDocument: its type is its first entry
                declared = archive.read("mimetype").decode("ascii", "replace").strip()
                return declared if declared in TYPES else None
            if "[Content_Types].xml" in names:
                for folder, kind in _OOXML.items():
                    if any(n.startswith(folder) for n in names):
                        return f"application/vnd.openxmlformats-officedocument.{kind}"
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    return None


def _plain_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _MARKUP.search(data[:4096]) is None  # HTML or SVG is not plain text


def clean_filename(name: str, mimetype: str) -> str:
    """A file name safe to show and to save: no path, no control characters, at most 120
    characters, and the extension of what the file really is."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in unicodedata.normalize("NFC", base) if c.isprintable()).strip(". ")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    extension = TYPES[mimetype][1]
    return f"{(stem or 'file')[:100]}.{extension}"


def check(data: bytes, filename: str, rules: AttachmentRules) -> CheckedFile:
    """The file as the desk takes it, or :class:`AttachmentRefused`."""
    if not data:
        raise AttachmentRefused("attachment_empty", "The file is empty.")
    if len(data) > rules.max_size:
        raise AttachmentRefused(
            "attachment_too_large",
            f"The file is larger than {rules.max_size // (1024 * 1024)} MB.",
        )
    mimetype = sniff(data, filename)
    if mimetype is None or TYPES[mimetype][0] not in rules.types:
        raise AttachmentRefused(
            "attachment_type_not_allowed", "This kind of file cannot be sent here."
        )
    name = clean_filename(filename, mimetype)
    if TYPES[mimetype][0] != "image":
        return CheckedFile(data, mimetype, name)
    return _image(data, mimetype, name)


def _image(data: bytes, mimetype: str, name: str) -> CheckedFile:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if mimetype == "image/gif":  # no EXIF in GIF; animation kept as sent
                clean, (width, height) = data, image.size
                frame = image.convert("RGBA")
            else:
                upright = ImageOps.exif_transpose(image) or image
                clean = _without_metadata(upright, mimetype)
                width, height = upright.size
                frame = upright
            thumb = _thumbnail(frame)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise AttachmentRefused("attachment_unreadable", "This image cannot be read.") from None
    return CheckedFile(clean, mimetype, name, width, height, *thumb)


def _without_metadata(image: Image.Image, mimetype: str) -> bytes:
    out = io.BytesIO()
    options: dict[str, Any] = {}
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]  # colours, not metadata
    if mimetype == "image/jpeg":
        rgb = image if image.mode in ("RGB", "L", "CMYK") else image.convert("RGB")
        rgb.save(out, "JPEG", quality=90, optimize=True, **options)
    elif mimetype == "image/webp":
        image.save(out, "WEBP", quality=90, **options)
    else:
        image.save(out, "PNG", optimize=True, **options)
    return out.getvalue()


def _thumbnail(image: Image.Image) -> tuple[bytes | None, str | None, int | None, int | None]:
    if max(image.size) <= THUMBNAIL:
        return None, None, None, None
    small = image.copy()
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    if small.mode in ("RGBA", "LA", "P"):
        small.save(out, "PNG", optimize=True)
        kind = "image/png"
    else:
        small.convert("RGB").save(out, "JPEG", quality=80)
        kind = "image/jpeg"
    return out.getvalue(), kind, small.width, small.height


async def check_in_thread(data: bytes, filename: str, rules: AttachmentRules) -> CheckedFile:
    """:func:`check` off the event loop (decoding a photo takes tens of milliseconds)."""
    return await asyncio.to_thread(check, data, filename, rules)


def from_librarian(data: bytes, filename: str, rules: AttachmentRules) -> CheckedFile | None:
    """A file a librarian sent, as the widget will offer it: its type by content (one the desk
    does not know goes as ``application/octet-stream``, to download), an image without its
    metadata; None when larger than the desk takes (the visitor then reads its name only)."""
    if not data or len(data) > rules.max_size:
        return None
    mimetype = sniff(data, filename)
    if mimetype is None:
        base = "".join(c for c in filename.replace("\\", "/").rsplit("/", 1)[-1] if c.isprintable())
        return CheckedFile(data, "application/octet-stream", base.strip(". ")[:120] or "file")
    name = clean_filename(filename, mimetype)
    if TYPES[mimetype][0] != "image":
        return CheckedFile(data, mimetype, name)
    try:
        return _image(data, mimetype, name)
    except AttachmentRefused:
        return CheckedFile(data, "application/octet-stream", name)


async def from_librarian_in_thread(
    data: bytes, filename: str, rules: AttachmentRules
) -> CheckedFile | None:
    return await asyncio.to_thread(from_librarian, data, filename, rules)

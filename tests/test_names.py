"""Names that lie: no control, format or direction-changing character reaches Matrix."""

from __future__ import annotations

import unicodedata

import pytest

from rooms.names import clean_text, display_name_with_marker, isolate
from rooms.session import ValidationError, VisitorForm

TOPICS = {"literature"}


def form(**fields: str) -> VisitorForm:
    raw = {"name": "Budi", "email": "budi@example.org", "topic": "literature", **fields}
    return VisitorForm.validate(raw, topics=TOPICS, languages=("id", "en"), default_language="id")


def invisible(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cs")]


def test_a_right_to_left_override_cannot_fake_a_librarian() -> None:
    name = form(name="Budi \u202e)nairarbil( iraS").name
    assert "\u202e" not in name and name == "Budi )nairarbil( iraS"
    shown = display_name_with_marker(name)
    assert shown.endswith(" (visitor)") and not invisible(shown)


@pytest.mark.parametrize(
    "raw",
    [
        "Sari\u200b (librarian)",  # zero-width space
        "Sari\u2066 (librarian)\u2069",  # isolates
        "\ufeffSari\u200e\u200f\u061c",  # BOM, marks
        "Sari\u2028Dewi",  # line separator
        "Sari\x00\x07\x1b[31m",  # controls and an escape sequence
        "Sari\U000e0041\ue000",  # a tag character, private use
    ],
)
def test_invisible_characters_are_removed(raw: str) -> None:
    cleaned = clean_text(raw)
    assert not invisible(cleaned) and "Sari" in cleaned
    assert "  " not in cleaned and cleaned == cleaned.strip()


def test_other_fields_are_cleaned_and_emails_with_tricks_refused() -> None:
    cleaned = form(member_number="A-1\u202e23", page_url="https://lib.example/\u200bx")
    assert cleaned.member_number == "A-123" and cleaned.page_url == "https://lib.example/x"
    with pytest.raises(ValidationError) as info:
        form(email="budi@exa\u202emple.org")
    assert info.value.fields == {"email": "not a valid email address"}
    with pytest.raises(ValidationError) as info:
        form(name="\u200b\u202e")  # nothing visible left
    assert info.value.fields == {"name": "required"}


def test_combining_marks_do_not_pile_up() -> None:
    zalgo = "B" + "\u0301" * 40 + "udi"
    assert clean_text(zalgo) == "B" + "\u0301" * 3 + "udi"
    assert clean_text("Nguyễn Thị") == "Nguyễn Thị"  # real accents stay


def test_the_marker_keeps_its_place_after_any_name() -> None:
    arabic = "أحمد"
    shown = display_name_with_marker(arabic)
    # Right-to-left text is isolated, so the marker stays at the end, left to right.
    assert shown == f"\u2068{arabic}\u2069 (visitor)"
    assert isolate("Budi") == "Budi"
    long = display_name_with_marker("Budi " * 30)
    assert long.endswith("… (visitor)") and len(long) <= 40 + len(" (visitor)")

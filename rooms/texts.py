"""What the desk tells visitors, in their language (Bahasa Indonesia first)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "closed_by_visitor": {
        "id": "Pengunjung mengakhiri percakapan.",
        "en": "The visitor ended the chat.",
    },
    "closed_by_librarian": {
        "id": "Pustakawan mengakhiri percakapan.",
        "en": "The librarian ended the chat.",
    },
    "claimed": {
        "id": "{librarian} sekarang melayani Anda.",
        "en": "{librarian} is now helping you.",
    },
    "transferred": {
        "id": "Percakapan Anda dialihkan ke {librarian}.",
        "en": "Your chat was passed on to {librarian}.",
    },
    "requeued": {
        "id": "Pustakawan Anda harus beralih tugas. Anda kembali dalam antrean; "
        "pustakawan lain akan segera membalas.",
        "en": "Your librarian had to step away. You are back in the queue; "
        "another librarian will answer shortly.",
    },
    "verify_asked": {
        "id": "Pustakawan meminta Anda memastikan keanggotaan. Isi formulir singkat di bawah; "
        "data Anda hanya dipakai untuk pemeriksaan ini dan tidak disimpan.",
        "en": "The librarian asks you to confirm your membership. Fill in the short form below; "
        "what you type is only used for this check and is not kept.",
    },
    "escalated": {
        "id": "Mohon maaf, semua pustakawan sedang sibuk. Anda nomor {position} dalam antrean; "
        "kami akan segera membalas. Anda boleh menutup halaman ini: percakapan tetap tersimpan.",
        "en": "Sorry for the wait: all librarians are busy. You are number {position} in the "
        "queue and we will answer soon. You may close this page: your chat is kept.",
    },
}


def text(key: str, language: str, **values: object) -> str:
    forms = TEXTS[key]
    return forms.get(language, forms["en"]).format(**values)

"""``refdesk up``: the whole desk on one machine, with a local Synapse and demo librarians.

Everything lives in one data directory; a second run reuses its config, accounts and rooms.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bridge.registration import new_token, registration
from common.logs import setup_logging
from refdesk.config import Config, ConfigError, load_config
from refdesk.service import RefDesk
from refdesk.wiring import bridge_settings

DEMO_LIBRARIANS = (
    ("sari", "Sari (Pustakawan)"),
    ("dewi", "Dewi (Pustakawan)"),
    ("agus", "Agus (Pustakawan)"),
)


DEMO_CANNED = {
    "hours": {
        "id": "Halo {visitor}, layanan kami buka Senin-Jumat 09.00-19.00 "
        "dan Sabtu 09.00-15.30 WIB.",
        "en": "Hello {visitor}, we are open Mon-Fri 09:00-19:00 and Sat 09:00-15:30 (WIB).",
    },
    "membership": {
        "id": "Kartu anggota dapat dibuat di loket keanggotaan dengan membawa KTP. "
        "Salam, {librarian}",
        "en": "You can get a member card at the membership desk with an ID card. "
        "Regards, {librarian}",
    },
}


DEMO_FAQ = {
    "member-card": {
        "question": {
            "id": "Bagaimana cara membuat kartu anggota?",
            "en": "How do I get a member card?",
        },
        "answer": {
            "id": "Datang ke loket keanggotaan lantai 1 dengan KTP. Kartu jadi dalam 10 menit "
            "dan gratis.",
            "en": "Come to the membership desk on the ground floor with an ID card. The card "
            "is free and ready in 10 minutes.",
        },
    },
    "ejournal-login": {
        "question": {
            "id": "Saya tidak bisa masuk ke e-journal",
            "en": "I cannot log in to the e-journals",
        },
        "answer": {
            "id": "Masuk dengan nomor anggota dan PIN di halaman e-resources. Lupa PIN? "
            "Tanyakan pustakawan di sini.",
            "en": "Log in with your member number and PIN on the e-resources page. Forgot "
            "your PIN? Ask a librarian here.",
        },
    },
    "opening-hours": {
        "question": {"id": "Kapan perpustakaan buka?", "en": "When is the library open?"},
        "answer": {
            "id": "Senin-Jumat 09.00-19.00, Sabtu 09.00-15.30 WIB. Tutup hari Minggu dan "
            "libur nasional.",
            "en": "Mon-Fri 09:00-19:00, Sat 09:00-15:30 (WIB). Closed on Sundays and "
            "national holidays.",
        },
    },
}


def embedded_config_data(
    *,
    widget_port: int,
    homeserver_port: int,
    appservice_port: int,
    librarians: list[str],
    domain: str = "localhost",
    database: str = "refdesk.db",
) -> dict[str, Any]:
    """A complete config for a desk on loopback (used by ``refdesk up`` and the tests)."""
    return {
        "homeserver": {"url": f"http://127.0.0.1:{homeserver_port}", "domain": domain},
        "appservice": {
            "id": "refdesk",
            "listen_host": "127.0.0.1",
            "listen_port": appservice_port,
            "url": f"http://127.0.0.1:{appservice_port}",
            "as_token": new_token(),
            "hs_token": new_token(),
            "bot_localpart": "refdesk",
            "bot_displayname": "Reference desk",
            "ghost_prefix": "refdesk_v_",
        },
        "widget": {
            "listen_host": "127.0.0.1",
            "listen_port": widget_port,
            "public_url": f"http://localhost:{widget_port}",
            "allowed_origins": ["*"],
            "max_message_length": 4000,
            "new_sessions_per_minute": 10,
            "trusted_proxies": ["127.0.0.0/8", "::1/128"],
            "forwarded_header": "x-forwarded-for",
        },
        "desk": {
            "name": "Tanya Pustakawan",
            "librarians": librarians,
            "supervisors": [],
            "escalate_after": 120,
            "canned": DEMO_CANNED,
            "greeting": {
                "id": "Halo {visitor}, selamat datang di {desk}! Pustakawan kami akan segera "
                "membalas. Silakan tulis pertanyaan Anda selengkap mungkin.",
                "en": "Hello {visitor}, welcome to {desk}! A librarian will answer shortly. "
                "Please describe your question as fully as you can.",
            },
            "default_language": "id",
            "timezone": "Asia/Jakarta",
        },
        "knowledge": {"entries": DEMO_FAQ},
        # The demo member list (refdesk/demo_members.yaml): try !verify with A-123 / 1990-05-01.
        "verification": {
            "fields": ["member_number", "date_of_birth"],
            "auto_after_claim": False,
            "directory": {"type": "local"},
        },
        "database": {"path": database},
        "logging": {"level": "INFO"},
    }


def write_yaml(path: Path, data: Any, private: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if private:
        path.chmod(0o600)


def _demo_accounts(data_dir: Path) -> dict[str, str]:
    """Demo librarian passwords, made once and kept in the data dir."""
    path = data_dir / "demo-accounts.yaml"
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if all(local in loaded for local, _ in DEMO_LIBRARIANS):
            return {str(k): str(v) for k, v in loaded.items()}
    accounts = {local: secrets.token_urlsafe(9) for local, _ in DEMO_LIBRARIANS}
    write_yaml(path, accounts)
    return accounts


FIRST_RUN_PORTS = {"widget": 8080, "homeserver": 8008, "appservice": 29330}


def ignored_ports(config: Config, asked: dict[str, int | None]) -> list[str]:
    """Ports asked for on the command line that an existing data dir's config does not use
    (it keeps those of its first run): one line each, saying what to edit instead."""
    kept = {
        "widget": (config.widget.listen_port, "--port", "widget.listen_port and widget.public_url"),
        "homeserver": (
            urlsplit(config.homeserver.url).port,
            "--homeserver-port",
            "homeserver.url (and the homeserver's own config)",
        ),
        "appservice": (
            config.appservice.listen_port,
            "--appservice-port",
            "appservice.listen_port and appservice.url",
        ),
    }
    return [
        f"{flag} {port} is ignored: this data dir keeps port {current} from its first run "
        f"(to change it, edit {where})"
        for name, (current, flag, where) in kept.items()
        if (port := asked.get(name)) is not None and port != current
    ]


def _prepare(
    data_dir: Path,
    config_path: Path | None,
    widget_port: int | None,
    homeserver_port: int | None,
    appservice_port: int | None,
) -> tuple[Config, Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    asked = {"widget": widget_port, "homeserver": homeserver_port, "appservice": appservice_port}
    first_run = False
    if config_path is None:
        config_path = data_dir / "refdesk.yaml"
        if not config_path.exists():
            first_run = True
            ports = {k: v if v is not None else FIRST_RUN_PORTS[k] for k, v in asked.items()}
            data = embedded_config_data(
                widget_port=ports["widget"],
                homeserver_port=ports["homeserver"],
                appservice_port=ports["appservice"],
                librarians=[f"@{local}:localhost" for local, _ in DEMO_LIBRARIANS],
            )
            # The demo's first librarian also reads the reports (!report), as a head would.
            data["reports"] = {"viewers": [f"@{DEMO_LIBRARIANS[0][0]}:localhost"]}
            write_yaml(config_path, data)
    config = load_config(config_path)
    if not first_run:
        for line in ignored_ports(config, asked):
            print(f"note: {line}", file=sys.stderr)
    registration_path = data_dir / "registration.yaml"
    write_yaml(registration_path, registration(bridge_settings(config)))
    return config, registration_path


def _banner(config: Config, homeserver_url: str, accounts: dict[str, str]) -> str:
    lines = [
        "",
        "refdesk is running.",
        f"  Demo library page (visitor widget): {config.widget.public_url}/demo",
        f"  Homeserver for Element:             {homeserver_url}",
        "  Librarian accounts (log in with Element, 'Sign in' → edit homeserver):",
    ]
    for local, _ in DEMO_LIBRARIANS:
        mxid = f"@{local}:{config.homeserver.domain}"
        if mxid in config.desk.librarians:
            lines.append(f"    {mxid:<24} password: {accounts[local]}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def _up(config: Config, registration_path: Path, data_dir: Path) -> None:
    from refdesk.homeserver import EmbeddedSynapse

    setup_logging(config.logging.level)
    port = int(config.homeserver.url.rsplit(":", 1)[1].split("/")[0])
    synapse = EmbeddedSynapse(
        data_dir=data_dir / "synapse",
        server_name=config.homeserver.domain,
        port=port,
        registration_files=[registration_path],
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"Starting Synapse on {synapse.url} (data in {synapse.data_dir})…", flush=True)
    await synapse.start()
    if config.homeserver.admin_token is None:  # purged chats' rooms are deleted (PRIVACY.md)
        homeserver = replace(config.homeserver, admin_token=await synapse.admin_token())
        config = replace(config, homeserver=homeserver)
    desk = RefDesk(config)
    try:
        accounts = _demo_accounts(data_dir)
        for local, name in DEMO_LIBRARIANS:
            await synapse.register_user(local, accounts[local], displayname=name)
        await desk.start()
        print(_banner(config, synapse.url, accounts), flush=True)
        await stop.wait()
    finally:
        print("\nStopping refdesk and Synapse…", flush=True)
        await desk.stop()
        await synapse.stop()


def run_embedded(
    *,
    data_dir: Path,
    config_path: Path | None,
    widget_port: int | None,
    homeserver_port: int | None,
    appservice_port: int | None,
) -> int:
    try:
        config, registration_path = _prepare(
            data_dir, config_path, widget_port, homeserver_port, appservice_port
        )
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        import synapse  # noqa: F401
    except ImportError:
        print(
            "refdesk up needs the embedded homeserver: pip install 'refdesk[embedded]'",
            file=sys.stderr,
        )
        return 2
    asyncio.run(_up(config, registration_path, data_dir.resolve()))
    return 0

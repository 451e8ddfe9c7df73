"""Shared fixtures: one real Synapse per test session, one refdesk that tests may restart,
one real PostgreSQL server per test session with a fresh database per test."""

from __future__ import annotations

import email
import email.message
import email.policy
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from bridge.registration import registration
from refdesk.config import Config, load_config
from refdesk.embedded import embedded_config_data, write_yaml
from refdesk.homeserver import EmbeddedSynapse, free_port
from refdesk.language_files import install_builtin
from refdesk.postgres import (
    EmbeddedPostgres,
    PostgresBinaries,
    PostgresNotFound,
    find_binaries,
    running_in_ci,
)
from refdesk.service import RefDesk
from refdesk.wiring import bridge_settings
from rooms.store import Database, open_database
from tests.helpers import Librarian, Visitor

install_builtin()  # the words of the core's texts, for tests that build no RefDesk

LIBRARIANS = ("sari", "dewi", "agus")
SUPERVISOR = "kepala"
ESCALATE_AFTER = 3  # seconds: escalation is tested without waiting minutes
KNOWLEDGE = {
    "entries": {
        "membership-card": {
            "question": {
                "id": "Bagaimana cara membuat kartu anggota?",
                "en": "How do I get a member card?",
            },
            "answer": {
                "id": "Datang ke loket keanggotaan dengan KTP; kartu jadi dalam 10 menit.",
                "en": "Come to the membership desk with an ID card; it takes 10 minutes.",
            },
        },
        "ejournal-login": {
            "question": {"id": "Tidak bisa masuk e-journal", "en": "Cannot log in to e-journals"},
            "answer": {
                "id": "Gunakan nomor anggota dan PIN Anda di halaman masuk e-resources.",
                "en": "Use your member number and PIN on the e-resources login page.",
            },
        },
    }
}
CANNED = {
    "hours": {
        "id": "Halo {visitor}, layanan buka Senin-Jumat 09.00-19.00. Salam, {librarian}",
        "en": "Hello {visitor}, we are open Mon-Fri 09:00-19:00. Regards, {librarian}",
    }
}
PASSWORD = "correct horse battery staple"


class MailSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


@dataclass
class Stack:
    """The running system under test: Synapse, refdesk, and how to reach both."""

    synapse: EmbeddedSynapse
    config: Config
    config_path: Path
    refdesk: RefDesk | None = None
    log_records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def widget_url(self) -> str:
        return f"http://127.0.0.1:{self.config.widget.listen_port}"

    @property
    def domain(self) -> str:
        return self.config.homeserver.domain

    def mxid(self, localpart: str) -> str:
        return f"@{localpart}:{self.domain}"

    async def start_refdesk(self) -> RefDesk:
        assert self.refdesk is None
        self.refdesk = RefDesk(self.config)
        await self.refdesk.start()
        return self.refdesk

    async def stop_refdesk(self) -> None:
        if self.refdesk is not None:
            await self.refdesk.stop()
            self.refdesk = None

    async def restore(self, config: Config) -> None:
        """After a test that stopped refdesk or changed its config: running, as it was (so a
        failed assertion in between does not take the next tests down with it)."""
        if self.refdesk is not None and self.config is config:
            return
        await self.stop_refdesk()
        self.config = config
        await self.start_refdesk()

    @property
    def desk(self) -> RefDesk:
        assert self.refdesk is not None, "refdesk is stopped"
        return self.refdesk


@pytest.fixture(scope="session")
def e2e_store_url(request: pytest.FixtureRequest) -> str | None:
    """With ``REFDESK_E2E_STORE=postgres`` the end-to-end stack keeps its desk in PostgreSQL
    (the session's server, its own database); otherwise in SQLite. CI runs both."""
    if os.environ.get("REFDESK_E2E_STORE", "sqlite") != "postgres":
        return None
    server = request.getfixturevalue("postgres")
    return str(server.url())


@pytest.fixture(scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, mail_sink: MailSink, e2e_store_url: str | None
) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    hs_port, as_port, widget_port = free_port(), free_port(), free_port()
    data = embedded_config_data(
        widget_port=widget_port,
        homeserver_port=hs_port,
        appservice_port=as_port,
        librarians=[f"@{name}:localhost" for name in LIBRARIANS],
    )
    data["logging"]["level"] = "DEBUG"
    data["widget"]["new_sessions_per_minute"] = 10_000  # the suite opens many chats
    data["desk"]["supervisors"] = [f"@{SUPERVISOR}:localhost"]
    data["desk"]["escalate_after"] = ESCALATE_AFTER
    data["desk"]["canned"] = CANNED
    data["knowledge"] = KNOWLEDGE
    data["offline"] = {"batch_delay": 1, "unseen_after": 600, "link_valid_days": 14}
    data["verification"] = {
        "fields": ["member_number", "date_of_birth"],
        "max_attempts_per_session": 3,
        "directory": {"type": "local"},  # the demo member list
    }
    del data["desk"]["greeting"]  # tests count messages; the greeting has its own test
    data["email"] = {
        "host": "127.0.0.1",
        "port": mail_sink.port,
        "security": "none",
        "from_address": "tanya@perpustakaan.example",
        "from_name": "Tanya Pustakawan",
        "reply_to": "layanan@perpustakaan.example",
    }
    if e2e_store_url is not None:
        data["database"] = {"url": e2e_store_url}
    config_path = root / "refdesk.yaml"
    write_yaml(config_path, data)
    config = load_config(config_path)
    registration_path = root / "registration.yaml"
    write_yaml(registration_path, registration(bridge_settings(config)))
    synapse = EmbeddedSynapse(
        data_dir=root / "synapse",
        server_name="localhost",
        port=hs_port,
        registration_files=[registration_path],
        extra_config={"bcrypt_rounds": 4},
    )
    await synapse.start()
    for name in (*LIBRARIANS, SUPERVISOR):
        await synapse.register_user(name, PASSWORD, displayname=f"{name.capitalize()} Librarian")
    stack = Stack(synapse=synapse, config=config, config_path=config_path)
    await stack.start_refdesk()
    try:
        yield stack
    finally:
        await stack.stop_refdesk()
        await synapse.stop()


@pytest.fixture(scope="session")
async def librarians(stack: Stack) -> AsyncIterator[dict[str, Librarian]]:
    clients = {}
    for name in (*LIBRARIANS, SUPERVISOR):
        clients[name] = await Librarian.login(stack.synapse.url, stack.mxid(name), PASSWORD)
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.close()


@pytest.fixture
async def visitor(stack: Stack) -> AsyncIterator[Visitor]:
    v = Visitor(stack.widget_url)
    try:
        yield v
    finally:
        await v.close()


@pytest.fixture
async def nobody_on_duty(stack: Stack) -> AsyncIterator[None]:
    """Every librarian off duty for one test (the desk takes offline messages)."""
    queue = stack.desk.desk.queue
    for name in LIBRARIANS:
        await queue.set_duty(stack.mxid(name), False)  # type: ignore[arg-type]
    try:
        yield
    finally:
        for name in LIBRARIANS:
            await queue.set_duty(stack.mxid(name), True)  # type: ignore[arg-type]


def postgres_binaries_or_skip() -> PostgresBinaries:
    """The PostgreSQL server binaries; skip when there are none, but never in CI (fail)."""
    try:
        return find_binaries()
    except PostgresNotFound as exc:
        if running_in_ci():
            pytest.fail(f"{exc} (CI must not skip the PostgreSQL tests)", pytrace=False)
        pytest.skip(f"{exc}; ./run-tests installs it")


@pytest.fixture(scope="session")
async def postgres() -> AsyncIterator[EmbeddedPostgres]:
    """One real PostgreSQL server for the whole session (throwaway cluster, fsync off)."""
    server = EmbeddedPostgres(binaries=postgres_binaries_or_skip())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def new_postgres_url(
    postgres: EmbeddedPostgres,
) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes fresh, empty databases for one test: `url = await new_postgres_url()`.

    Each is owned by the non-superuser role in the URL and dropped after the test, open
    connections or not.
    """
    names: list[str] = []

    async def new() -> str:
        names.append(await postgres.create_database())
        return postgres.url(names[-1])

    try:
        yield new
    finally:
        for name in names:
            await postgres.drop_database(name)


@pytest.fixture
async def postgres_url(new_postgres_url: Callable[[], Awaitable[str]]) -> str:
    """A fresh, empty database for one test: postgresql://refdesk@127.0.0.1:PORT/test_N."""
    return await new_postgres_url()


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store test's desk keeps its data: each store test runs on both engines."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_target: str) -> AsyncIterator[Database]:
    """An open, migrated, empty store on SQLite and then on PostgreSQL."""
    db = open_database(store_target)
    await db.open()
    try:
        yield db
    finally:
        await db.close()

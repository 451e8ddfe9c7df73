"""Cooperative coverage end to end over real federation: two Synapse homeservers on loopback
(tests/federation.py), refdesk on the first, a partner library's librarian on the second.

The partner's librarian is rung after the delay (invited over federation and mentioned), joins
from their own homeserver, gets the library's policy note, asks for the membership check and
sees only its outcome, claims by answering; the visitor reads the answer and which library
gives it; one of our librarians takes the chat back with !claim. A refdesk restart while a chat
waits loses no partner ring.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.registration import registration
from refdesk.config import Config, load_config
from refdesk.embedded import embedded_config_data, write_yaml
from refdesk.homeserver import EmbeddedSynapse, free_port
from refdesk.postgres import EmbeddedPostgres
from refdesk.service import RefDesk
from refdesk.wiring import bridge_settings
from tests.conftest import PASSWORD
from tests.federation import federating_synapse, new_ports, self_signed
from tests.helpers import Librarian, Seen, Visitor
from tests.test_desk_in_element import eventually
from tests.test_verification_chat import SECRETS, verify

AFTER = 3  # seconds unanswered here before the partners are rung
LIBRARY = "Perpustakaan Mitra"
POLICY = "Cannot renew loans; refer patrons to layanan@perpustakaan.example."


@dataclass
class Cooperative:
    ours: EmbeddedSynapse
    partner: EmbeddedSynapse
    config: Config
    refdesk: RefDesk | None
    sari: Librarian  # ours
    rina: Librarian  # the partner library's, on the partner's homeserver

    @property
    def widget_url(self) -> str:
        return f"http://127.0.0.1:{self.config.widget.listen_port}"

    @property
    def desk(self) -> RefDesk:
        assert self.refdesk is not None
        return self.refdesk


@pytest.fixture(scope="module")
def postgres_server(request: pytest.FixtureRequest) -> EmbeddedPostgres | None:
    """With ``REFDESK_E2E_STORE=postgres`` this desk keeps its store in PostgreSQL too (in a
    database of its own: the suite's shared desk has the server's first one)."""
    if os.environ.get("REFDESK_E2E_STORE", "sqlite") != "postgres":
        return None
    server = request.getfixturevalue("postgres")
    assert isinstance(server, EmbeddedPostgres)
    return server


@pytest.fixture(scope="module")
async def coop(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: EmbeddedPostgres | None
) -> AsyncIterator[Cooperative]:
    root = tmp_path_factory.mktemp("cooperative")
    certificate = self_signed(root / "tls")
    ours_ports, partner_ports = new_ports(), new_ports()
    sari_id = f"@sari:{ours_ports.server_name}"
    rina_id = f"@rina:{partner_ports.server_name}"
    data = embedded_config_data(
        widget_port=free_port(),
        homeserver_port=ours_ports.client,
        appservice_port=free_port(),
        librarians=[sari_id],
        domain=ours_ports.server_name,
    )
    data["logging"]["level"] = "DEBUG"
    data["desk"]["escalate_after"] = 600  # the partners, not the escalation, answer here
    del data["desk"]["greeting"]
    data["cooperative"] = {
        "after": AFTER,
        "partners": [{"name": LIBRARY, "librarians": [rina_id], "policy": POLICY}],
    }
    if postgres_server is not None:
        name = await postgres_server.create_database()
        data["database"] = {"url": postgres_server.url(name)}
    config_path = root / "refdesk.yaml"
    write_yaml(config_path, data)
    config = load_config(config_path)
    registration_path = root / "registration.yaml"
    write_yaml(registration_path, registration(bridge_settings(config)))
    ours = federating_synapse(
        root / "ours", ours_ports, [partner_ports], certificate, [registration_path]
    )
    partner = federating_synapse(root / "partner", partner_ports, [ours_ports], certificate)
    await asyncio.gather(ours.start(), partner.start())
    try:
        await ours.register_user("sari", PASSWORD, displayname="Sari Librarian")
        await partner.register_user("rina", PASSWORD, displayname="Rina Mitra")
        refdesk = RefDesk(config)
        await refdesk.start()
        sari = await Librarian.login(ours.url, sari_id, PASSWORD)
        rina = await Librarian.login(partner.url, rina_id, PASSWORD)
        coop = Cooperative(ours, partner, config, refdesk, sari, rina)
        try:
            yield coop
        finally:
            await sari.close()
            await rina.close()
            if coop.refdesk is not None:
                await coop.refdesk.stop()
    finally:
        await asyncio.gather(ours.stop(), partner.stop())


def in_room(room_id: str, text: str) -> Callable[[Seen], bool]:
    return lambda s: s.room_id == room_id and text in s.body


async def chat_waiting(coop: Cooperative, visitor: Visitor, body: str) -> tuple[str, float]:
    """A visitor's first message, and the room it made (Sari, on duty, is rung: she does not
    answer). Returns the room and when the message was sent."""
    await visitor.start(name="Budi")
    sent = time.monotonic()
    await visitor.send(body)

    async def room() -> str | None:
        return (await coop.desk.desk.get_session(visitor.session_id or "")).room_id

    room_id = str(await eventually(room))
    await coop.sari.wait_for_invite(room_id)
    return room_id, sent


async def test_a_partner_librarian_answers_over_federation_and_ours_take_it_back(
    coop: Cooperative,
) -> None:
    sari, rina = coop.sari, coop.rina
    visitor = Visitor(coop.widget_url)
    try:
        room_id, sent = await chat_waiting(coop, visitor, "Saya mau perpanjang pinjaman buku")
        await sari.join(room_id)  # she looks in, but nobody here answers

        # After the delay the partner's librarian, on the other homeserver, is rung.
        assert await rina.wait_for_invite(room_id, timeout=60) == room_id
        assert time.monotonic() - sent >= AFTER
        await rina.join(room_id)  # over federation, from their own homeserver
        rung = await rina.wait_for(in_room(room_id, "Cooperative coverage"))
        assert rina.user_id in rung.source["content"]["m.mentions"]["user_ids"]
        assert "Budi" in rung.body and LIBRARY in rung.body
        # The library's agreement is posted in the room once its librarian joins.
        note = await rina.wait_for(in_room(room_id, "serves our patrons"))
        assert POLICY in note.body and note.sender == coop.config.bot_mxid

        # The partner asks for the membership check: the room gets the outcome, no secret.
        await rina.send(room_id, "!verify")
        await visitor.wait_for(lambda m: m["origin"] == "desk" and "keanggotaan" in m["body"])
        status, body = await verify(visitor, "A-123", "1990-05-01")
        assert status == 200 and body["outcome"] == "verified"
        outcome = await rina.wait_for(
            lambda s: s.room_id == room_id and s.body.startswith("Verified")
        )
        assert not any(secret in outcome.body for secret in SECRETS)
        assert not any(
            secret in s.body for s in rina.timeline for secret in SECRETS if s.room_id == room_id
        )

        # The partner answers: that claims the chat, and the visitor sees who and which library.
        await rina.send(room_id, "Halo Budi, saya Rina dari Perpustakaan Mitra. Ada yang bisa?")
        answer = await visitor.wait_for(
            lambda m: m["origin"] == "librarian" and "saya Rina" in m["body"]
        )
        assert answer["sender_name"] == "Rina Mitra"
        await visitor.wait_for(
            lambda m: (
                m["origin"] == "desk"
                and m["body"]
                == f"Rina Mitra dari {LIBRARY}, perpustakaan mitra kami, kini membantu Anda."
            )
        )
        claimed = await sari.wait_for(in_room(room_id, "claimed this chat"))
        assert claimed.body == f"Rina Mitra ({LIBRARY}) claimed this chat and is serving Budi."
        session = await coop.desk.desk.get_session(visitor.session_id or "")
        assert session.owner == rina.user_id

        # One of ours takes it back.
        await sari.send(room_id, "!claim")
        back = await rina.wait_for(in_room(room_id, "took this chat back"))
        assert back.body == (
            f"Sari Librarian took this chat back from Rina Mitra ({LIBRARY}) and is serving Budi."
        )
        await visitor.wait_for(
            lambda m: (
                m["origin"] == "desk"
                and m["body"] == "Sari Librarian dari Tanya Pustakawan kini membantu Anda."
            )
        )
        assert (await coop.desk.desk.get_session(session.id)).owner == sari.user_id
        await sari.send(room_id, "Saya lanjutkan ya, Budi.")
        await visitor.wait_for(lambda m: m["origin"] == "librarian" and "lanjutkan" in m["body"])

        # The reports count the chat as ours now (the last owner serves it).
        await sari.send(room_id, "!close")
        report = await coop.desk.desk.reports.report(coop.desk.desk.reports.period("today"))
        assert report.partners == 0
    finally:
        await visitor.close()


async def test_a_restart_while_a_chat_waits_loses_no_partner_ring(coop: Cooperative) -> None:
    visitor = Visitor(coop.widget_url)
    try:
        room_id, sent = await chat_waiting(coop, visitor, "Jam buka hari Minggu?")
        # refdesk stops before the delay is over, and comes back after it.
        await coop.desk.stop()
        coop.refdesk = None
        await asyncio.sleep(max(0.0, AFTER - (time.monotonic() - sent)) + 0.5)
        coop.refdesk = RefDesk(coop.config)
        await coop.refdesk.start()
        assert await coop.rina.wait_for_invite(room_id, timeout=60) == room_id
        await coop.rina.join(room_id)
        await coop.rina.wait_for(in_room(room_id, "Cooperative coverage"))
        await coop.rina.send(room_id, "Hari Minggu kami buka 09.00-15.00.")
        await visitor.wait_for(lambda m: m["origin"] == "librarian" and "Minggu" in m["body"])
        await coop.rina.send(room_id, "!close")
        closed = "Pustakawan mengakhiri percakapan."
        await visitor.wait_for(lambda m: m["origin"] == "desk" and m["body"] == closed)
        report = await coop.desk.desk.reports.report(coop.desk.desk.reports.period("today"))
        assert report.partners == 1
    finally:
        await visitor.close()


def test_the_embedded_homeserver_does_not_federate_by_default(tmp_path: Path) -> None:
    """`refdesk up` keeps federation off: only these tests' homeservers federate."""
    config = EmbeddedSynapse(data_dir=tmp_path)._config()
    assert config["federation_domain_whitelist"] == []
    assert all("federation" not in r["names"] for r in config["listeners"][0]["resources"])

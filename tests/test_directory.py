"""Member directories: matching rules, the YAML file, Koha's REST API, a generic JSON service,
and the ``verification:`` config section. No homeserver needed: Koha and the JSON service run
in-process on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from directories.http_json import FieldMapping, HttpJsonDirectory
from directories.koha import KohaBasicAuth, KohaDirectory, KohaOAuth
from directories.local import DirectoryFileError, LocalDirectory
from refdesk.config import ConfigError
from refdesk.directory_config import (
    DEMO_MEMBERS,
    HttpDirectoryConfig,
    KohaDirectoryConfig,
    LocalDirectoryConfig,
    build_directory,
    parse_directory,
)
from rooms.directory import (
    LookupResult,
    MemberDirectory,
    MemberRecord,
    Outcome,
    normalise_card,
    normalise_phone,
    parse_date,
)
from tests import koha_server
from tests.koha_server import KohaServer

TODAY = date(2026, 3, 2)


# normalisation


@pytest.mark.parametrize(
    "typed",
    ["0812-3456-7890", "+62 812 3456 7890", "62812.3456.7890", "(0812) 34567890", "812 3456 7890",
     "0062 812 3456 7890", "+62 (812) 3456-7890"],
)  # fmt: skip
def test_indonesian_phone_forms_are_one_number(typed: str) -> None:
    assert normalise_phone(typed) == "81234567890"


@pytest.mark.parametrize("typed", ["", "12345", "not a phone", "0" * 20])
def test_non_phones(typed: str) -> None:
    assert normalise_phone(typed) is None


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1990-05-01", date(1990, 5, 1)),
        ("1990-5-1", date(1990, 5, 1)),
        ("01/05/1990", date(1990, 5, 1)),
        ("1/5/1990", date(1990, 5, 1)),
        ("01-05-1990", date(1990, 5, 1)),
        (" 01/05/1990 ", date(1990, 5, 1)),
        ("2027-06-30T00:00:00Z", date(2027, 6, 30)),
        ("31/02/1990", None),
        ("05/01/90", None),
        ("1 Mei 1990", None),
        ("", None),
    ],
)
def test_dates(typed: str, expected: date | None) -> None:
    assert parse_date(typed) == expected


def test_card_numbers_ignore_case_and_blanks() -> None:
    assert normalise_card("  a-123 ") == normalise_card("A-123")
    assert normalise_card("A-123") != normalise_card("A-1234")


def test_record_repr_hides_check_fields() -> None:
    record = MemberRecord("A-1", "Budi", "Umum", None, date(1990, 5, 1), ("81234567890",))
    assert "1990" not in repr(record) and "8123" not in repr(record)
    assert "1990" not in repr(LookupResult(Outcome.VERIFIED, record.public))


# the local YAML directory


@pytest.fixture(scope="module")
def demo() -> LocalDirectory:
    return LocalDirectory.from_file(DEMO_MEMBERS)


async def test_demo_file_loads(demo: LocalDirectory) -> None:
    assert isinstance(demo, MemberDirectory)
    assert len(demo) == 6
    assert repr(demo) == "LocalDirectory(6 members)"


@pytest.mark.parametrize(
    "fields",
    [
        {"member_number": "A-123", "date_of_birth": "1990-05-01"},
        {"member_number": " a-123 ", "date_of_birth": "01/05/1990"},
        {"member_number": "A-123", "date_of_birth": "1-5-1990"},
        {"member_number": "A-123", "phone": "+62 812 3456 7890"},
        {"member_number": "A-123", "phone": "081234567890", "date_of_birth": "1990-05-01"},
        {"member_number": "A-124", "phone": "021 5550101"},  # the second of two phones
    ],
)
async def test_local_verified(demo: LocalDirectory, fields: dict[str, str]) -> None:
    result = await demo.verify(fields, TODAY)
    assert result.outcome == "verified"
    assert result.record is not None and result.record.name in ("Budi Santoso", "Siti Rahmawati")


async def test_local_public_record(demo: LocalDirectory) -> None:
    result = await demo.verify({"member_number": "A-123", "date_of_birth": "1990-05-01"}, TODAY)
    assert result.record is not None
    assert (result.record.name, result.record.member_type, result.record.expires) == (
        "Budi Santoso",
        "Mahasiswa",
        date(2027, 6, 30),
    )


async def test_local_expired_and_last_valid_day(demo: LocalDirectory) -> None:
    fields = {"member_number": "U-7788", "date_of_birth": "09/07/1968"}
    expired = await demo.verify(fields, TODAY)
    assert expired.outcome is Outcome.EXPIRED
    assert expired.record is not None and expired.record.expires == date(2024, 12, 31)
    on_last_day = await demo.verify(fields, date(2024, 12, 31))
    assert on_last_day.outcome is Outcome.VERIFIED


async def test_local_no_expiry_date(demo: LocalDirectory) -> None:
    result = await demo.verify({"member_number": "L-0005", "phone": "0838 8888 9999"}, TODAY)
    assert result.outcome is Outcome.VERIFIED
    assert result.record is not None and result.record.expires is None


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        ({"member_number": "Z-999", "date_of_birth": "1990-05-01"}, Outcome.NOT_FOUND),
        ({"member_number": "A-123", "date_of_birth": "1990-05-02"}, Outcome.MISMATCH),
        ({"member_number": "A-123", "date_of_birth": "not a date"}, Outcome.MISMATCH),
        ({"member_number": "A-123", "phone": "0812 3456 7891"}, Outcome.MISMATCH),
        # Both secrets given: both must match.
        ({"member_number": "A-123", "phone": "081234567890", "date_of_birth": "1990-05-02"},
         Outcome.MISMATCH),
        # An expired member with wrong details learns nothing about the record.
        ({"member_number": "U-7788", "date_of_birth": "1968-07-10"}, Outcome.MISMATCH),
    ],
)  # fmt: skip
async def test_local_refusals(
    demo: LocalDirectory, fields: dict[str, str], outcome: Outcome
) -> None:
    result = await demo.verify(fields, TODAY)
    assert result.outcome is outcome
    assert result.record is None


async def test_a_member_number_alone_never_verifies(demo: LocalDirectory) -> None:
    with pytest.raises(ValueError, match="date_of_birth, phone"):
        await demo.verify({"member_number": "A-123"}, TODAY)


async def test_missing_secret_on_file_is_a_mismatch() -> None:
    directory = LocalDirectory.from_data({"members": [{"member_number": 1001, "name": "Ani"}]})
    result = await directory.verify({"member_number": "1001", "date_of_birth": "2000-01-01"}, TODAY)
    assert result.outcome is Outcome.MISMATCH


@pytest.mark.parametrize(
    ("data", "where", "words"),
    [
        ([], "", "one key"),
        ({"members": {}}, "members", "list"),
        ({"members": [{"name": "X"}]}, "members[0].member_number", "non-empty"),
        ({"members": [{"member_number": "A", "name": "X", "pin": "1"}]}, "members[0].pin",
         "not a known key"),
        ({"members": [{"member_number": "A", "name": "X"}, {"member_number": " a", "name": "Y"}]},
         "members[1].member_number", "duplicate"),
        ({"members": [{"member_number": "A", "name": "X", "date_of_birth": "1990-02-31"}]},
         "members[0].date_of_birth", "date"),
        ({"members": [{"member_number": "A", "name": "X", "phone": "12"}]}, "members[0].phone",
         "phone"),
        ({"members": [{"member_number": "A", "name": "X", "phone": 812345678}]},
         "members[0].phone", "quoted"),
    ],
)  # fmt: skip
def test_member_file_errors_name_the_entry(data: Any, where: str, words: str) -> None:
    with pytest.raises(DirectoryFileError) as caught:
        LocalDirectory.from_data(data)
    assert caught.value.where == where
    assert words in caught.value.problem
    assert "1990-02-31" not in str(caught.value)


def test_member_file_yaml_error_does_not_quote_the_line(tmp_path: Path) -> None:
    path = tmp_path / "members.yaml"
    path.write_text('members:\n  - {member_number: A, date_of_birth: "1990-05-01}\n')
    with pytest.raises(DirectoryFileError) as caught:
        LocalDirectory.from_file(path)
    assert "not valid YAML" in str(caught.value)
    assert "1990-05-01" not in str(caught.value)


# Koha


@pytest.fixture
async def koha() -> AsyncIterator[KohaServer]:
    async with KohaServer() as server:
        yield server


async def _verify(directory: MemberDirectory, fields: dict[str, str]) -> LookupResult:
    try:
        return await directory.verify(fields, TODAY)
    finally:
        await directory.close()


BASIC = KohaBasicAuth(koha_server.USERNAME, koha_server.PASSWORD)
OAUTH = KohaOAuth(koha_server.CLIENT_ID, koha_server.CLIENT_SECRET)


@pytest.mark.parametrize("auth", [BASIC, OAUTH], ids=["basic", "oauth"])
async def test_koha_verified(koha: KohaServer, auth: KohaBasicAuth | KohaOAuth) -> None:
    directory = KohaDirectory(koha.base_url, auth, category_names={"MHS": "Mahasiswa"})
    result = await _verify(directory, {"member_number": "koha-001", "phone": "0812 3456 7890"})
    assert result.outcome is Outcome.VERIFIED
    assert result.record is not None
    assert (result.record.name, result.record.member_type, result.record.expires) == (
        "Budi Santoso",
        "Mahasiswa",
        date(2027, 6, 30),
    )
    # Koha matches "contains" unless told otherwise: KOHA-0012 must not come back.
    assert koha.last_query["_match"] == "exact"
    assert koha.last_query["cardnumber"] == "koha-001"
    assert "phone" not in koha.last_query and "date_of_birth" not in koha.last_query


async def test_koha_api_path_in_base_url(koha: KohaServer) -> None:
    directory = KohaDirectory(koha.base_url + "/api/v1/", BASIC)
    result = await _verify(directory, {"member_number": "KOHA-001", "date_of_birth": "01/05/1990"})
    assert result.outcome is Outcome.VERIFIED


async def test_koha_outcomes(koha: KohaServer) -> None:
    directory = KohaDirectory(koha.base_url, BASIC)
    try:
        expired = await directory.verify(
            {"member_number": "KOHA-0012", "phone": "021-555-0199"}, TODAY
        )
        assert expired.outcome is Outcome.EXPIRED
        assert expired.record is not None
        assert (expired.record.name, expired.record.member_type) == ("Sukarni", "UMUM")
        missing = await directory.verify(
            {"member_number": "KOHA-00", "date_of_birth": "1990-05-01"}, TODAY
        )
        assert missing.outcome is Outcome.NOT_FOUND
        wrong = await directory.verify(
            {"member_number": "KOHA-001", "date_of_birth": "1990-05-02"}, TODAY
        )
        assert wrong.outcome is Outcome.MISMATCH and wrong.record is None
        preferred = await directory.verify(
            {"member_number": "KOHA-100", "phone": "+6281299990000"}, TODAY
        )
        assert preferred.record is not None and preferred.record.name == "Pak Agus Wibowo"
        assert preferred.record.expires is None
        no_birth_date = await directory.verify(
            {"member_number": "KOHA-100", "date_of_birth": "1970-01-01"}, TODAY
        )
        assert no_birth_date.outcome is Outcome.MISMATCH
    finally:
        await directory.close()


async def test_koha_oauth_token_is_cached_and_renewed(koha: KohaServer) -> None:
    now = [1000.0]
    koha.token_lifetime = 90
    directory = KohaDirectory(koha.base_url, OAUTH, monotonic=lambda: now[0])
    fields = {"member_number": "KOHA-001", "date_of_birth": "1990-05-01"}
    try:
        for _ in range(3):
            assert (await directory.verify(fields, TODAY)).outcome is Outcome.VERIFIED
        assert koha.token_requests == 1
        now[0] += 61  # within the 30 s margin before the announced expiry
        assert (await directory.verify(fields, TODAY)).outcome is Outcome.VERIFIED
        assert koha.token_requests == 2
        koha.revoke_tokens()  # Koha forgot the token early: one new token, one retry
        assert (await directory.verify(fields, TODAY)).outcome is Outcome.VERIFIED
        assert koha.token_requests == 3
    finally:
        await directory.close()


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        (KohaBasicAuth(koha_server.USERNAME, "wrong-password-42"), "wrong-password-42"),
        (KohaOAuth(koha_server.CLIENT_ID, "wrong-client-secret-42"), "wrong-client-secret-42"),
    ],
    ids=["basic", "oauth"],
)
async def test_koha_wrong_credentials_are_unavailable(
    koha: KohaServer,
    auth: KohaBasicAuth | KohaOAuth,
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    directory = KohaDirectory(koha.base_url, auth)
    result = await _verify(directory, {"member_number": "KOHA-001", "phone": "081234567890"})
    assert result == LookupResult(Outcome.UNAVAILABLE)
    assert any("verification.directory.auth" in r.getMessage() for r in caplog.records)
    assert secret not in caplog.text and secret not in repr(directory) and secret not in repr(auth)
    assert "34567890" not in caplog.text


async def test_koha_down_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    server = await KohaServer().start()
    base_url = server.base_url
    await server.close()
    directory = KohaDirectory(base_url, BASIC, timeout=2)
    result = await _verify(directory, {"member_number": "KOHA-001", "phone": "081234567890"})
    assert result.outcome is Outcome.UNAVAILABLE
    assert "cannot connect" in caplog.text


async def test_koha_timeout_is_unavailable(
    koha: KohaServer, caplog: pytest.LogCaptureFixture
) -> None:
    koha.delay = 2.0
    directory = KohaDirectory(koha.base_url, BASIC, timeout=0.2)
    result = await _verify(directory, {"member_number": "KOHA-001", "phone": "081234567890"})
    assert result.outcome is Outcome.UNAVAILABLE
    assert "no answer within 0.2s" in caplog.text


@pytest.mark.parametrize("status", [500, 503, 403])
async def test_koha_errors_are_unavailable(koha: KohaServer, status: int) -> None:
    koha.fail_status = status
    directory = KohaDirectory(koha.base_url, OAUTH)
    result = await _verify(directory, {"member_number": "KOHA-001", "phone": "081234567890"})
    assert result.outcome is Outcome.UNAVAILABLE


# a generic JSON service

API_KEY = "Bearer api-key-7f3e9c"
MEMBERS: dict[str, Any] = {
    "A/1 2": {
        "data": {
            "member": {
                "full_name": "  Rina   Kurnia ",
                "type": "Mahasiswa",
                "valid_until": "2027-06-30T00:00:00Z",
                "birth": "17/08/2001",
                "contacts": [{"number": "+62 811 2222 3333"}, {"number": "0274 555 123"}],
            }
        }
    },
    "B-2": {"data": {"member": {"full_name": "Joko", "valid_until": "2020-01-01"}}},
    "NO-NAME": {"data": {"member": {"type": "Umum"}}},
}


@pytest.fixture
async def json_service() -> AsyncIterator[dict[str, Any]]:
    seen: dict[str, Any] = {"paths": []}

    async def member(request: web.Request) -> web.Response:
        seen["paths"].append(request.raw_path)
        if request.headers.get("Authorization") != API_KEY:
            return web.json_response({"error": "unauthorised"}, status=401)
        number = request.match_info["number"]
        if number == "HTML":
            return web.Response(text="<html>login</html>", content_type="text/html")
        if number == "BIG":
            return web.json_response({"data": {"member": {"full_name": "x" * 2_000_000}}})
        if number == "SLOW":
            await asyncio.sleep(2)
        if number not in MEMBERS:
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(MEMBERS[number])

    app = web.Application()
    app.router.add_get("/api/members/{number}", member)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    seen["url"] = str(server.make_url("/api/members/{member_number}")).replace(
        "%7Bmember_number%7D", "{member_number}"
    )
    try:
        yield seen
    finally:
        await server.close()


MAPPING = FieldMapping(
    name="data.member.full_name",
    member_type="data.member.type",
    expires="data.member.valid_until",
    date_of_birth="data.member.birth",
    phone=("data.member.contacts.0.number", "data.member.contacts.1.number"),
)


def _http(service: dict[str, Any], **kwargs: Any) -> HttpJsonDirectory:
    return HttpJsonDirectory(
        service["url"] + "?key=query-secret-1",
        MAPPING,
        headers={"Authorization": API_KEY},
        **kwargs,
    )


async def test_http_json_verified_with_mapping(json_service: dict[str, Any]) -> None:
    directory = _http(json_service)
    result = await _verify(directory, {"member_number": "A/1 2", "date_of_birth": "2001-08-17"})
    assert result.outcome is Outcome.VERIFIED
    assert result.record is not None
    assert (result.record.name, result.record.member_type, result.record.expires) == (
        "Rina Kurnia",
        "Mahasiswa",
        date(2027, 6, 30),
    )
    assert json_service["paths"] == ["/api/members/A%2F1%202?key=query-secret-1"]
    assert "api-key" not in repr(directory) and "query-secret" not in repr(directory)


async def test_http_json_outcomes(json_service: dict[str, Any]) -> None:
    directory = _http(json_service)
    try:
        second_phone = await directory.verify(
            {"member_number": "A/1 2", "phone": "0274555123"}, TODAY
        )
        assert second_phone.outcome is Outcome.VERIFIED
        wrong = await directory.verify({"member_number": "A/1 2", "phone": "0274555124"}, TODAY)
        assert wrong.outcome is Outcome.MISMATCH
        missing = await directory.verify({"member_number": "C-3", "phone": "0274555123"}, TODAY)
        assert missing.outcome is Outcome.NOT_FOUND
    finally:
        await directory.close()


async def test_http_json_expired_needs_the_secret(json_service: dict[str, Any]) -> None:
    # Joko's record holds no date of birth: his expiry is never revealed.
    directory = _http(json_service)
    result = await _verify(directory, {"member_number": "B-2", "date_of_birth": "1990-01-01"})
    assert result.outcome is Outcome.MISMATCH and result.record is None


@pytest.mark.parametrize("number", ["HTML", "NO-NAME", "BIG"])
async def test_http_json_bad_answers_are_unavailable(
    json_service: dict[str, Any], number: str, caplog: pytest.LogCaptureFixture
) -> None:
    directory = _http(json_service)
    result = await _verify(directory, {"member_number": number, "date_of_birth": "1990-01-01"})
    assert result.outcome is Outcome.UNAVAILABLE
    assert "query-secret" not in caplog.text and "api-key" not in caplog.text


async def test_http_json_wrong_key_and_timeout(json_service: dict[str, Any]) -> None:
    unauthorised = HttpJsonDirectory(json_service["url"], MAPPING, headers={"Authorization": "x"})
    fields = {"member_number": "A/1 2", "date_of_birth": "2001-08-17"}
    assert (await _verify(unauthorised, fields)).outcome is Outcome.UNAVAILABLE
    slow = _http(json_service, timeout=0.2)
    assert (await _verify(slow, {**fields, "member_number": "SLOW"})).outcome is Outcome.UNAVAILABLE


# the verification: config section


def koha_section(**auth: Any) -> dict[str, Any]:
    return {
        "fields": ["member_number", "phone"],
        "directory": {
            "type": "koha",
            "base_url": "https://staff.koha.example.ac.id/",
            "auth": auth or {"type": "basic", "username": "api", "password": "basic-pass-9"},
            "timeout_seconds": 3,
            "category_names": {"MHS": "Mahasiswa"},
        },
    }


def http_section(**changes: Any) -> dict[str, Any]:
    directory: dict[str, Any] = {
        "type": "http",
        "url": "https://sso.example.ac.id/members/{member_number}?key=url-key-123",
        "headers": {"Authorization": "Bearer header-secret-456"},
        "mapping": {"name": "data.name", "date_of_birth": "data.dob", "phone": ["data.hp"]},
    }
    directory.update(changes)
    return {"directory": directory}


def test_defaults_use_the_demo_list(tmp_path: Path) -> None:
    cfg = parse_directory(None, tmp_path)
    assert cfg.fields == ("member_number", "date_of_birth")
    assert (cfg.auto_after_claim, cfg.max_attempts_per_session, cfg.max_attempts_per_client) == (
        False,
        3,
        10,
    )
    assert isinstance(cfg.directory, LocalDirectoryConfig) and cfg.directory.is_demo
    assert cfg.rules.max_attempts_per_client == 10
    assert isinstance(build_directory(cfg), LocalDirectory)


def test_local_path_is_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "members.yaml").write_text(
        "members:\n  - {member_number: X-1, name: Ani, phone: '0812 0000 1111'}\n"
    )
    cfg = parse_directory(
        {
            "fields": ["phone", "member_number"],
            "auto_after_claim": True,
            "directory": {"path": "members.yaml"},
        },
        tmp_path,
    )
    assert cfg.fields == ("member_number", "phone")
    assert cfg.auto_after_claim is True
    assert cfg.directory == LocalDirectoryConfig(tmp_path / "members.yaml")
    directory = build_directory(cfg)
    assert isinstance(directory, LocalDirectory) and len(directory) == 1


def test_bad_member_file_names_the_config_key(tmp_path: Path) -> None:
    (tmp_path / "members.yaml").write_text("members:\n  - {member_number: X-1}\n")
    cfg = parse_directory({"directory": {"type": "local", "path": "members.yaml"}}, tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_directory(cfg)
    assert caught.value.path == "verification.directory.path"
    assert "members[0].name" in caught.value.problem
    cfg = parse_directory({"directory": {"path": "nowhere.yaml"}}, tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        build_directory(cfg)


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ({"type": "basic", "username": "api", "password": "basic-pass-9"}, KohaBasicAuth),
        ({"type": "oauth", "client_id": "desk", "client_secret": "oauth-secret-7"}, KohaOAuth),
    ],
)
def test_koha_section(tmp_path: Path, auth: dict[str, str], expected: type) -> None:
    cfg = parse_directory(koha_section(**auth), tmp_path)
    source = cfg.directory
    assert isinstance(source, KohaDirectoryConfig) and isinstance(source.auth, expected)
    assert source.base_url == "https://staff.koha.example.ac.id"
    assert source.timeout == 3.0 and source.category_names == {"MHS": "Mahasiswa"}
    for shown in (repr(cfg), str(cfg), repr(build_directory(cfg))):
        assert "basic-pass-9" not in shown and "oauth-secret-7" not in shown


def test_http_section_hides_its_secrets(tmp_path: Path) -> None:
    cfg = parse_directory(http_section(), tmp_path)
    assert isinstance(cfg.directory, HttpDirectoryConfig)
    assert cfg.directory.mapping.phone == ("data.hp",)
    directory = build_directory(cfg)
    assert isinstance(directory, HttpJsonDirectory)
    for shown in (repr(cfg), repr(directory)):
        assert "url-key-123" not in shown and "header-secret-456" not in shown


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"fields": "member_number"}, "verification.fields", "list"),
        ({"fields": ["member_number"]}, "verification.fields", "date_of_birth, phone"),
        ({"fields": ["phone"]}, "verification.fields", "member_number"),
        ({"fields": ["member_number", "email"]}, "verification.fields[1]", "one of"),
        ({"fields": ["member_number", "phone", "phone"]}, "verification.fields[2]", "twice"),
        ({"auto_after_claim": "yes"}, "verification.auto_after_claim", "true or false"),
        ({"max_attempts_per_session": 0}, "verification.max_attempts_per_session", "between"),
        ({"max_attempts_per_client": "ten"}, "verification.max_attempts_per_client", "integer"),
        ({"tries": 3}, "verification.tries", "not a known setting"),
        ({"directory": {"type": "ldap"}}, "verification.directory.type", "local, koha or http"),
        ({"directory": {"path": 3}}, "verification.directory.path", "path"),
        ({"directory": {"type": "local", "url": "x"}}, "verification.directory.url", "not a known"),
        ("nope", "verification", "mapping"),
    ],
)
def test_section_errors_name_the_key(tmp_path: Path, data: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_directory(data, tmp_path)
    assert caught.value.path == path
    assert words in caught.value.problem


def _koha_with(change: dict[str, Any], auth_change: dict[str, Any] | None = None) -> Any:
    data = koha_section()
    data["directory"].update(change)
    if auth_change is not None:
        data["directory"]["auth"] = {**data["directory"]["auth"], **auth_change}
    return data


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        (_koha_with({"base_url": None}), "verification.directory.base_url", "required"),
        (_koha_with({"base_url": "ftp://koha"}), "verification.directory.base_url", "http"),
        (_koha_with({"base_url": "https://api:pw-in-url@koha.example"}),
         "verification.directory.base_url", "auth settings"),
        (_koha_with({"auth": None}), "verification.directory.auth.type", "required"),
        (_koha_with({}, {"type": "token"}), "verification.directory.auth.type", "basic or oauth"),
        (_koha_with({}, {"password": None}), "verification.directory.auth.password", "required"),
        (_koha_with({}, {"password": "CHANGE_ME"}), "verification.directory.auth.password",
         "placeholder"),
        (_koha_with({}, {"client_id": "x"}), "verification.directory.auth.client_id",
         "not a known"),
        (_koha_with({}, {"type": "oauth", "username": None, "password": None, "client_id": "d"}),
         "verification.directory.auth.client_secret", "required"),
        (_koha_with({"timeout_seconds": 0}), "verification.directory.timeout_seconds", "seconds"),
        (_koha_with({"category_names": ["MHS"]}), "verification.directory.category_names",
         "map"),
        (http_section(url=None), "verification.directory.url", "required"),
        (http_section(url="https://sso.example/members?key=url-key-123"),
         "verification.directory.url", "{member_number}"),
        (http_section(headers={"Authorization": "Bearer CHANGE_ME"}),
         "verification.directory.headers.Authorization", "placeholder"),
        (http_section(headers={"Bad Name": "x"}), "verification.directory.headers.Bad Name",
         "header name"),
        (http_section(mapping={"date_of_birth": "data.dob"}),
         "verification.directory.mapping.name", "required"),
        (http_section(mapping={"name": "data.name"}),
         "verification.directory.mapping.date_of_birth", "verification.fields"),
        (http_section(mapping={"name": "data..name", "date_of_birth": "d"}),
         "verification.directory.mapping.name", "dotted path"),
        (http_section(mapping={"name": "n", "date_of_birth": "d", "phone": ["a", 3]}),
         "verification.directory.mapping.phone[1]", "dotted path"),
        (http_section(mapping={"name": "n", "date_of_birth": "d", "email": "e"}),
         "verification.directory.mapping.email", "not a known"),
        (http_section(method="POST"), "verification.directory.method", "not a known"),
    ],
)  # fmt: skip
def test_directory_errors_name_the_key(tmp_path: Path, data: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_directory(data, tmp_path)
    assert caught.value.path == path
    assert words in caught.value.problem
    for secret in ("pw-in-url", "url-key-123", "header-secret-456", "basic-pass-9"):
        assert secret not in str(caught.value)


def test_phone_field_needs_a_phone_mapping(tmp_path: Path) -> None:
    data = http_section(mapping={"name": "data.name"})
    data["fields"] = ["member_number", "phone"]
    with pytest.raises(ConfigError) as caught:
        parse_directory(data, tmp_path)
    assert caught.value.path == "verification.directory.mapping.phone"

"""The OpenAPI document matches the code, and the internet-facing visitor API survives fuzzing.

No homeserver here: the widget app runs in-process (aiohttp's TestServer) on a Desk over a
temporary SQLite store. Hypothesis throws arbitrary JSON, bytes, headers and query strings at
every visitor operation and at the WebSocket, and checks what the document promises: no 500
(the only 5xx is the documented 503 of a desk without email), every status is one the document
lists for that operation, every error is the documented JSON shape with a documented code,
every response validates against its documented schema (strictly: no undocumented fields), and
a refused request changes nothing in the store.

Inputs that hit known server bugs are kept out of the fuzz strategies (64-bit integers only,
no lone surrogates, no undecodable header bytes, no Content-Encoding); each such bug has its own
strict xfail test at the end of this file, so fixing one turns that test into a failure that
asks for the marker to go.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from directories.local import LocalDirectory
from refdesk.config import Config, parse_config
from refdesk.embedded import embedded_config_data
from refdesk.wiring import create_widget_app, desk_rules
from rooms import session as session_rules
from rooms.desk import Desk, utcnow
from rooms.hours import ServiceHours
from rooms.knowledge import KnowledgeBase
from rooms.offline import RESUME_PARAM
from rooms.store import SqliteDatabase
from rooms.verification import VerificationRules, Verifier
from tests.helpers import WidgetTestServer
from widget_server import app as widget_app
from widget_server.api import messages as messages_api
from widget_server.api import parse_json
from widget_server.api import ws as ws_api
from widget_server.errors import ApiError

DOC: dict[str, Any] = json.loads(widget_app.OPENAPI.read_text(encoding="utf-8"))
OPERATION_IDS = {
    "getWidgetConfig",
    "createSession",
    "getSession",
    "sendMessage",
    "sendAttachment",
    "getAttachment",
    "editMessage",
    "deleteMessage",
    "listMessages",
    "endSession",
    "eraseSession",
    "setLanguage",
    "setTyping",
    "markRead",
    "giveFeedback",
    "getTranscript",
    "emailTranscript",
    "searchFaq",
    "submitVerification",
    "resumeSession",
}
ERROR_CODES: set[str] = set(DOC["components"]["schemas"]["ErrorCode"]["enum"])
WS_ERROR_CODES = {"bad_frame", "unknown_frame", "validation_failed", "message_too_long"}
WS_ERROR_CODES |= {"session_closed", "missing_token", "invalid_token", "unknown_session"}
HELLO_CLOSE = {"bad_frame": 4400, "missing_token": 4401, "invalid_token": 4403}
HELLO_CLOSE["unknown_session"] = 4404
ALLOWED_ORIGIN = "https://library.example"
INT64 = 2**63 - 1


# --- the document, as data and as schemas ----------------------------------------------------


def _operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId -> (path, method, operation)."""
    found = {}
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                found[operation["operationId"]] = (path, method, operation)
    return found


OPERATIONS = _operations()
BASE = "urn:refdesk:openapi"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _strict(document: dict[str, Any]) -> dict[str, Any]:
    """A copy where every typed object schema refuses undocumented properties.

    The published document stays open (clients must ignore new fields); the test is strict so
    that a field added in code but not in the document fails here.
    """
    strict = copy.deepcopy(document)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            types = node.get("type")
            is_object = types == "object" or (isinstance(types, list) and "object" in types)
            if is_object and "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(strict["components"]["schemas"])
    return strict


REGISTRY: Registry = Registry().with_resource(
    BASE, Resource.from_contents(_strict(DOC), default_specification=DRAFT202012)
)


def validator(pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` (a JSON pointer into the document)."""
    return Draft202012Validator(
        {"$ref": f"{BASE}#{pointer}"},
        registry=REGISTRY,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def _resolve(pointer: str) -> tuple[str, Any]:
    """Follow local ``$ref``s (responses are referenced by $ref) to the real object."""
    node: Any = DOC
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and "$ref" in node:
        return _resolve(node["$ref"].removeprefix("#"))
    return pointer, node


def documented_response(operation_id: str, status: int) -> tuple[str, dict[str, Any]]:
    """(pointer, response object) for ``status``; fails if the document does not list it."""
    path, method, operation = OPERATIONS[operation_id]
    assert str(status) in operation["responses"], (
        f"{operation_id} answered {status}, which the document does not list"
    )
    return _resolve(f"/paths/{_escape(path)}/{method}/responses/{status}")


def schema(name: str) -> Draft202012Validator:
    return validator(f"/components/schemas/{name}")


# --- the document itself ---------------------------------------------------------------------


def test_document_is_valid_openapi() -> None:
    validate_openapi(DOC)
    assert set(OPERATIONS) == OPERATION_IDS
    bearer = DOC["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert DOC["security"] == [{"bearerAuth": []}]
    for public in ("getWidgetConfig", "createSession"):
        assert OPERATIONS[public][2]["security"] == []
    assert "/api/sessions/{session_id}/ws" in DOC["info"]["description"]
    assert "docs/API.md" in DOC["info"]["description"]
    assert ERROR_CODES >= {
        "bad_json",
        "bad_parameter",
        "missing_token",
        "invalid_token",
        "unknown_session",
        "session_closed",
        "message_too_long",
        "request_too_large",
        "validation_failed",
        "internal_error",
    }


def test_every_error_response_is_an_error_and_every_example_validates() -> None:
    for operation_id, (_, _, operation) in OPERATIONS.items():
        assert "500" in operation["responses"], operation_id
        for status in operation["responses"]:
            pointer, response = _resolve(
                f"/paths/{_escape(OPERATIONS[operation_id][0])}/{OPERATIONS[operation_id][1]}"
                f"/responses/{status}"
            )
            media = response.get("content", {}).get("application/json")
            if int(status) >= 400:
                assert media is not None, (operation_id, status)
                assert "#/components/schemas/Error" in json.dumps(media["schema"])
            if media and "example" in media:
                validator(f"{pointer}/content/application~1json/schema").validate(media["example"])
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body and "example" in body:
            schema(body["schema"]["$ref"].rsplit("/", 1)[1]).validate(body["example"])
    for name, component in DOC["components"]["schemas"].items():
        if "example" in component and isinstance(component["example"], dict):
            schema(name).validate(component["example"])


def test_limits_match_the_code() -> None:
    params = DOC["components"]["parameters"]
    assert params["Wait"]["schema"]["maximum"] == messages_api.MAX_WAIT
    assert (params["Wait"]["schema"]["minimum"], params["Wait"]["schema"]["default"]) == (0, 0)
    assert (params["Limit"]["schema"]["minimum"], params["Limit"]["schema"]["maximum"]) == (1, 500)
    assert params["After"]["schema"]["maximum"] == 2**62
    form = DOC["components"]["schemas"]["CreateSessionRequest"]["properties"]
    assert form["name"]["maxLength"] == session_rules.NAME_MAX
    assert form["email"]["maxLength"] == session_rules.EMAIL_MAX
    assert form["member_number"]["maxLength"] == session_rules.MEMBER_NUMBER_MAX
    assert form["page_url"]["maxLength"] == session_rules.PAGE_URL_MAX
    send = DOC["components"]["schemas"]["SendMessageRequest"]["properties"]
    assert send["client_id"]["maxLength"] == session_rules.CLIENT_ID_MAX
    assert str(widget_app.MAX_BODY) in DOC["info"]["description"]
    assert ws_api.CLOSE_CODES == {401: 4401, 403: 4403, 404: 4404}


def _test_config(root: Path) -> Config:
    data = embedded_config_data(
        widget_port=8080,
        homeserver_port=8008,
        appservice_port=29330,
        librarians=["@sari:localhost"],
        database=str(root / "refdesk.db"),
    )
    data["widget"]["allowed_origins"] = [ALLOWED_ORIGIN]
    data["widget"]["new_sessions_per_minute"] = 100_000  # the fuzz opens many chats
    # Service hours, so the widget config carries them (closed on Sundays: then chats are
    # offline messages, which the API serves the same way).
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    week: dict[str, Any] = {day: ["00:00-23:59"] for day in days} | {"sunday": "closed"}
    data["hours"] = {"weekly": week, "holidays": False}
    return parse_config(data)


MEMBERS = {
    "members": [
        {
            "member_number": "A-10234",
            "name": "Budi Santoso",
            "expires": "2099-06-30",
            "date_of_birth": "1990-05-01",
            "phone": "0812-3456-7890",
        }
    ]
}


def _desk(config: Config, db: SqliteDatabase) -> Desk:
    """The desk as refdesk.service wires it, minus the homeserver and the mail worker."""
    return Desk(
        db,
        desk_rules(config),
        knowledge=KnowledgeBase(list(config.desk.knowledge)),
        verifier=Verifier(LocalDirectory.from_data(MEMBERS), VerificationRules(), utcnow),
        hours=ServiceHours(config.hours.schedule) if config.hours is not None else None,
    )


def test_every_api_route_is_documented(tmp_path: Path) -> None:
    """Walk the real router: no route without a document entry, no entry without a route."""
    config = _test_config(tmp_path)
    app = create_widget_app(config, _desk(config, SqliteDatabase(tmp_path / "unused.db")))
    skip = {"/api/sessions/{session_id}/ws", "/api/presence", "/api/openapi.json"}
    routed: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if not path.startswith("/api/") or path in skip:
            continue
        if route.method == "HEAD":  # aiohttp adds HEAD to every GET
            continue
        routed.add((path, route.method.lower()))
        assert path in DOC["paths"], f"{route.method} {path} is not in openapi.json"
        assert route.method.lower() in DOC["paths"][path], f"{route.method} {path} undocumented"
    documented = {(path, method) for path, method, _ in OPERATIONS.values()}
    assert documented == routed
    assert {path for path, _ in routed} | skip >= set(DOC["paths"])


# --- the app in-process -----------------------------------------------------------------------


@dataclass
class Visit:
    session_id: str
    token: str


class Api:
    """The app under test, its store, and three sessions: two open, one closed."""

    def __init__(
        self, client: TestClient[web.Request, web.Application], db: SqliteDatabase, config: Config
    ) -> None:
        self.client = client
        self.db = db
        self.config = config
        self.open = self.closed = self.other = self.returning = Visit("", "")
        self.link = ""  # a valid resume link for ``returning``

    def __repr__(self) -> str:  # keeps Hypothesis' falsifying examples short
        return "api"

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table: the whole store, to compare before and after. Not SQLite's
        own ``sqlite_sequence``: a retried message is answered by the insert that finds it there
        (``ON CONFLICT DO NOTHING``), which uses up an id as PostgreSQL's sequences do; ids are
        never reused, gaps are allowed."""
        tables = await self.db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name != 'sqlite_sequence' ORDER BY name"
        )
        return {
            row[0]: [tuple(r) for r in await self.db.fetchall(f"SELECT * FROM {row[0]}")]
            for row in tables
        }

    async def start(self, name: str) -> Visit:
        form = {"name": name, "email": "budi@example.org", "topic": "literature"}
        resp = await self.client.post("/api/sessions", json=form)
        assert resp.status == 201, await resp.text()
        data = await resp.json()
        return Visit(data["session"]["id"], data["token"])

    def auth(self, headers: dict[str, str], token: str) -> dict[str, str]:
        return {**headers, "Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    root = tmp_path_factory.mktemp("openapi")
    config = _test_config(root)
    db = SqliteDatabase(root / "refdesk.db")
    await db.open()
    desk = _desk(config, db)
    client: TestClient[web.Request, web.Application] = TestClient(
        WidgetTestServer(create_widget_app(config, desk))
    )
    await client.start_server()
    try:
        harness = Api(client, db, config)
        harness.open = await harness.start("Budi")
        harness.closed = await harness.start("Siti")
        harness.other = await harness.start("Agus")
        harness.returning = await harness.start("Wati")
        url, _ = await desk.resume_link(await desk.get_session(harness.returning.session_id))
        harness.link = parse_qs(urlsplit(url).query)[RESUME_PARAM][0]
        for visit in (harness.open, harness.closed):
            resp = await client.post(
                f"/api/sessions/{visit.session_id}/messages",
                json={"body": "first message", "client_id": "c1"},
                headers=harness.auth({}, visit.token),
            )
            assert resp.status == 201
        # A librarian asked the open visitor to confirm membership; the other one was not asked.
        await desk.request_verification(await desk.get_session(harness.open.session_id), None)
        resp = await client.post(
            f"/api/sessions/{harness.closed.session_id}/end",
            headers=harness.auth({}, harness.closed.token),
        )
        assert resp.status == 200
        yield harness
    finally:
        await client.close()
        await db.close()


async def check(api: Api, operation_id: str, resp: Any) -> tuple[int, Any]:
    """What every answer must be, whatever the input: documented status, shape and schema."""
    raw = await resp.read()
    status = resp.status
    if currently_in_test_context():
        event(f"{operation_id} {status}")  # see --hypothesis-show-statistics
    pointer, response = documented_response(operation_id, status)
    if status == 500:
        pytest.fail(f"{operation_id} crashed: {status} {raw[:300]!r}")
    assert status < 500 or status == 503, f"{operation_id}: {status}"  # 503: documented
    content = response.get("content", {})
    if not content:
        assert raw == b"", (operation_id, status, raw[:200])
        return status, None
    assert resp.content_type in content, (operation_id, status, resp.content_type, raw[:200])
    if resp.content_type != "application/json":
        return status, raw.decode(resp.charset or "utf-8")
    body = json.loads(raw)
    if status >= 400:
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str) and body["error"] in ERROR_CODES, body
        assert isinstance(body.get("message"), str), body
    found = validator(f"{pointer}/content/application~1json/schema")
    errors = sorted(found.iter_errors(body), key=str)
    assert not errors, f"{operation_id} {status}: {errors[0].message} in {body}"
    return status, body


# --- strategies -------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=INT64)
    | st.floats()
    | st.text(max_size=30)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
NASTY_BODIES = st.sampled_from(
    [
        b"",
        b" ",
        b"{",
        b"null",
        b"[]",
        b'"text"',
        b"{}",
        b"\xef\xbb\xbf{}",
        b"\xff\xfe\x00",
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b"{" + b" " * 70_000 + b"}",
        json.dumps({"body": "x" * 70_000, "client_id": "big"}).encode(),
    ]
)
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("\téü漢ÿ"),
    max_size=40,
)
ODD_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Origin",
            "User-Agent",
            "Accept",
            "Accept-Language",
            "Cookie",
            "Referer",
            "X-Forwarded-For",
            "X-Requested-With",
            "Content-Language",
        ]
    )
    | st.from_regex(r"\AX-[A-Za-z0-9-]{1,20}\Z"),
    HEADER_TEXT,
    max_size=3,
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Like one_of, with the weights given (one_of favours some branches on its own)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(range(len(pool))).flatmap(lambda index: pool[index])


VALID_AUTH = ("valid", "lowercase-scheme", "padded")
# Half the requests carry the right token, so the checks behind the token get fuzzed too.
AUTH = weighted(
    (4, st.sampled_from(VALID_AUTH)),
    (2, st.sampled_from(["none", "other", "closed", "basic", "bare", "scheme"])),
    (2, st.tuples(st.sampled_from(["raw", "bearer"]), HEADER_TEXT)),
)
SESSION = weighted(
    (3, st.sampled_from(["open", "closed", "other"])),
    (1, st.text(min_size=1, max_size=24).filter(lambda s: s not in {".", ".."})),
)


def _encoded(body: Any, encoding: str) -> bytes:
    return json.dumps(body).encode(encoding)


def json_bodies(objects: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies built from ``objects``, plus arbitrary JSON, random bytes and nasty cases."""
    encodings = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32"])
    return weighted(
        (6, st.builds(_encoded, objects, encodings)),
        (2, st.builds(_encoded, JSON, encodings)),
        (1, st.binary(max_size=200)),
        (1, NASTY_BODIES),
    )


TOPICS = st.sampled_from(["literature", "membership", "eresources", "complaint", "other"])
NONBLANK = st.text(min_size=1, max_size=80).filter(str.strip)
VALID_FORMS = st.fixed_dictionaries(
    {"name": NONBLANK, "email": st.emails(), "topic": TOPICS},
    optional={
        "member_number": st.none() | st.text(max_size=40),
        "language": st.sampled_from(["id", "en", "", None]),
        "page_url": st.none() | st.text(max_size=100),
        "user_agent": JSON,
    },
)
ODD_FORMS = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=90) | JSON,
        "email": st.emails() | st.text(max_size=30) | JSON,
        "topic": TOPICS | st.text(max_size=10) | JSON,
        "member_number": st.text(max_size=45) | JSON,
        "language": st.sampled_from(["id", "en", "", None, "fr"]) | JSON,
        "page_url": st.text(max_size=40) | st.just("https://x.example/" + "p" * 2000) | JSON,
        "user_agent": JSON,
    },
).flatmap(
    lambda form: (
        st.dictionaries(st.text(max_size=10), JSON, max_size=2).map(lambda extra: {**extra, **form})
        | st.just(form)
    )
)
FORMS = weighted((1, VALID_FORMS), (1, ODD_FORMS))
# Fresh ids come from uuid4 at draw time: Hypothesis would repeat its favourite UUIDs, and a
# repeated client_id is a (documented) retry, not a new message.
CLIENT_IDS = weighted(
    (1, st.sampled_from(["c1", "c2", "c3"])), (2, st.builds(lambda: str(uuid.uuid4())))
)
MESSAGE_BODIES = weighted(
    (4, st.text(min_size=1, max_size=200).filter(str.strip)),
    (1, st.sampled_from(["x" * 4001, " x" * 2001, "y" * 4000, " \n z \t"])),
)
MESSAGES = weighted(
    (
        2,
        st.fixed_dictionaries({"body": MESSAGE_BODIES, "client_id": CLIENT_IDS}),
    ),
    (
        1,
        st.fixed_dictionaries(
            {},
            optional={
                "body": st.text(max_size=60)
                | st.sampled_from(["x" * 4001, " " * 9, " x" * 2000])
                | JSON,
                "client_id": CLIENT_IDS | st.text(max_size=70) | JSON,
                "extra": JSON,
            },
        ),
    ),
)


def _would_wait(value: str) -> bool:
    """True when the server would read ``value`` as a wait of 1..30 seconds."""
    for candidate in (value, value.replace("+", " ")):
        try:
            if 1 <= int(candidate) <= messages_api.MAX_WAIT:
                return True
        except ValueError:
            pass
    return False


def _fits(pairs: list[tuple[str, str]]) -> bool:
    """The HTTP layer (not the app) answers plain-text 400 to request lines over 8190 bytes."""
    return sum(len(quote(k)) + len(quote(v)) + 2 for k, v in pairs) < 7000


PARAM_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=600).map(str),
    st.text(max_size=12),
    st.sampled_from(
        ["", "0", " 7", "1e3", "0x10", "٣", "-0", str(2**62), str(2**62 + 1), "9" * 4400]
    ),
)
QUERIES = st.lists(
    st.tuples(
        st.sampled_from(["after", "wait", "limit", "AFTER"]) | st.text(max_size=5), PARAM_VALUES
    ),
    max_size=4,
).filter(lambda pairs: not any(k == "wait" and _would_wait(v) for k, v in pairs) and _fits(pairs))

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _visit(api: Api, choice: str) -> Visit | None:
    return {"open": api.open, "closed": api.closed, "other": api.other}.get(choice)


def request_target(api: Api, session: str, suffix: str = "") -> tuple[str, Visit | None]:
    visit = _visit(api, session)
    session_id = visit.session_id if visit else session
    return f"/api/sessions/{quote(session_id, safe='')}{suffix}", visit


def auth_headers(
    api: Api, auth: str | tuple[str, str], visit: Visit | None, headers: dict[str, str]
) -> dict[str, str]:
    """The odd headers plus an Authorization header of the drawn kind (or none)."""
    token = visit.token if visit else api.open.token
    value: str | None
    if isinstance(auth, tuple):
        value = auth[1] if auth[0] == "raw" else f"Bearer {auth[1]}"
    else:
        wrong_other = api.other.token if visit is not api.other else api.open.token
        wrong_closed = api.closed.token if visit is not api.closed else api.open.token
        value = {
            "valid": f"Bearer {token}",
            "lowercase-scheme": f"bearer {token}",
            "padded": f"Bearer   {token}  ",
            "other": f"Bearer {wrong_other}",
            "closed": f"Bearer {wrong_closed}",
            "basic": "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
            "bare": token,
            "scheme": "Bearer",
        }.get(auth)
    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    if value is not None:
        headers["Authorization"] = value
    return headers


# --- HTTP fuzz --------------------------------------------------------------------------------


@FUZZ
@given(body=json_bodies(FORMS), headers=ODD_HEADERS)
async def test_fuzz_create_session(api: Api, body: bytes, headers: dict[str, str]) -> None:
    before = await api.snapshot()
    resp = await api.client.post("/api/sessions", data=body, headers=headers)
    status, data = await check(api, "createSession", resp)
    after = await api.snapshot()
    if status == 201:
        assert len(after["sessions"]) == len(before["sessions"]) + 1
        assert after["messages"][: len(before["messages"])] == before["messages"]
        greeting = after["messages"][len(before["messages"]) :]  # the desk's welcome, if any
        assert all(row[1:3] == (data["session"]["id"], "desk") for row in greeting), greeting
        assert data["session"]["status"] == "new"
        # The new token opens the new session.
        resp = await api.client.get(
            f"/api/sessions/{data['session']['id']}", headers=api.auth({}, data["token"])
        )
        await check(api, "getSession", resp)
        assert resp.status == 200
    else:
        assert after == before


async def send_and_check(
    api: Api, session: str, auth: Any, body: bytes, headers: dict[str, str]
) -> None:
    path, visit = request_target(api, session, "/messages")
    before = await api.snapshot()
    resp = await api.client.post(path, data=body, headers=auth_headers(api, auth, visit, headers))
    status, data = await check(api, "sendMessage", resp)
    after = await api.snapshot()
    if status == 201:
        assert visit is not None and visit is not api.closed and auth in VALID_AUTH
        assert after["messages"][: len(before["messages"])] == before["messages"]
        assert len(after["messages"]) == len(before["messages"]) + 1
        sent = json.loads(body)
        assert data["message"]["body"] == sent["body"].strip()
        assert data["message"]["client_id"] == sent["client_id"]
    else:
        assert after == before
    if status in (200, 201):
        # A retry with the same client_id answers the same message and stores nothing.
        resp = await api.client.post(path, data=body, headers=auth_headers(api, auth, visit, {}))
        status, again = await check(api, "sendMessage", resp)
        assert status == 200 and again["message"] == data["message"]
        assert await api.snapshot() == after


@FUZZ
@given(session=SESSION, auth=AUTH, body=json_bodies(MESSAGES), headers=ODD_HEADERS)
async def test_fuzz_send_message(
    api: Api, session: str, auth: Any, body: bytes, headers: dict[str, str]
) -> None:
    await send_and_check(api, session, auth, body, headers)


@FUZZ
@given(
    session=st.sampled_from(["open", "other", "closed"]),
    body=json_bodies(MESSAGES),
    headers=ODD_HEADERS,
)
async def test_fuzz_send_message_body(
    api: Api, session: str, body: bytes, headers: dict[str, str]
) -> None:
    """The same with the right token every time: the checks behind it get all the examples."""
    await send_and_check(api, session, "valid", body, headers)


# Which message an edit or deletion names: a fresh one of the session's own visitor, one of
# another chat, one the desk wrote (not the visitor's), or any text at all.
MESSAGE_REFS = weighted(
    (4, st.sampled_from(["own", "own", "theirs", "desk"])),
    (1, st.integers(min_value=-(2**64), max_value=2**64).map(str)),
    (1, HEADER_TEXT.filter(lambda t: t not in ("", ".", ".."))),
)
EDITS = weighted((3, st.fixed_dictionaries({"body": MESSAGE_BODIES})), (1, JSON))


@FUZZ
@given(
    session=SESSION,
    auth=AUTH,
    ref=MESSAGE_REFS,
    method=st.sampled_from(["PATCH", "DELETE"]),
    body=json_bodies(EDITS),
    headers=ODD_HEADERS,
)
async def test_fuzz_edit_and_delete(
    api: Api, session: str, auth: Any, ref: str, method: str, body: bytes, headers: dict[str, str]
) -> None:
    """Only the token's own visitor, on a message of their own in their open chat, changes
    anything, and only that message; every other answer is documented and changes nothing."""
    visit = _visit(api, session)
    owner = visit if visit is not None and visit is not api.closed else api.open
    message_id: str = ref
    if ref in ("own", "theirs"):
        writer = owner if ref == "own" else (api.other if owner is api.open else api.open)
        resp = await api.client.post(
            f"/api/sessions/{writer.session_id}/messages",
            json={"body": "to change", "client_id": uuid.uuid4().hex},
            headers=api.auth({}, writer.token),
        )
        message_id = str((await resp.json())["message"]["id"])
    elif ref == "desk":
        row = await api.db.fetchone("SELECT MIN(id) FROM messages WHERE origin = 'desk'")
        message_id = str(row[0] if row and row[0] else 1)
    path, visit = request_target(api, session, f"/messages/{quote(message_id, safe='')}")
    operation = "editMessage" if method == "PATCH" else "deleteMessage"
    named = (
        await api.db.fetchone(
            "SELECT session_id, origin, deleted_at FROM messages WHERE id = :id",
            {"id": int(message_id)},
        )
        if message_id.isascii() and message_id.isdigit() and int(message_id) < 2**62
        else None
    )
    # The visitor's own message, not deleted: the only one a change may be made to.
    changeable = (
        visit is not None
        and named is not None
        and tuple(named) == (visit.session_id, "visitor", None)
    )
    before = await api.snapshot()
    resp = await api.client.request(
        method,
        path,
        data=body if method == "PATCH" else None,
        headers=auth_headers(api, auth, visit, headers),
    )
    status, data = await check(api, operation, resp)
    after = await api.snapshot()
    if status == 200:
        assert changeable and visit is not api.closed and auth in VALID_AUTH
        assert data["message"]["id"] == int(message_id)
        changed = [row for row in after["messages"] if row not in before["messages"]]
        assert [row[0] for row in changed] == [int(message_id)]
        if method == "DELETE":
            assert data["message"]["deleted"] is True and data["message"]["body"] == ""
        else:
            assert data["message"]["body"] == json.loads(body)["body"].strip()
        assert len(after["intents"]) == len(before["intents"]) + 1
    else:
        assert after == before
        if ref == "own" and visit is owner and auth in VALID_AUTH:  # the request's own fault
            assert status in (400, 404, 405, 413, 422) or (
                status == 403 and data["error"] == "origin_not_allowed"
            ), (status, data)


LANGUAGE_CHOICES = weighted(
    (3, st.fixed_dictionaries({"language": st.sampled_from(["id", "en"])})),
    (1, st.fixed_dictionaries({"language": JSON})),
    (1, JSON),
)


@FUZZ
@given(session=SESSION, auth=AUTH, body=json_bodies(LANGUAGE_CHOICES), headers=ODD_HEADERS)
async def test_fuzz_set_language(
    api: Api, session: str, auth: Any, body: bytes, headers: dict[str, str]
) -> None:
    """Only the session's own token changes its language, only to one the desk speaks, and
    nothing else changes; the answer is the session in that language."""
    path, visit = request_target(api, session, "/language")
    before = await api.snapshot()
    resp = await api.client.post(path, data=body, headers=auth_headers(api, auth, visit, headers))
    status, data = await check(api, "setLanguage", resp)
    after = await api.snapshot()
    if status == 200:
        assert visit is not None and auth in VALID_AUTH
        language = json.loads(body)["language"]
        assert data["session"]["visitor"]["language"] == language
        changed = [row for row in after["sessions"] if row not in before["sessions"]]
        assert [row[0] for row in changed] in ([visit.session_id], [])  # [] : it was already
        assert {k: v for k, v in after.items() if k != "sessions"} == {
            k: v for k, v in before.items() if k != "sessions"
        }
    else:
        assert after == before


@FUZZ
@given(session=SESSION, auth=AUTH, query=QUERIES, headers=ODD_HEADERS)
async def test_fuzz_list_messages(
    api: Api, session: str, auth: Any, query: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    path, visit = request_target(api, session, "/messages")
    before = await api.snapshot()
    resp = await api.client.get(path, params=query, headers=auth_headers(api, auth, visit, headers))
    status, data = await check(api, "listMessages", resp)
    assert await api.snapshot() == before
    if status == 200:
        assert visit is not None and auth in VALID_AUTH
        seqs = [m["seq"] for m in data["messages"]]
        assert seqs == sorted(seqs)
        if seqs:
            assert data["cursor"] == seqs[-1]
        assert data["session"]["id"] == visit.session_id


@FUZZ
@given(session=SESSION, auth=AUTH, headers=ODD_HEADERS)
async def test_fuzz_get_session(api: Api, session: str, auth: Any, headers: dict[str, str]) -> None:
    path, visit = request_target(api, session)
    before = await api.snapshot()
    resp = await api.client.get(path, headers=auth_headers(api, auth, visit, headers))
    status, data = await check(api, "getSession", resp)
    assert await api.snapshot() == before
    if status == 200:
        assert visit is not None and data["session"]["id"] == visit.session_id


@FUZZ
@given(session=SESSION, auth=AUTH, body=json_bodies(JSON), headers=ODD_HEADERS)
async def test_fuzz_end_session(
    api: Api, session: str, auth: Any, body: bytes, headers: dict[str, str]
) -> None:
    # The open sessions must stay open for the other tests: only the closed one gets its token.
    assume(not (session in ("open", "other") and auth in VALID_AUTH))
    path, visit = request_target(api, session, "/end")
    before = await api.snapshot()
    resp = await api.client.post(path, data=body, headers=auth_headers(api, auth, visit, headers))
    status, data = await check(api, "endSession", resp)
    assert await api.snapshot() == before  # refused, or ending an ended chat: nothing changes
    if status == 200:
        assert visit is api.closed and data["session"]["state"] == "closed"


@FUZZ
@given(
    operation=st.sampled_from(["setTyping", "markRead"]),
    session=SESSION,
    auth=AUTH,
    body=json_bodies(
        weighted(
            (
                2,
                st.fixed_dictionaries(
                    {"typing": st.booleans(), "up_to": st.integers(min_value=0, max_value=INT64)}
                ),
            ),
            (
                1,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "typing": st.booleans() | JSON,
                        "up_to": st.integers(min_value=-5, max_value=INT64) | JSON,
                    },
                ),
            ),
        )
    ),
    headers=ODD_HEADERS,
)
async def test_fuzz_typing_and_read(
    api: Api, operation: str, session: str, auth: Any, body: bytes, headers: dict[str, str]
) -> None:
    suffix = "/typing" if operation == "setTyping" else "/read"
    path, visit = request_target(api, session, suffix)
    before = await api.snapshot()
    resp = await api.client.post(path, data=body, headers=auth_headers(api, auth, visit, headers))
    status, _ = await check(api, operation, resp)
    assert await api.snapshot() == before  # the visitor's typing and read marks are not stored
    if status == 204:
        assert visit is not None and auth in VALID_AUTH


@FUZZ
@given(
    operation=st.sampled_from(["getWidgetConfig", "searchFaq"]),
    query=st.lists(
        st.tuples(st.sampled_from(["q", "language", "limit"]) | st.text(max_size=5), PARAM_VALUES),
        max_size=4,
    ).filter(_fits),
    headers=ODD_HEADERS,
    auth=AUTH,
)
async def test_fuzz_public_reads(
    api: Api, operation: str, query: list[tuple[str, str]], headers: dict[str, str], auth: Any
) -> None:
    path = "/api/config" if operation == "getWidgetConfig" else "/api/faq"
    before = await api.snapshot()
    resp = await api.client.get(
        path, params=query, headers=auth_headers(api, auth, api.open, headers)
    )
    await check(api, operation, resp)  # a token, good or bad, is ignored here
    assert await api.snapshot() == before


FEEDBACK = weighted(
    (
        1,
        st.fixed_dictionaries(
            {"rating": st.integers(min_value=1, max_value=5)},
            optional={"comment": st.none() | st.text(max_size=100)},
        ),
    ),
    (
        1,
        st.fixed_dictionaries(
            {},
            optional={
                "rating": st.integers(min_value=-1, max_value=7) | JSON,
                "comment": st.text(max_size=40) | st.just("k" * 2001) | JSON,
                "stars": JSON,
            },
        ),
    ),
)


@FUZZ
@given(
    operation=st.sampled_from(["giveFeedback", "getTranscript", "emailTranscript"]),
    session=SESSION,
    auth=AUTH,
    body=json_bodies(FEEDBACK),
    query=st.lists(
        st.tuples(st.sampled_from(["format", "FORMAT"]), PARAM_VALUES), max_size=2
    ).filter(_fits)
    | st.sampled_from([[("format", "html")], [("format", "text")]]),
    headers=ODD_HEADERS,
)
async def test_fuzz_after_the_chat(
    api: Api,
    operation: str,
    session: str,
    auth: Any,
    body: bytes,
    query: list[tuple[str, str]],
    headers: dict[str, str],
) -> None:
    suffix = {
        "giveFeedback": "/feedback",
        "getTranscript": "/transcript",
        "emailTranscript": "/transcript/email",
    }[operation]
    path, visit = request_target(api, session, suffix)
    method = "GET" if operation == "getTranscript" else "POST"
    before = await api.snapshot()
    resp = await api.client.request(
        method,
        path,
        data=body if method == "POST" else None,
        params=query if method == "GET" else None,
        headers=auth_headers(api, auth, visit, headers),
    )
    status, data = await check(api, operation, resp)
    after = await api.snapshot()
    if operation == "giveFeedback" and status == 200:
        assert visit is api.closed and auth in VALID_AUTH
        changed = ("feedback", "intents", "sqlite_sequence")
        assert {k: v for k, v in after.items() if k not in changed} == {
            k: v for k, v in before.items() if k not in changed
        }
        # The room hears of the rating (an intent for the chat network), nothing more.
        assert after["intents"][: len(before["intents"])] == before["intents"]
        told = [row[1:3] for row in after["intents"][len(before["intents"]) :]]
        assert told == [(visit.session_id, "feedback")]
        assert [row[1] for row in after["feedback"] if row[0] == visit.session_id] == [
            data["feedback"]["rating"]
        ]
    else:
        assert after == before
    if operation == "getTranscript" and status == 200:
        assert visit is not None and auth in VALID_AUTH
        assert visit.session_id and "attachment" in resp.headers["Content-Disposition"]


VERIFY_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "member_number": st.sampled_from(["A-10234", "a 10234", "B-1", " A-10234 "])
        | st.text(max_size=50)
        | JSON,
        "date_of_birth": st.sampled_from(["1990-05-01", "01/05/1990", "2999-01-01", "31/02/1990"])
        | st.text(max_size=30)
        | JSON,
        "phone": st.sampled_from(["0812-3456-7890", "+62 812 3456 7890", "12"]) | JSON,
        "pin": JSON,
    },
)
VERIFICATIONS = weighted(
    (
        2,
        st.fixed_dictionaries(
            {
                "fields": st.fixed_dictionaries(
                    {
                        "member_number": st.sampled_from(["A-10234", "a 10234", "B-1"]),
                        "date_of_birth": st.sampled_from(
                            ["1990-05-01", "01/05/1990", "1991-01-01"]
                        ),
                    }
                )
            }
        ),
    ),
    (2, st.fixed_dictionaries({"fields": VERIFY_FIELDS})),
    (1, st.fixed_dictionaries({}, optional={"fields": JSON, "member_number": JSON})),
)


@FUZZ
@given(session=SESSION, auth=AUTH, body=json_bodies(VERIFICATIONS), headers=ODD_HEADERS)
async def test_fuzz_verification(
    api: Api, session: str, auth: Any, body: bytes, headers: dict[str, str]
) -> None:
    path, visit = request_target(api, session, "/verification")
    before = await api.snapshot()
    resp = await api.client.post(path, data=body, headers=auth_headers(api, auth, visit, headers))
    status, _ = await check(api, "submitVerification", resp)
    after = await api.snapshot()
    if status != 200:
        assert after == before
        return
    # Only the outcome is kept: the session's state, an audit row, a desk notice.
    assert visit is api.open and auth in VALID_AUTH
    typed = json.dumps(json.loads(body)["fields"])
    changed = {"sessions", "messages", "verification_audit", "intents", "sqlite_sequence"}
    for table in set(after) - changed:
        assert after[table] == before[table], table
    # The librarians are told the outcome (an intent for the chat network), nothing more.
    assert after["intents"][: len(before["intents"])] == before["intents"]
    told = [row[1:3] for row in after["intents"][len(before["intents"]) :]]
    assert told == [(visit.session_id, "verification_done")]
    assert [r for r in after["sessions"] if r[0] != visit.session_id] == [
        r for r in before["sessions"] if r[0] != visit.session_id
    ]
    new_messages = after["messages"][len(before["messages"]) :]
    assert after["messages"][: len(before["messages"])] == before["messages"]
    assert [row[1:3] for row in new_messages] == [(visit.session_id, "desk")]
    assert len(after["verification_audit"]) == len(before["verification_audit"]) + 1
    fields = json.loads(body)["fields"]
    secrets_typed = [v for k, v in fields.items() if k != "member_number" and isinstance(v, str)]
    stored = repr(after)
    for secret in secrets_typed:  # what the visitor typed is never stored
        assert len(secret) < 4 or secret not in stored, (secret, typed)


ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _links(link: str) -> st.SearchStrategy[str]:
    """Resume-link tokens: the real one, broken versions of it, and junk (ASCII: see the bug)."""
    parts = link.split(".")
    return weighted(
        (1, st.just(link)),
        (2, st.sampled_from(range(len(link))).map(lambda i: link[:i] + link[i + 1 :])),
        (1, st.text(ASCII, max_size=30).map(lambda mac: f"{parts[0]}.{parts[1]}.{mac}")),
        (1, st.integers(min_value=0, max_value=2**40).map(lambda t: f"{parts[0]}.{t}.{parts[2]}")),
        (2, st.text(ASCII, max_size=210)),
    )


@FUZZ
@given(data=st.data(), headers=ODD_HEADERS)
async def test_fuzz_resume_session(api: Api, data: st.DataObject, headers: dict[str, str]) -> None:
    link = data.draw(_links(api.link), label="link")
    body = data.draw(
        json_bodies(weighted((3, st.fixed_dictionaries({"link": st.just(link)})), (1, JSON))),
        label="body",
    )
    before = await api.snapshot()
    resp = await api.client.post("/api/resume", data=body, headers=headers)
    status, answer = await check(api, "resumeSession", resp)
    after = await api.snapshot()
    if status != 200:
        assert after == before
        return
    # Only the returning session's token changed; the new one opens it, the old one does not.
    assert answer["session"]["id"] == api.returning.session_id
    assert {k: v for k, v in after.items() if k != "sessions"} == {
        k: v for k, v in before.items() if k != "sessions"
    }
    assert [r for r in after["sessions"] if r[0] != api.returning.session_id] == [
        r for r in before["sessions"] if r[0] != api.returning.session_id
    ]
    path = f"/api/sessions/{api.returning.session_id}"
    old = await api.client.get(path, headers=api.auth({}, api.returning.token))
    assert old.status == 403
    api.returning.token = answer["token"]
    new = await api.client.get(path, headers=api.auth({}, api.returning.token))
    assert new.status == 200


# --- WebSocket fuzz ---------------------------------------------------------------------------

FRAME_TYPES = st.sampled_from(["ping", "send", "typing", "read", "hello", "pong", "", "SEND"])
FRAMES = st.one_of(
    st.builds(json.dumps, JSON),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"type": FRAME_TYPES | JSON},
            optional={
                "body": st.text(max_size=30) | st.just("y" * 4001) | JSON,
                "client_id": st.sampled_from(["w1", "w2"]) | st.text(max_size=70) | JSON,
                "typing": st.booleans() | JSON,
                "up_to": st.integers(min_value=-5, max_value=INT64) | JSON,
                "token": st.text(max_size=10),
            },
        ),
    ),
)


def expected_reply(frame: str | bytes) -> str | None:
    """The documented reply to one frame after ``ready`` (pushes aside)."""
    if isinstance(frame, bytes):
        return "bad_frame"
    try:
        data = parse_json(frame)  # the server's own rules for JSON from the internet
    except ApiError:
        return "bad_frame"
    if not isinstance(data, dict):
        return "bad_frame"
    kind = data.get("type")
    if kind == "ping":
        return "pong"
    if kind in ("typing", "read"):
        return None
    if kind == "send":
        return "send"
    return "unknown_frame"


async def _receive_json(ws: Any) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.TEXT, (msg.type, msg.data, ws.close_code)
    frame = json.loads(msg.data)
    assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
    return frame


def check_frame(frame: dict[str, Any]) -> None:
    kind = frame["type"]
    if kind in ("ready", "session"):
        errors = list(schema("Session").iter_errors(frame["session"]))
        assert not errors, (errors[0].message, frame)
    elif kind in ("message", "ack"):
        errors = list(schema("Message").iter_errors(frame["message"]))
        assert not errors, (errors[0].message, frame)
    elif kind == "error":
        assert frame["error"] in WS_ERROR_CODES and isinstance(frame["message"], str), frame
    else:
        assert kind == "pong", frame


async def _max_seq(api: Api, visit: Visit) -> int:
    row = await api.db.fetchone(
        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = :s",
        {"s": visit.session_id},
    )
    return int(row[0]) if row else 0


@FUZZ
@given(session=st.sampled_from(["open", "closed"]), frames=st.lists(FRAMES, max_size=6))
async def test_fuzz_websocket_frames(api: Api, session: str, frames: list[str | bytes]) -> None:
    visit = api.open if session == "open" else api.closed
    before = await api.snapshot()
    async with api.client.ws_connect(f"/api/sessions/{visit.session_id}/ws") as ws:
        hello = {"type": "hello", "token": visit.token, "after": await _max_seq(api, visit)}
        await ws.send_json(hello)
        ready = await _receive_json(ws)
        assert ready["type"] == "ready"
        check_frame(ready)
        for sent in frames:
            if isinstance(sent, bytes):
                await ws.send_bytes(sent)
            else:
                await ws.send_str(sent)
        await ws.send_json({"type": "ping"})
        expected = [r for r in map(expected_reply, frames) if r is not None] + ["pong"]
        replies: list[dict[str, Any]] = []
        while len(replies) < len(expected):
            reply = await _receive_json(ws)
            check_frame(reply)
            if reply["type"] not in ("message", "session"):
                replies.append(reply)
        for want, got in zip(expected, replies, strict=True):
            if want == "send":
                assert got["type"] == "ack" or (
                    got["type"] == "error"
                    and got["error"] in {"validation_failed", "message_too_long", "session_closed"}
                ), got
            elif want == "pong":
                assert got["type"] == "pong", got
            else:
                assert (got["type"], got["error"]) == ("error", want), got
        # Still working: a real message is acknowledged on the same connection.
        client_id = uuid.uuid4().hex
        await ws.send_json({"type": "send", "client_id": client_id, "body": "still here"})
        while True:
            last = await _receive_json(ws)
            check_frame(last)
            if last["type"] in ("ack", "error") and last.get("client_id") == client_id:
                break
        assert last["type"] == ("ack" if session == "open" else "error"), last
        assert not ws.closed
    after = await api.snapshot()
    acked = {r["message"]["id"] for r in replies if r["type"] == "ack"}
    if last["type"] == "ack":
        acked.add(last["message"]["id"])
    new_rows = after["messages"][len(before["messages"]) :]
    assert after["messages"][: len(before["messages"])] == before["messages"]
    assert {row[0] for row in new_rows} <= acked
    assert after["sessions"] == before["sessions"]


HELLOS = st.one_of(
    st.builds(json.dumps, JSON),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {"type": st.just("hello") | JSON},
            optional={
                "token": st.sampled_from(["<valid>", "<other>", ""]) | st.text(max_size=20) | JSON,
                "after": st.integers(min_value=-3, max_value=INT64) | JSON,
            },
        ),
    ),
)


def expected_hello(frame: str | bytes, known: bool, valid: str, given: str) -> str | None:
    """The documented outcome of a first frame: None for ready, else the error code."""
    if isinstance(frame, bytes):
        return "bad_frame"
    try:
        data = parse_json(frame)  # the server's own rules for JSON from the internet
    except ApiError:
        return "bad_frame"
    if not isinstance(data, dict) or data.get("type") != "hello":
        return "bad_frame"
    token = data.get("token")
    if not isinstance(token, str) or not token:
        return "missing_token"
    after = data.get("after", 0)
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= 2**62:
        return "bad_frame"
    if not known:
        return "unknown_session"
    return None if given == valid else "invalid_token"


@FUZZ
@given(session=SESSION, hello=HELLOS)
async def test_fuzz_websocket_hello(api: Api, session: str, hello: str | bytes) -> None:
    path, visit = request_target(api, session, "/ws")
    token = visit.token if visit else api.open.token
    other = api.other.token if visit is not api.other else api.open.token
    if isinstance(hello, str):
        hello = hello.replace('"<valid>"', json.dumps(token)).replace(
            '"<other>"', json.dumps(other)
        )
    sent_token = ""
    if isinstance(hello, str):
        try:
            parsed = json.loads(hello)
            if isinstance(parsed, dict) and isinstance(parsed.get("token"), str):
                sent_token = parsed["token"]
        except json.JSONDecodeError:
            pass
    want = expected_hello(hello, visit is not None, token, sent_token)
    before = await api.snapshot()
    if visit is None and ("{" in session or "}" in session):
        # Not a possible session id: no route, so no upgrade (404 not_found, as over HTTP).
        with pytest.raises(WSServerHandshakeError) as refused:
            await api.client.ws_connect(path)
        assert refused.value.status == 404
        return
    async with api.client.ws_connect(path) as ws:
        if isinstance(hello, bytes):
            await ws.send_bytes(hello)
        else:
            await ws.send_str(hello)
        msg = await ws.receive(timeout=5)
        if want is None:
            frame = json.loads(msg.data)
            assert frame["type"] == "ready", frame
            check_frame(frame)
            await ws.send_json({"type": "ping"})
            while (frame := await _receive_json(ws))["type"] != "pong":
                check_frame(frame)
        else:
            assert msg.type == WSMsgType.TEXT, (msg, want)
            frame = json.loads(msg.data)
            assert frame == {"type": "error", "error": want, "message": frame["message"]}
            assert isinstance(frame["message"], str)
            msg = await ws.receive(timeout=5)
            assert msg.type == WSMsgType.CLOSE, msg
            assert ws.close_code == HELLO_CLOSE[want]
    assert await api.snapshot() == before


# --- plain checks of what docs/API.md promises ------------------------------------------------


async def test_openapi_is_served(api: Api) -> None:
    resp = await api.client.get("/api/openapi.json")
    assert resp.status == 200
    assert json.loads(await resp.read()) == DOC


async def test_widget_config(api: Api) -> None:
    resp = await api.client.get("/api/config")
    status, data = await check(api, "getWidgetConfig", resp)
    assert status == 200 and data["max_message_length"] == api.config.widget.max_message_length
    assert resp.headers["Cache-Control"] == "no-cache"
    # This desk has no email: the widget must not offer to email the transcript.
    assert not api.config.email.enabled and data["transcript_email"] is False


async def test_transcript_is_named_by_the_librarys_day(api: Api) -> None:
    """A chat started at 20:15 UTC on 30 November is a 1 December chat in Jakarta (UTC+7): its
    transcript is named so, like the times inside it (issue 14)."""
    row = await api.db.fetchone(
        "SELECT created_at FROM sessions WHERE id = :s", {"s": api.open.session_id}
    )
    assert row is not None
    started = datetime.fromisoformat(str(row[0])).replace(2026, 11, 30, 20, 15)
    await api.db.write(
        lambda tx: tx.execute(
            "UPDATE sessions SET created_at = :at WHERE id = :s",
            {"at": started, "s": api.open.session_id},
        )
    )
    path = f"/api/sessions/{api.open.session_id}/transcript?format=text"
    resp = await api.client.get(path, headers={"Authorization": f"Bearer {api.open.token}"})
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == 'attachment; filename="transcript-2026-12-01.txt"'
    assert "Dimulai: 2026-12-01 03:15" in await resp.text() or "Started: 2026-12-01 03:15" in (
        await resp.text()
    )


async def test_cors(api: Api) -> None:
    preflight = {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}
    resp = await api.client.options("/api/sessions", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await api.client.options("/api/sessions", headers={"Origin": "https://evil.example"})
    assert resp.status == 403 and (await resp.json())["error"] == "origin_not_allowed"
    resp = await api.client.get("/api/config", headers={"Origin": ALLOWED_ORIGIN})
    assert resp.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert resp.headers["Vary"] == "Origin"
    resp = await api.client.get("/api/config", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_unknown_path_and_method(api: Api) -> None:
    resp = await api.client.get("/api/nothing-here")
    assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    resp = await api.client.put("/api/sessions")
    assert (resp.status, (await resp.json())["error"]) == (405, "method_not_allowed")


async def test_erase_session_only_once_ended_and_the_token_stops(api: Api) -> None:
    """DELETE /api/sessions/{id}: the visitor's own erasure (issue 13)."""
    visit = await api.start("Wulan")
    path = f"/api/sessions/{visit.session_id}"
    status, body = await check(
        api, "eraseSession", await api.client.delete(path, headers=api.auth({}, visit.token))
    )
    assert (status, body["error"]) == (409, "session_open")
    await api.client.post(f"{path}/end", headers=api.auth({}, visit.token))
    status, body = await check(
        api, "eraseSession", await api.client.delete(path, headers=api.auth({}, visit.token))
    )
    assert (status, body) == (200, {"erased": True})
    status, body = await check(
        api, "eraseSession", await api.client.delete(path, headers=api.auth({}, visit.token))
    )
    assert status == 403  # erased: the token is gone with everything else
    status, body = await check(
        api, "eraseSession", await api.client.delete(path, headers=api.auth({}, "x" * 43))
    )
    assert status == 403


async def test_end_session_is_idempotent(api: Api) -> None:
    visit = await api.start("Dewi")
    path = f"/api/sessions/{visit.session_id}/end"
    status, first = await check(
        api, "endSession", await api.client.post(path, headers=api.auth({}, visit.token))
    )
    assert status == 200 and first["session"]["state"] == first["session"]["status"] == "closed"
    before = await api.snapshot()
    status, second = await check(
        api, "endSession", await api.client.post(path, headers=api.auth({}, visit.token))
    )
    assert status == 200 and second["session"] == first["session"]
    assert await api.snapshot() == before
    listed = await api.client.get(
        f"/api/sessions/{visit.session_id}/messages", headers=api.auth({}, visit.token)
    )
    _, data = await check(api, "listMessages", listed)
    assert {m["origin"] for m in data["messages"]} == {"desk"}  # greeting, closing notice
    resp = await api.client.post(
        f"/api/sessions/{visit.session_id}/messages",
        json={"body": "too late", "client_id": "late"},
        headers=api.auth({}, visit.token),
    )
    status, error = await check(api, "sendMessage", resp)
    assert (status, error["error"]) == (409, "session_closed")


async def test_websocket_hello_timeout(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_api, "HELLO_TIMEOUT", 0.2)
    async with api.client.ws_connect(f"/api/sessions/{api.open.session_id}/ws") as ws:
        frame = await _receive_json(ws)
        assert frame["error"] == "missing_token"
        assert (await ws.receive(timeout=5)).type == WSMsgType.CLOSE
        assert ws.close_code == 4401


async def test_websocket_reconnect_with_cursor(api: Api) -> None:
    """A reconnect with the last seq as ``after`` gets exactly what it missed."""
    visit = await api.start("Rina")
    path = f"/api/sessions/{visit.session_id}/ws"
    async with api.client.ws_connect(path) as ws:
        await ws.send_json({"type": "hello", "token": visit.token, "after": 0})
        assert (await _receive_json(ws))["type"] == "ready"
        await ws.send_json({"type": "send", "client_id": "r1", "body": "one"})
        seen: list[dict[str, Any]] = []
        while len(seen) < 2:
            frame = await _receive_json(ws)
            if frame["type"] in ("ack", "message") and frame["message"]["origin"] == "visitor":
                seen.append(frame)
    cursor = max(f["message"]["seq"] for f in seen)
    assert {f["message"]["client_id"] for f in seen} == {"r1"}  # dedup by id/client_id
    resp = await api.client.post(
        f"/api/sessions/{visit.session_id}/messages",
        json={"body": "two", "client_id": "r2"},
        headers=api.auth({}, visit.token),
    )
    assert resp.status == 201
    async with api.client.ws_connect(path) as ws:
        await ws.send_json({"type": "hello", "token": visit.token, "after": cursor})
        assert (await _receive_json(ws))["type"] == "ready"
        frame = await _receive_json(ws)
        while frame["type"] == "session":
            frame = await _receive_json(ws)
        assert (frame["type"], frame["message"]["body"]) == ("message", "two")


# --- regressions: inputs that once crashed the server (found by the fuzz above) ----------------


async def _raw_http(api: Api, request: bytes) -> tuple[int, bytes]:
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 5000, id="deeply-nested"),
        pytest.param(b'{"name": ' + b"1" * 5000 + b"}", id="integer-over-4300-digits"),
        pytest.param(
            b'{"name": "\\ud800", "email": "b@example.org", "topic": "literature"}',
            id="lone-surrogate",
        ),
    ],
)
async def test_bug_json_that_python_parses_badly(api: Api, body: bytes) -> None:
    before = await api.snapshot()
    resp = await api.client.post("/api/sessions", data=body)
    status, _ = await check(api, "createSession", resp)
    assert status in (400, 422)
    assert await api.snapshot() == before


@pytest.mark.parametrize(
    ("operation", "suffix", "body"),
    [
        ("sendMessage", "/messages", {"body": "\ud800", "client_id": "s1"}),
        ("sendMessage", "/messages", {"body": "hello", "client_id": "\ud800"}),
        ("giveFeedback", "/feedback", {"rating": 3, "comment": "\ud800"}),
    ],
    ids=["message-body", "client-id", "feedback-comment"],
)
async def test_bug_lone_surrogate_in_a_session(
    api: Api, operation: str, suffix: str, body: dict[str, Any]
) -> None:
    visit = api.closed if operation == "giveFeedback" else api.open
    before = await api.snapshot()
    resp = await api.client.post(
        f"/api/sessions/{visit.session_id}{suffix}",
        data=json.dumps(body).encode(),  # json.dumps writes the surrogate as \ud800
        headers=api.auth({}, visit.token),
    )
    status, _ = await check(api, operation, resp)
    assert status in (400, 422)
    assert await api.snapshot() == before


async def test_bug_non_ascii_resume_link(api: Api) -> None:
    session_id, expires, _ = api.link.split(".")
    resp = await api.client.post("/api/resume", json={"link": f"{session_id}.{expires}.é"})
    status, data = await check(api, "resumeSession", resp)
    assert (status, data["error"]) == (403, "invalid_link")


async def test_bug_undecodable_authorization_header(api: Api) -> None:
    status, _ = await _raw_http(
        api,
        f"GET /api/sessions/{api.open.session_id} HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Authorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n",
    )
    assert status == 403


async def test_bug_undecodable_user_agent(api: Api) -> None:
    form = json.dumps({"name": "Budi", "email": "budi@example.org", "topic": "literature"})
    status, _ = await _raw_http(
        api,
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xfe\r\n"
        + f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n{form}".encode(),
    )
    assert status == 201


async def test_bug_undecodable_content_encoding(api: Api) -> None:
    resp = await api.client.post(
        "/api/sessions", data=b"not gzip", headers={"Content-Encoding": "gzip"}
    )
    status, data = await check(api, "createSession", resp)
    assert (status, data["error"]) == (400, "bad_json")


async def test_bug_read_marker_beyond_64_bits(api: Api) -> None:
    resp = await api.client.post(
        f"/api/sessions/{api.open.session_id}/read",
        json={"up_to": 2**63},
        headers=api.auth({}, api.open.token),
    )
    await check(api, "markRead", resp)


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("[" * 5000, id="deeply-nested"),
        pytest.param('{"type": "ping", "n": ' + "1" * 5000 + "}", id="integer-over-4300-digits"),
        pytest.param('{"type": "send", "client_id": "s", "body": "\\ud800"}', id="lone-surrogate"),
        pytest.param('{"type": "read", "up_to": 9223372036854775808}', id="read-beyond-64-bits"),
    ],
)
async def test_bug_websocket_frame_kills_the_connection(api: Api, frame: str) -> None:
    async with api.client.ws_connect(f"/api/sessions/{api.open.session_id}/ws") as ws:
        await ws.send_json({"type": "hello", "token": api.open.token, "after": 2**62})
        assert (await _receive_json(ws))["type"] == "ready"
        await ws.send_str(frame)
        await ws.send_json({"type": "ping"})
        while (reply := await _receive_json(ws))["type"] != "pong":
            check_frame(reply)


@pytest.mark.parametrize(
    "hello",
    [
        pytest.param('{"type": "hello", "token": "\\ud800"}', id="lone-surrogate-token"),
        pytest.param("[" * 5000, id="deeply-nested"),
    ],
)
async def test_bug_websocket_hello_crashes(api: Api, hello: str) -> None:
    async with api.client.ws_connect(f"/api/sessions/{api.open.session_id}/ws") as ws:
        await ws.send_str(hello)
        frame = await _receive_json(ws)
        assert frame["type"] == "error"


async def test_bug_websocket_after_beyond_64_bits(api: Api) -> None:
    async with api.client.ws_connect(f"/api/sessions/{api.open.session_id}/ws") as ws:
        await ws.send_json({"type": "hello", "token": api.open.token, "after": 2**63})
        frame = await _receive_json(ws)
        if frame["type"] == "error":  # refusing it is fine ...
            assert frame["error"] == "bad_frame"
            return
        await asyncio.sleep(0.3)  # (today the pusher task has died by now)
        for _ in range(2):  # ... accepting it must leave a working connection
            await ws.send_json({"type": "ping"})
            assert (await _receive_json(ws))["type"] == "pong"


async def test_bug_created_at_is_the_same_in_every_view(api: Api) -> None:
    resp = await api.client.post(
        "/api/sessions", json={"name": "Budi", "email": "budi@example.org", "topic": "literature"}
    )
    created = await resp.json()
    resp = await api.client.get(
        f"/api/sessions/{created['session']['id']}", headers=api.auth({}, created["token"])
    )
    assert (await resp.json())["session"]["created_at"] == created["session"]["created_at"]

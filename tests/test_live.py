"""The live view: visitors on the site (an in-memory list fed by the widget), and a librarian's
invitation accepted in the widget (issue 12). Unit tests with a controlled clock, then the real
widget in Chromium against a real Synapse."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, Page, expect

from rooms.desk import Desk, DeskRules
from rooms.events import DeskEvent, EventBus, InvitationAnswered, VisitorInvited
from rooms.ids import UserID
from rooms.intents import IntentKind
from rooms.live import LiveError, LiveVisitors, page_of
from rooms.queue import QueueRules
from rooms.session import Status, VisitorForm
from rooms.store import Database
from tests.conftest import Stack
from tests.helpers import Librarian
from tests.test_desk_in_element import eventually, in_desk_room  # noqa: F401 (a fixture)
from tests.test_spine import room_of
from tests.test_widget_browser import browser, bubbles, stored_session_id  # noqa: F401

SARI = UserID("@sari:hs")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def registry(clock: Clock) -> tuple[LiveVisitors, list[DeskEvent]]:
    bus = EventBus()
    seen: list[DeskEvent] = []
    bus.subscribe(seen.append)
    return LiveVisitors(bus, clock, ("id", "en"), stale_after=600), seen


def test_visitors_arrive_in_order_and_leave() -> None:
    clock = Clock()
    live, _ = registry(clock)
    first = live.arrive("https://lib.example/e-resources?q=skripsi#top", "id", 30)
    assert first is not None and first.page == "https://lib.example/e-resources"
    assert first.arrived == clock.now - timedelta(seconds=30)
    clock.now += timedelta(seconds=5)
    second = live.arrive("https://lib.example/", "xx", "not a number")
    assert second is not None and second.language == "?" and second.arrived == clock.now
    assert [v.number for v in live.visitors()] == [first.number, second.number]
    live.heard(second.number, "https://lib.example/hours", "en")
    assert live.visitors()[1].page == "https://lib.example/hours"
    assert live.visitors()[1].language == "en"
    live.leave(first.number)
    assert [v.number for v in live.visitors()] == [second.number]
    third = live.arrive("https://lib.example/", "en")
    assert third is not None and third.number == second.number + 1  # numbers are not reused


def test_a_visitor_not_heard_from_expires() -> None:
    clock = Clock()
    live, _ = registry(clock)
    quiet = live.arrive("https://lib.example/a", "id")
    talking = live.arrive("https://lib.example/b", "id")
    assert quiet is not None and talking is not None
    clock.now += timedelta(seconds=400)
    live.heard(talking.number)
    clock.now += timedelta(seconds=300)  # quiet: 700 s; talking: 300 s
    assert [v.number for v in live.visitors()] == [talking.number]
    clock.now += timedelta(seconds=301)
    assert live.visitors() == []


def test_page_addresses_lose_query_and_fragment() -> None:
    assert page_of("https://lib.example/cari?q=budi+santoso") == "https://lib.example/cari"
    assert page_of("https://lib.example/a#b") == "https://lib.example/a"
    assert page_of(None) == ""
    assert len(page_of("https://lib.example/" + "x" * 5000)) == 300


def test_invitations_are_answered_once() -> None:
    clock = Clock()
    live, seen = registry(clock)
    v = live.arrive("https://lib.example/", "id")
    assert v is not None
    with pytest.raises(LiveError, match="no visitor 99"):
        live.invite(99, SARI, "Sari", None)
    invitation = live.invite(v.number, SARI, "Sari", "  Bisa  saya bantu? ", reply_to="!desk:hs")
    assert invitation.text == "Bisa saya bantu?"
    assert seen == [VisitorInvited(invitation)]
    with pytest.raises(LiveError, match="already"):
        live.invite(v.number, SARI, "Sari", None)
    assert not live.answer(v.number, "another token", "declined")
    assert live.answer(v.number, invitation.token, "declined")
    assert seen[-1] == InvitationAnswered(invitation, "declined")
    assert live.take(invitation.token) is None  # answered: nothing to accept any more
    again = live.invite(v.number, SARI, "Sari", None)
    assert live.take(again.token) == again and live.take(again.token) is None
    third = live.invite(v.number, SARI, "Sari", None)
    live.leave(v.number)
    assert seen[-1] == InvitationAnswered(third, "left")
    with pytest.raises(LiveError, match="has left the site"):
        live.invite(v.number, SARI, "Sari", None)


async def test_an_accepted_invitation_starts_a_chat_claimed_by_the_librarian(
    store: Database,
) -> None:
    desk = Desk(
        store,
        DeskRules(topics=("literature",), queue=QueueRules(librarians=(SARI,))),
        clock=Clock(),
    )
    seen: list[DeskEvent] = []
    desk.subscribe(seen.append)
    v = desk.live.arrive("https://lib.example/e-resources", "id")
    assert v is not None
    with pytest.raises(LiveError, match="Only librarians"):
        desk.invite_visitor(v.number, UserID("@stranger:hs"), "Stranger")
    invitation = desk.invite_visitor(v.number, SARI, "Sari", "Bisa saya bantu?", "!desk:hs")
    form = VisitorForm("Budi", "b@example.org", "literature")
    session, _ = await desk.start_session(form, invitation=invitation.token)
    assert session.status is Status.CLAIMED and session.owner == SARI
    kinds = [i.kind for i in await desk.outbox.pending(session.id)]
    assert IntentKind.CLAIMED in kinds and IntentKind.RING not in kinds
    claimed = next(i for i in await desk.outbox.pending(session.id) if i.kind is IntentKind.CLAIMED)
    assert claimed.payload["invited"] is True and claimed.payload["text"] == "Bisa saya bantu?"
    assert InvitationAnswered(invitation, "accepted", session.id) in seen
    # Its first message does not ring anyone either.
    await desk.visitor_message(session, "Halo", "c-1")
    assert IntentKind.RING not in [i.kind for i in await desk.outbox.pending(session.id)]
    view = await desk.live_view()
    assert [s.id for s in view.served] == [session.id] and view.waiting == []
    assert view.on_duty == [SARI]
    assert view.visitors is not None and [x.number for x in view.visitors] == [v.number]
    # The same token again (a retry, another tab): an ordinary chat, in the queue.
    other, _ = await desk.start_session(form, invitation=invitation.token)
    assert other.status is Status.NEW and other.owner is None


# end to end: the widget in Chromium, librarians in Matrix


async def ask_queue(lib: Librarian, room_id: str) -> str:
    """``!queue`` in the desk room; its answer."""
    before = {s.event_id for s in lib.timeline}
    await lib.send(room_id, "!queue")
    reply = await lib.wait_for(
        lambda s: s.room_id == room_id and s.event_id not in before and "On the site" in s.body
    )
    return reply.body


async def arrived(stack: Stack, known: set[int]) -> int:
    """The number of the visitor who arrived after ``known``."""

    def new() -> list[int]:
        return [v.number for v in stack.desk.desk.live.visitors() if v.number not in known]

    found = await eventually(new)
    assert len(found) == 1, found
    return int(found[0])


async def told(lib: Librarian, room_id: str, text: str) -> str:
    return (await lib.wait_for(lambda s: s.room_id == room_id and text in s.body)).body


async def open_demo(chromium: Browser, stack: Stack) -> Page:
    context = await chromium.new_context(locale="en-GB")
    page = await context.new_page()
    await page.goto(f"{stack.widget_url}/demo?from=test#here")
    return page


async def invited(
    stack: Stack, chromium: Browser, lib: Librarian, room_id: str, text: str
) -> tuple[Page, int]:
    """A visitor opens the demo page and ``lib`` invites them with ``text``; the page shows it."""
    known = {v.number for v in stack.desk.desk.live.visitors()}
    page = await open_demo(chromium, stack)
    try:
        number = await arrived(stack, known)
        await lib.send(room_id, f"!invite-visitor {number} {text}")
        await expect(page.locator("[data-refdesk=live-invitation]")).to_contain_text(text)
    except BaseException:
        await page.context.close()
        raise
    return page, number


async def test_the_visitor_list_shows_who_is_on_the_site(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    sari = librarians["sari"]
    known = {v.number for v in stack.desk.desk.live.visitors()}
    page = await open_demo(browser, stack)
    try:
        number = await arrived(stack, known)
        listing = await ask_queue(sari, in_desk_room)
        assert "On duty: " in listing
        line = next(x for x in listing.splitlines() if x.strip().startswith(f"#{number} "))
        host = stack.widget_url.split("://")[1]
        assert f"{host}/demo · " in line and line.endswith(" · en"), line
        assert "from=test" not in listing  # the query stays in the browser
        await sari.send(in_desk_room, f"!invite-visitor {number}")
        await told(sari, in_desk_room, f"Visitor #{number} (")
        await expect(page.locator("[data-refdesk=live-invitation]")).to_be_visible()
    finally:
        await page.context.close()
    # Gone with the page: a pending invitation with it, and the librarian is told.
    await told(sari, in_desk_room, f"Visitor #{number} left the site before answering")
    await eventually(lambda: number not in [v.number for v in stack.desk.desk.live.visitors()])
    listing = await ask_queue(sari, in_desk_room)
    assert not re.search(rf"^\s*#{number} ", listing, re.M), listing
    await sari.send(in_desk_room, f"!invite-visitor {number}")
    await told(sari, in_desk_room, f"Visitor {number} has left the site.")


async def test_a_declined_invitation_disappears(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    dewi = librarians["dewi"]
    page, number = await invited(stack, browser, dewi, in_desk_room, "Need a hand?")
    invitation = page.locator("[data-refdesk=live-invitation]")
    try:
        await expect(invitation).to_contain_text("Dewi Librarian")
        await page.locator("[data-refdesk=live-invitation-decline]").click()
        await expect(invitation).to_have_count(0)
        await told(dewi, in_desk_room, f"Visitor #{number} declined your invitation.")
    finally:
        await page.context.close()


async def test_an_invitation_accepted_in_the_widget(
    stack: Stack,
    browser: Browser,  # noqa: F811
    librarians: dict[str, Librarian],
    in_desk_room: str,  # noqa: F811
) -> None:
    sari = librarians["sari"]
    page, number = await invited(stack, browser, sari, in_desk_room, "Can I help?")
    invitation = page.locator("[data-refdesk=live-invitation]")
    try:
        await expect(invitation).to_contain_text("Sari Librarian, a librarian, invites you")
        await page.locator("[data-refdesk=live-invitation-accept]").click()
        await expect(invitation).to_have_count(0)
        form = page.locator("[data-refdesk=form]")
        await expect(form).to_be_visible()
        await expect(page.locator("[data-refdesk=form-error]")).to_contain_text("Sari Librarian")
        await form.locator("[name=name]").fill("Rina")
        await form.locator("[name=email]").fill("rina@example.org")
        await form.locator("[name=topic]").select_option("literature")
        await page.locator("[data-refdesk=start]").click()

        session_id = await stored_session_id(page)
        room_id = await room_of(stack, session_id)
        session = await stack.desk.desk.get_session(session_id)
        assert session.owner == sari.user_id and session.status is Status.CLAIMED
        await told(sari, in_desk_room, f"Visitor #{number} accepted your invitation")
        await sari.wait_for_invite(room_id)
        await sari.join(room_id)
        await told(sari, room_id, "Rina accepted Sari Librarian's invitation (“Can I help?”)")
        # Nobody else was rung: only Sari was asked into the room.
        members = await stack.desk.bridge.client.members(room_id)
        librarians_in = {u for u in members if u.startswith(("@sari:", "@dewi:", "@agus:"))}
        assert librarians_in == {sari.user_id}, members
        # The chat with the visitor is no longer "on the site".
        await eventually(lambda: number not in [v.number for v in stack.desk.desk.live.visitors()])
        await sari.send(room_id, "Hello Rina, what are you looking for?")
        await expect(bubbles(page, "librarian")).to_contain_text("what are you looking for?")
        await page.locator("[data-refdesk=input]").fill("Old maps of Java")
        await page.locator("[data-refdesk=send]").click()
        ghost = stack.mxid(f"refdesk_v_{session_id}")
        await sari.wait_for(lambda s: s.room_id == room_id and s.sender == ghost)
    finally:
        await page.context.close()

"""Groups in the web client, with two people in two browser contexts at once: Alice creates a
group with Bob, sends; Bob sees it arrive without reloading; Bob asks the assistant (streamed to
him) and Alice sees his question and the answer; Alice removes Bob and Bob's view says so; the
group at phone width. Both live (through the Web PubSub stand-in the local host starts) and
polling (negotiate answering 503, as when real-time delivery is off). Bob's WebSocket routed
through the test loses an event (the gap is filled from the store) and drops (the client
connects again and is live again). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Route, WebSocketRoute, expect

from tests.web.browser.support import (
    DESKTOP,
    PHONE,
    StoredHost,
    api_get,
    json_error,
    open_page,
    screenshot,
    scroller_overflow,
    sign_in,
)
from tools.local.host import RunningHost, dev_headers, run_host

pytestmark = pytest.mark.browser

ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
ARRIVES_MS = 15_000  # a poll is every 3 s; live is at once
REFRESH_MS = 25_000  # ...and the group itself (its name, members) every 15 s


@pytest.fixture
def second(browser: Browser) -> Iterator[Page]:
    yield from open_page(browser, DESKTOP)


def group_log(page: Page, name: str) -> Locator:
    return page.get_by_role("log", name=name).locator(":scope > li")


def group_send(page: Page, text: str, *, ask: bool = False) -> None:
    page.get_by_role("textbox", name="Group message").fill(text)
    if ask:
        page.get_by_role("button", name="Ask the assistant").click()
    else:
        page.get_by_role("textbox", name="Group message").press("Enter")


@pytest.mark.parametrize("delivered", ["live", "polling"])
def test_two_people_and_the_assistant(
    stored_host: StoredHost, page: Page, second: Page, delivered: str
) -> None:
    host = stored_host.host  # on each store: SQLite and the test Cosmos account
    if delivered == "polling":
        # Real-time delivery off, as the API says it when it is (503 realtime_unavailable).
        for each in (page, second):
            each.route("**/api/realtime/negotiate", json_error(503, "realtime_unavailable"))
    # Alice creates the group with Bob.
    sign_in(page, host, ALICE)
    page.get_by_role("button", name="New group").click()
    dialog = page.get_by_role("dialog", name="New group")
    dialog.get_by_label("Name").fill("Launch")
    dialog.get_by_label("Members").fill("Bob@Example.com")
    dialog.get_by_role("button", name="Create group").click()
    expect(page.get_by_role("heading", name="Launch")).to_be_visible()
    expect(page.locator("#group-meta")).to_contain_text("2 members")
    expect(page.locator("#group-meta")).to_contain_text("you own this group")
    group_id = page.url.split("#g=")[1]
    groups = page.get_by_role("list", name="Groups")
    expect(groups.get_by_role("link", name="Launch")).to_have_attribute("aria-current", "page")

    # Bob finds it in his list and opens it.
    sign_in(second, host, BOB)
    second.get_by_role("list", name="Groups").get_by_role("link", name="Launch").click()
    expect(second.get_by_role("heading", name="Launch")).to_be_visible()
    expect(second.get_by_role("button", name="Delete group")).to_be_hidden()
    expect(second.locator("#group-live")).not_to_have_text("Connecting…")
    expect(second.locator("#group-live")).to_have_text(
        "Live" if delivered == "live" else "Updates every 3 seconds"
    )

    # Alice writes; Bob sees it, with her name, without reloading.
    group_send(page, "Hello Bob, shall we plan the launch?")
    mine = group_log(page, "Launch")
    expect(mine).to_have_count(1)
    expect(mine.first.locator(".who")).to_have_text("You")
    expect(mine.first).to_have_attribute("data-seq", "1")
    bobs = group_log(second, "Launch")
    expect(bobs).to_have_count(1, timeout=ARRIVES_MS)
    expect(bobs.first.locator(".who")).to_have_text("alice")
    expect(bobs.first.locator(".content")).to_have_text("Hello Bob, shall we plan the launch?")

    # Bob asks the assistant: the answer streams to him and is stored after his question.
    group_send(second, "Yes: what should we do first?", ask=True)
    expect(bobs).to_have_count(3)
    expect(bobs.nth(1).locator(".who")).to_have_text("You")
    expect(bobs.nth(2).locator(".who")).to_have_text("Assistant")
    expect(bobs.nth(2).locator(".content")).to_contain_text("what should we do first?")
    expect(bobs.nth(2)).to_have_attribute("data-seq", "3")
    expect(second.locator("#group-messages .streaming")).to_have_count(0)
    screenshot(second, f"groups-1-bob-asked-{delivered}.png")

    # Alice sees his question (by name) and the answer, each once, in order.
    expect(mine).to_have_count(3, timeout=ARRIVES_MS)
    expect(mine.nth(1).locator(".who")).to_have_text("bob")
    expect(mine.nth(2).locator(".who")).to_have_text("Assistant")
    assert mine.evaluate_all("items => items.map(i => i.dataset.seq)") == ["1", "2", "3"]
    screenshot(page, f"groups-2-alice-sees-answer-{delivered}.png")
    # The sidebar, with its Groups, is no wider than itself (nothing sticks out of it).
    assert (
        page.evaluate(
            "() => { const s = document.getElementById('sidebar');"
            " return s.scrollWidth - s.clientWidth; }"
        )
        <= 0
    )

    # What the store holds is what both show.
    stored = api_get(host, f"/groups/{group_id}", ALICE).json()
    assert [m["seq"] for m in stored["messages"]] == [1, 2, 3]
    assert stored["messages"][1]["sender"]["email"] == BOB

    # Alice renames the group: Bob's heading follows without reloading.
    page.get_by_role("button", name="Rename").click()
    page.get_by_label("Group name").fill("Launch plan")
    page.get_by_label("Group name").press("Enter")
    expect(page.get_by_role("heading", name="Launch plan")).to_be_visible()
    expect(second.get_by_role("heading", name="Launch plan")).to_be_visible(timeout=REFRESH_MS)

    # Alice adds Carol and makes her an owner, then removes Bob: Bob's open view says so and
    # offers nothing to send.
    page.get_by_role("button", name="Members").click()
    members = page.get_by_role("dialog", name="Members")
    expect(members.get_by_role("listitem")).to_have_count(2)
    members.get_by_label("Add someone").fill(CAROL)
    members.get_by_role("button", name="Add", exact=True).click()
    expect(members.get_by_role("listitem")).to_have_count(3)
    members.get_by_label("Role of carol").select_option("owner")
    expect(page.locator("#group-meta")).to_contain_text("3 members")
    carol = api_get(host, f"/groups/{group_id}", CAROL).json()
    assert {m["email"]: m["role"] for m in carol["members"]}[CAROL] == "owner"
    screenshot(page, f"groups-3-members-{delivered}.png")
    members.get_by_role("button", name="Remove bob").click()
    expect(members.get_by_role("listitem")).to_have_count(2)
    members.get_by_role("button", name="Close").click()
    expect(page.locator("#group-meta")).to_contain_text("2 members")
    expect(second.locator("#group-gone")).to_have_text(
        # Live, the server tells Bob (group.removed); polling, his next read is a 404.
        "You are no longer a member of this group."
        if delivered == "live"
        else "You are no longer a member of this group, or it was deleted.",
        timeout=ARRIVES_MS,
    )
    expect(second.get_by_role("textbox", name="Group message")).to_be_hidden()
    expect(second.locator("#group-meta")).to_have_text("")
    expect(second.get_by_role("list", name="Groups").get_by_role("link")).to_have_count(0)
    screenshot(second, f"groups-4-bob-removed-{delivered}.png")
    assert api_get(host, f"/groups/{group_id}", BOB).status_code == 404

    # Alice leaves: the group leaves her list; Carol, an owner, keeps it.
    page.get_by_role("button", name="Members").click()
    page.get_by_role("dialog", name="Members").get_by_role("button", name="Leave group").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.get_by_role("list", name="Groups").get_by_role("link")).to_have_count(0)
    carol = api_get(host, f"/groups/{group_id}", CAROL).json()
    assert [(m["email"], m["role"]) for m in carol["members"]] == [(CAROL, "owner")]


def test_group_at_phone_width(host: RunningHost, browser: Browser) -> None:
    pages = open_page(browser, PHONE)
    phone = next(pages)
    try:
        sign_in(phone, host, ALICE)
        phone.get_by_role("button", name="Chats").click()
        phone.get_by_role("button", name="New group").click()
        dialog = phone.get_by_role("dialog", name="New group")
        dialog.get_by_label("Name").fill("A group with a rather long name for a phone")
        dialog.get_by_label("Members").fill("bob@example.com, carol@example.com")
        dialog.get_by_role("button", name="Create group").click()
        expect(phone.get_by_role("heading", name="A group with a rather long name")).to_be_visible()
        group_send(
            phone, "A message that is long enough to wrap on a phone-sized screen, twice over."
        )
        group_send(phone, "And a question for the assistant?", ask=True)
        expect(group_log(phone, "A group with a rather long name for a phone")).to_have_count(3)
        expect(phone.get_by_role("button", name="Ask the assistant")).to_be_in_viewport()
        assert scroller_overflow(phone) <= 0
        screenshot(phone, "groups-5-phone.png")
        # The owner deletes it: gone from the list, back to a new chat.
        phone.get_by_role("button", name="Delete group").click()
        phone.get_by_role("dialog", name="Delete this group?").get_by_role(
            "button", name="Delete group"
        ).click()
        expect(phone.get_by_role("heading", name="New chat")).to_be_visible()
        phone.get_by_role("button", name="Chats").click()
        expect(phone.get_by_role("list", name="Groups").get_by_role("link")).to_have_count(0)
    finally:
        next(pages, None)


def test_a_message_of_an_erased_member(host: RunningHost, page: Page) -> None:
    created = httpx.post(
        f"{host.base_url}/api/groups",
        json={"name": "Erased", "members": [BOB]},
        headers=dev_headers(ALICE),
        timeout=10,
    ).json()
    path = f"{host.base_url}/api/groups/{created['groupId']}/messages"
    for email, text in ((BOB, "a secret of Bob's"), (ALICE, "noted")):
        sent = httpx.post(path, json={"content": text}, headers=dev_headers(email), timeout=10)
        assert sent.status_code == 201, sent.text
    # Bob erases everything of his: his message keeps its place, without content or sender.
    for _ in range(20):
        erased = httpx.delete(f"{host.base_url}/api/sessions", headers=dev_headers(BOB), timeout=30)
        if erased.status_code == 204:
            break
        assert erased.status_code == 202, erased.text
    assert erased.status_code == 204

    sign_in(page, host, ALICE)
    page.get_by_role("list", name="Groups").get_by_role("link", name="Erased").click()
    log = group_log(page, "Erased")
    expect(log).to_have_count(2)
    expect(log.first.locator(".who")).to_have_text("A former member")
    expect(log.first.locator(".content")).to_have_text("A message from a former member (removed).")
    expect(log.nth(1).locator(".who")).to_have_text("You")
    expect(page.locator("#group-meta")).to_contain_text("1 member")
    assert "secret" not in page.locator("#group-view").inner_text()


def test_earlier_messages(sqlite_env: dict[str, str], tmp_path: Path, page: Page) -> None:
    with run_host({**sqlite_env, "MAX_SESSION_MESSAGES": "5"}, tmp_path / "host.log") as host:
        created = httpx.post(
            f"{host.base_url}/api/groups",
            json={"name": "Busy", "members": [BOB]},
            headers=dev_headers(ALICE),
            timeout=10,
        ).json()
        path = f"{host.base_url}/api/groups/{created['groupId']}/messages"
        for n in range(1, 13):
            who = ALICE if n % 2 else BOB
            sent = httpx.post(path, json={"content": f"m{n}"}, headers=dev_headers(who), timeout=10)
            assert sent.status_code == 201, sent.text
        sign_in(page, host, ALICE)
        page.get_by_role("list", name="Groups").get_by_role("link", name="Busy").click()
        log = group_log(page, "Busy")
        expect(log).to_have_count(5)
        assert log.locator(".content").all_inner_texts() == [f"m{n}" for n in range(8, 13)]
        page.get_by_role("button", name="Load earlier messages").click()
        expect(log).to_have_count(12)
        assert log.locator(".content").all_inner_texts() == [f"m{n}" for n in range(1, 13)]
        expect(page.get_by_role("button", name="Load earlier messages")).to_be_hidden()


def test_an_answer_renders_at_most_once_a_frame(host: RunningHost, page: Page) -> None:
    created = httpx.post(
        f"{host.base_url}/api/groups",
        json={"name": "Frames", "members": [BOB]},
        headers=dev_headers(ALICE),
        timeout=10,
    ).json()
    # Count the changes made to the streaming answer while it streams.
    page.add_init_script(
        """
        window.renders = 0;
        new MutationObserver((records) => {
          for (const record of records) {
            if (record.target.closest?.(".streaming")) window.renders += 1;
          }
        }).observe(document, { childList: true, subtree: true, characterData: true });
        """
    )
    pieces = [f"word{n} " for n in range(300)]
    stamp = "2026-01-01T00:00:00Z"
    user = {
        "id": "u",
        "seq": 1,
        "role": "user",
        "content": "go",
        "timestamp": stamp,
        "sender": {"email": ALICE, "name": "alice"},
    }
    answer = {
        "id": "a",
        "seq": 2,
        "role": "assistant",
        "content": "".join(pieces),
        "timestamp": stamp,
        "sender": None,
    }
    events = [f"event: message\ndata: {json.dumps({'message': user})}\n\n"]
    events += [f"event: delta\ndata: {json.dumps({'content': p})}\n\n" for p in pieces]
    events.append(f"event: done\ndata: {json.dumps({'messages': [user, answer]})}\n\n")

    def stream(route: Route) -> None:
        if route.request.method == "POST":
            route.fulfill(status=200, content_type="text/event-stream", body="".join(events))
        else:
            route.continue_()

    page.route("**/api/groups/*/messages*", stream)
    sign_in(page, host, ALICE)
    page.goto(f"{host.base_url}/#g={created['groupId']}")
    expect(page.get_by_role("heading", name="Frames")).to_be_visible()
    group_send(page, "go", ask=True)
    log = group_log(page, "Frames")
    expect(log).to_have_count(2)
    expect(log.nth(1).locator(".content")).to_contain_text("word299")
    # 300 pieces arrived together: a frame's render or two for them, not one each.
    assert page.evaluate("window.renders") < 20


class Socket:
    """Bob's WebSocket to Web PubSub, routed through the test: it passes every frame on, can
    lose the group events (a publish that never arrives) and can drop the connection."""

    def __init__(self, page: Page) -> None:
        self.lose_events = False
        self.lost = 0
        self.opened = 0
        self.current: tuple[WebSocketRoute, WebSocketRoute] | None = None
        page.route_web_socket(re.compile(r"^wss?://"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.opened += 1
        self.current = (ws, server)

        def to_page(frame: str | bytes) -> None:
            if self.lose_events and '"type":"message"' in str(frame).replace(" ", ""):
                self.lost += 1
                return
            ws.send(frame)

        server.on_message(to_page)

    def drop(self) -> None:
        assert self.current is not None
        ws, server = self.current
        self.current = None
        server.close()
        ws.close()


def wait_for(page: Page, ready: Callable[[], bool]) -> None:
    """Let the page run frame by frame until ``ready()`` (what the route saw) holds."""
    for _ in range(600):
        if ready():
            return
        page.evaluate("() => new Promise((done) => requestAnimationFrame(done))")
    raise AssertionError("it never happened")


def test_live_events_a_lost_event_and_a_dropped_connection(
    host: RunningHost, page: Page, second: Page
) -> None:
    socket = Socket(second)
    sign_in(page, host, ALICE)
    group = httpx.post(
        f"{host.base_url}/api/groups",
        json={"name": "Live", "members": [BOB]},
        headers=dev_headers(ALICE),
        timeout=10,
    ).json()
    page.goto(f"{host.base_url}/#g={group['groupId']}")
    sign_in(second, host, BOB)
    second.get_by_role("list", name="Groups").get_by_role("link", name="Live").click()
    expect(second.locator("#group-live")).to_have_text("Live")
    bobs = group_log(second, "Live")

    group_send(page, "one")
    expect(bobs).to_have_count(1)

    # An event that never arrives: while Bob is live nothing polls, so "two" is not shown...
    socket.lose_events = True
    group_send(page, "two")
    expect(group_log(page, "Live").nth(1)).to_have_attribute("data-seq", "2")
    wait_for(second, lambda: socket.lost >= 1)
    assert bobs.count() == 1
    # ...until the next event shows the gap: both are fetched, in order, each once.
    socket.lose_events = False
    group_send(page, "three")
    expect(bobs).to_have_count(3)
    assert bobs.locator(".content").all_inner_texts() == ["one", "two", "three"]

    # The connection drops: Bob's client says so, connects again and is live again.
    socket.drop()
    expect(second.locator("#group-live")).to_have_text("Reconnecting…")
    group_send(page, "four, while Bob was away")
    expect(second.locator("#group-live")).to_have_text("Live")
    assert socket.opened == 2
    expect(bobs).to_have_count(4)
    group_send(page, "five")
    expect(bobs).to_have_count(5)
    assert bobs.evaluate_all("items => items.map(i => i.dataset.seq)") == ["1", "2", "3", "4", "5"]
    screenshot(second, "groups-6-after-reconnect.png")

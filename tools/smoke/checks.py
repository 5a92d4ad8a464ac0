"""The checks of ``python -m tools.smoke``, in the order they run, and the cleanup around them.

What the command may create is one conversation of the token's user, tagged: its first message
starts with ``MARKER_PREFIX`` (so the session's ``preview``, the first 100 characters of the
first message, carries the tag whatever the title mode). Only sessions carrying the tag are ever
deleted: this run's in ``finally``, an earlier interrupted run's at the start.
"""

from __future__ import annotations

import base64
import codecs
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import httpx

from shared.consistency import HEADER as CONSISTENCY_HEADER

# The tag of every session the command creates; "[parley-smoke:<run id>] ..." in full.
MARKER_PREFIX = "[parley-smoke:"
# A made-up caller for the forged-identity check. Nothing is ever written as this identity: the
# check only reads, and only a deployment that trusts client headers would answer it.
FORGED_EMAIL = "smoke-forged-identity@parley.invalid"
PAGE_LIMIT = 100  # the API's largest page
MAX_PAGES = 100  # at most 10,000 sessions looked at for leftovers: bounded, whatever happens
# DELETE may answer 202 + Retry-After when erasing takes longer than one request may.
DELETE_WAIT_LIMIT_S = 120.0
REFUSED_STATUSES = (401, 403)
# The streamed turn asks for an answer of several words, and its deltas must arrive in at least
# this many separate reads of the response: a stream buffered on the way arrives in one.
STREAM_PROMPT = "And once more, streamed: count from one to ten in words."
MIN_DELTA_READS = 2

Hook = Callable[[str], None]
# What a check may raise when a deployment answers something unexpected: reported as FAIL.
CHECK_ERRORS = (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError)


class CheckFailed(Exception):
    """A check did not hold; the message says what was wrong (never the token or user data)."""


@dataclass
class Result:
    name: str
    status: str  # PASS, FAIL or SKIP
    detail: str


def run_marker(run_id: str | None = None) -> str:
    return f"{MARKER_PREFIX}{run_id or uuid.uuid4().hex[:12]}]"


def is_tagged(summary: dict[str, Any], marker: str = MARKER_PREFIX) -> bool:
    """Whether a session summary is one the command created (this run's, given its marker)."""
    return str(summary.get("preview", "")).startswith(marker)


def forged_principal(email: str) -> str:
    """An X-MS-CLIENT-PRINCIPAL value as App Service Authentication builds it, made up here."""
    claims = [{"typ": "preferred_username", "val": email}, {"typ": "name", "val": "Forged"}]
    body = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(body).encode()).decode()


@dataclass
class Smoke:
    """One run against one deployment. ``client`` has the API base URL (``.../api``)."""

    client: httpx.Client
    token: str
    out: TextIO
    origin: str | None = None
    other_origin: str = "https://not-allowed.invalid"
    after_check: Hook | None = None  # called after each check, by name (tests interrupt here)
    before_cleanup: Callable[[], None] | None = None  # e.g. to defer signals while cleaning
    marker: str = field(default_factory=run_marker)
    clock: Callable[[], float] = time.monotonic  # when each read of a stream arrived
    results: list[Result] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # session ids this run made
    # Whether a request that can create a session was sent without a clear "nothing stored" (a
    # 4xx) in return: a lost answer, or a 5xx, may still have stored the message.
    may_have_written: bool = False
    session_id: str | None = None

    # ---- running and reporting --------------------------------------------------------------

    def run(self) -> None:
        """Every check, then the cleanup of what this run made, even when interrupted."""
        try:
            self.check("health", self.health)
            self.check("no-token", self.no_token)
            self.check("forged-identity", self.forged_identity)
            self.check("cors-allowed", self.cors_allowed)
            self.check("cors-refused", self.cors_refused)
            self.check("leftovers", self.leftovers)
            self.check("chat-json", self.chat_json)
            self.check("list", self.listed, needs_session=True)
            self.check("get", self.get, needs_session=True)
            self.check("chat-stream", self.chat_stream, needs_session=True)
            self.check("delete", self.delete, needs_session=True)
        finally:
            if self.before_cleanup is not None:
                self.before_cleanup()
            self.check("cleanup", self.cleanup)

    def check(self, name: str, body: Callable[[], str], *, needs_session: bool = False) -> None:
        if needs_session and self.session_id is None:
            self.report(Result(name, "SKIP", "needs the session of chat-json, which failed"))
        else:
            try:
                self.report(Result(name, "PASS", body()))
            except Skip as skip:
                self.report(Result(name, "SKIP", str(skip)))
            except CheckFailed as failure:
                self.report(Result(name, "FAIL", str(failure)))
            except httpx.HTTPError as error:
                # Connection, TLS and timeout errors: their text names the URL, never a header.
                self.report(Result(name, "FAIL", f"{type(error).__name__}: {error}"))
            except CHECK_ERRORS as error:
                self.report(Result(name, "FAIL", f"unexpected answer: {type(error).__name__}"))
        if self.after_check is not None:
            self.after_check(name)

    def report(self, result: Result) -> None:
        self.results.append(result)
        print(f"{result.status} {result.name:<16} {result.detail}", file=self.out, flush=True)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if r.status == "FAIL"]

    # ---- requests ---------------------------------------------------------------------------

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def sessions(self, *, archived: bool) -> Iterator[dict[str, Any]]:
        """Every session summary of the token's user, page by page (bounded)."""
        params: dict[str, Any] = {"limit": PAGE_LIMIT, "archived": str(archived).lower()}
        for _ in range(MAX_PAGES):
            response = self.client.get("/sessions", params=params, headers=self.auth())
            expect(response, 200, "GET /sessions")
            page = response.json()
            yield from page.get("sessions", [])
            token = page.get("continuationToken")
            if not token:
                return
            params["continuationToken"] = token

    def tagged_sessions(self, marker: str) -> list[str]:
        return [
            str(s["sessionId"])
            for archived in (False, True)
            for s in self.sessions(archived=archived)
            if is_tagged(s, marker)
        ]

    def delete_session(self, session_id: str) -> int:
        """Delete one session; gone already is fine. Waits out 202 + Retry-After (bounded).
        Returns the status of the first answer."""
        deadline = time.monotonic() + DELETE_WAIT_LIMIT_S
        first: int | None = None
        while True:
            response = self.client.delete(f"/sessions/{session_id}", headers=self.auth())
            first = response.status_code if first is None else first
            if response.status_code in (204, 404):
                self.created.discard(session_id)
                return first
            if response.status_code != 202 or time.monotonic() > deadline:
                raise CheckFailed(f"DELETE /sessions/{session_id} answered {describe(response)}")
            time.sleep(retry_after_s(response))

    # ---- the checks: each returns what it saw, or raises CheckFailed ------------------------

    def health(self) -> str:
        response = self.client.get("/health")
        expect(response, 200, "GET /health")
        if json_body(response) != {"status": "ok"}:
            raise CheckFailed('GET /health answered 200 but not {"status": "ok"}')
        return "200 {status: ok}"

    def no_token(self) -> str:
        response = self.client.get("/sessions")
        if response.status_code not in REFUSED_STATUSES:
            raise CheckFailed(
                f"GET /sessions without a token answered {describe(response)}, not 401:"
                " the API serves callers who have not signed in"
            )
        return f"{response.status_code} without a token"

    def forged_identity(self) -> str:
        # Both identity headers a client could forge, for a made-up user, and no token.
        headers = {
            "X-MS-CLIENT-PRINCIPAL": forged_principal(FORGED_EMAIL),
            "X-MS-CLIENT-PRINCIPAL-NAME": FORGED_EMAIL,
            "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
        }
        response = self.client.get("/sessions", headers=headers)
        if response.status_code not in REFUSED_STATUSES:
            raise CheckFailed(
                f"a made-up identity in X-MS-CLIENT-PRINCIPAL(-NAME), with no token, answered"
                f" {describe(response)}, not 401: the API trusts identity headers a client can"
                " forge (AUTH_MODE=dev, or Easy Auth off without the app's token check)"
            )
        return f"{response.status_code} for a made-up X-MS-CLIENT-PRINCIPAL without a token"

    def preflight(self, origin: str) -> httpx.Response:
        return self.client.options(
            "/chat",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": (
                    f"authorization,content-type,{CONSISTENCY_HEADER.lower()}"
                ),
            },
        )

    def cors_allowed(self) -> str:
        if self.origin is None:
            raise Skip("no --origin given")
        response = self.preflight(self.origin)
        allowed = response.headers.get("access-control-allow-origin")
        if response.status_code >= 400 or allowed != self.origin:
            raise CheckFailed(
                f"preflight from {self.origin} answered {describe(response)} with"
                f" Access-Control-Allow-Origin {allowed!r}: the single-page app cannot call"
                " the API"
            )
        headers = response.headers.get("access-control-allow-headers", "").lower()
        if CONSISTENCY_HEADER.lower() not in [h.strip() for h in headers.split(",")]:
            raise CheckFailed(
                f"preflight from {self.origin} does not allow {CONSISTENCY_HEADER}"
                f" (Access-Control-Allow-Headers {headers!r}): the single-page app cannot read"
                " its own writes on every instance"
            )
        return f"{response.status_code}, Access-Control-Allow-Origin: {allowed}"

    def cors_refused(self) -> str:
        response = self.preflight(self.other_origin)
        allowed = response.headers.get("access-control-allow-origin")
        if allowed in (self.other_origin, "*"):
            raise CheckFailed(
                f"preflight from {self.other_origin} was allowed (Access-Control-Allow-Origin"
                f" {allowed!r}): any site could call the API with its users' credentials"
            )
        return f"{response.status_code}, no Access-Control-Allow-Origin for {self.other_origin}"

    def leftovers(self) -> str:
        found = self.tagged_sessions(MARKER_PREFIX)
        for session_id in found:
            self.delete_session(session_id)
        return f"removed {len(found)} session(s) left by an interrupted run" if found else "none"

    def chat_json(self) -> str:
        body = {"message": f"{self.marker} Smoke test: please answer with one short sentence."}
        self.may_have_written = True
        try:
            response = self.client.post("/chat", json=body, headers=self.auth())
        except (httpx.ConnectError, httpx.ConnectTimeout):
            self.may_have_written = False  # the request never reached the server
            raise
        if 400 <= response.status_code < 500:
            self.may_have_written = False  # refused before anything was stored
        expect(response, 200, "POST /chat")
        data = json_body(response)
        session_id = data.get("sessionId") if isinstance(data, dict) else None
        if not isinstance(session_id, str):
            raise CheckFailed("POST /chat answered 200 without a sessionId")
        self.created.add(session_id)
        roles = [m.get("role") for m in data.get("messages", []) if isinstance(m, dict)]
        if roles != ["user", "assistant"]:
            raise CheckFailed(f"POST /chat answered roles {roles}, not user and assistant")
        self.session_id = session_id
        if not response.headers.get(CONSISTENCY_HEADER):
            raise CheckFailed(
                f"POST /chat answered without {CONSISTENCY_HEADER}: another instance may not"
                " show the turn just stored"
            )
        return f"200, session {session_id}"

    def listed(self) -> str:
        if self.session_id not in self.tagged_sessions(self.marker):
            raise CheckFailed(f"GET /sessions does not list the new session {self.session_id}")
        return f"lists {self.session_id}"

    def get(self) -> str:
        response = self.client.get(f"/sessions/{self.session_id}", headers=self.auth())
        expect(response, 200, "GET /sessions/{id}")
        messages = json_body(response).get("messages", [])
        if len(messages) != 2 or not str(messages[0].get("content", "")).startswith(self.marker):
            raise CheckFailed("GET /sessions/{id} does not hold the turn just stored")
        return "200, 2 messages"

    def chat_stream(self) -> str:
        body = {"message": f"{self.marker} {STREAM_PROMPT}", "sessionId": self.session_id}
        headers = {**self.auth(), "Accept": "text/event-stream"}
        with self.client.stream("POST", "/chat", json=body, headers=headers) as response:
            if response.status_code != 200:
                response.read()
                raise CheckFailed(f"POST /chat (event stream) answered {describe(response)}")
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise CheckFailed(f"POST /chat (event stream) answered {kind!r}")
            arrivals = list(events_by_read(response.iter_bytes(), self.clock))
        names = [arrival.name for arrival in arrivals]
        for arrival in arrivals:
            data = arrival.data
            if arrival.name == "session" and isinstance(data, dict) and data.get("sessionId"):
                self.created.add(str(data["sessionId"]))
        deltas = [arrival for arrival in arrivals if arrival.name == "delta"]
        well_formed = names[:1] == ["session"] and names[-1:] == ["done"]
        if not well_formed or not deltas or set(names[1:-1]) - {"delta", "title"}:
            raise CheckFailed(f"the stream was {compress(names)}, not session, delta..., done")
        return f"session, delta x{len(deltas)} {one_by_one(deltas)}, done"

    def delete(self) -> str:
        assert self.session_id is not None
        first = self.delete_session(self.session_id)
        if first not in (202, 204):
            raise CheckFailed(f"DELETE /sessions/{{id}} answered {first}, not 204")
        response = self.client.get(f"/sessions/{self.session_id}", headers=self.auth())
        if response.status_code != 404:
            raise CheckFailed(f"after DELETE, GET /sessions/{{id}} answered {describe(response)}")
        return f"{first}, then GET answers 404"

    def cleanup(self) -> str:
        """Delete what this run made and check that no session of it is left."""
        if not self.created and not self.may_have_written:
            return "this run created nothing"
        for session_id in sorted(self.created):
            self.delete_session(session_id)
        remaining = self.tagged_sessions(self.marker)
        for session_id in remaining:
            self.delete_session(session_id)
        if self.tagged_sessions(self.marker):
            raise CheckFailed("sessions of this run are still listed after deleting them")
        return "nothing of this run is left"


class Skip(CheckFailed):
    """A check that does not apply to this run (reported as SKIP, not FAIL)."""


def expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise CheckFailed(f"{what} answered {describe(response)}, not {status}")


def describe(response: httpx.Response) -> str:
    """The status and, for our error object, its code: enough to name a problem, no user data."""
    try:
        error = response.json().get("error", {})
        code = error.get("code") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        code = None
    return f"{response.status_code} ({code})" if code else str(response.status_code)


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        request = response.request
        raise CheckFailed(f"{request.method} {request.url.path} did not answer JSON") from None


def retry_after_s(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    return min(float(value), 30.0) if value.isdigit() else 5.0


def read_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """Server-Sent Events as (event name, parsed JSON data), one per blank-line-ended block."""
    name, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
    if data:
        yield name, json.loads("\n".join(data))


@dataclass
class Arrival:
    """An event, with the read of the response body that completed it and when."""

    name: str
    data: Any
    read: int
    at: float


def events_by_read(chunks: Iterable[bytes], clock: Callable[[], float]) -> Iterator[Arrival]:
    """The events of a Server-Sent Events body, as the reads that carry them arrive."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    buffer = ""
    for read, chunk in enumerate(chunks):
        at = clock()
        buffer = (buffer + decoder.decode(chunk)).replace("\r\n", "\n")
        *blocks, buffer = buffer.split("\n\n")
        for block in blocks:
            for name, data in read_events(iter([*block.split("\n"), ""])):
                yield Arrival(name, data, read, at)
    for name, data in read_events(iter(buffer.split("\n"))):
        yield Arrival(name, data, -1, clock())


def one_by_one(deltas: list[Arrival]) -> str:
    """How the deltas arrived; CheckFailed when they came in one block, as a buffering proxy or
    front end delivers them (the answer would appear all at once, at its end)."""
    reads = len({delta.read for delta in deltas})
    spread = deltas[-1].at - deltas[0].at
    if len(deltas) < MIN_DELTA_READS:
        raise CheckFailed(
            f"the answer came in {len(deltas)} delta(s): too few to tell whether the stream "
            "reaches the client piece by piece"
        )
    if reads < MIN_DELTA_READS:
        raise CheckFailed(
            f"the {len(deltas)} deltas arrived in {reads} read(s) of the response, all at once: "
            "something between the client and the function buffers the stream"
        )
    return f"in {reads} reads over {spread:.2f}s"


def compress(names: list[str]) -> str:
    """``session, delta x3, done`` rather than every delta."""
    parts: list[str] = []
    for name in names:
        if parts and parts[-1].split(" x")[0] == name:
            head, _, count = parts[-1].partition(" x")
            parts[-1] = f"{head} x{int(count or 1) + 1}"
        else:
            parts.append(name)
    return ", ".join(parts) or "empty"

"""Reading your own writes on any instance: the ``Parley-Consistency`` token.

Cosmos DB's Session consistency holds per client: an instance that did not make a write may
read from a replica that has not seen it yet. Each instance's SDK keeps its own session tokens,
so the server hands the client the tokens that cover what a response reflected, sealed and bound
to the caller (``shared/signing.py``), and the client sends them back with its next request,
whichever instance serves it (``docs/design.md``, "Consistency"; ``docs/http.md``).

- ``begin()`` gives each request (or operator command) a ``ReadTokens`` in a context variable;
  ``adopt()`` merges the caller's token into it, when it is genuine and the caller's.
- The Cosmos client's pipeline hooks (``request_hook``, ``response_hook``) merge those tokens
  into every read it sends (with the SDK's own: the highest LSN per partition key range wins)
  and record the session token of every response, reads and writes, failed writes included.
- ``seal_for()`` is the response's header value; ``None`` when there is nothing to seal within
  ``MAX_TOKEN_CHARS`` (the client keeps the value it had).

A token that is foreign, altered, malformed or oversized is ignored: the request runs as if it
had none. SQLite has no replicas: its responses carry the header too, holding no tokens.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from shared.signing import seal, unseal

HEADER = "Parley-Consistency"
PURPOSE = "consistency"
# The header's bound (the contract's 2 KB); a larger value, ours or a client's, is not used.
MAX_TOKEN_CHARS = 2048
# The HTTP header in which Cosmos answers and accepts session tokens.
SESSION_TOKEN_HEADER = "x-ms-session-token"  # noqa: S105 - a header name, not a secret

# A partition key range id, and a vector session token: version#globalLSN[#region=LSN...].
_RANGE = re.compile(r"^[0-9]{1,10}$")
_VECTOR = re.compile(r"^-?[0-9]{1,19}#[0-9]{1,19}(?:#[0-9]{1,10}=[0-9]{1,19})*$")
# A container's link in a request path: dbs/<db>/colls/<container>.
_CONTAINER_PATH = re.compile(r"^/?dbs/([^/]+)/colls/([^/]+)(/.*)?$")
_ITEMS_PATH = re.compile(r"^/docs(?:/[^/]+)?/?$")


def _vector_key(vector: str) -> tuple[int, int, dict[int, int]]:
    version, lsn, *regions = vector.split("#")
    return int(version), int(lsn), {int(r): int(v) for r, v in (p.split("=") for p in regions)}


def merge_vectors(first: str, second: str) -> str:
    """The session token that covers both: the higher version's, or with one version the
    higher global LSN and, per region, the higher local LSN (as the SDK merges them)."""
    v1, lsn1, regions1 = _vector_key(first)
    v2, lsn2, regions2 = _vector_key(second)
    if v1 != v2:
        return first if v1 > v2 else second
    regions = {r: max(regions1.get(r, 0), regions2.get(r, 0)) for r in {*regions1, *regions2}}
    parts = [str(v1), str(max(lsn1, lsn2)), *(f"{r}={regions[r]}" for r in sorted(regions))]
    return "#".join(parts)


def parse_session_token(raw: str) -> dict[str, str] | None:
    """``0:-1#42,1:-1#17`` as {range: vector}; None for anything else."""
    ranges: dict[str, str] = {}
    for pair in raw.split(","):
        range_id, colon, vector = pair.strip().partition(":")
        if not colon or not _RANGE.match(range_id) or not _VECTOR.match(vector):
            return None
        ranges[range_id] = merge_vectors(ranges[range_id], vector) if range_id in ranges else vector
    return ranges or None


def format_session_token(ranges: dict[str, str]) -> str:
    return ",".join(f"{range_id}:{ranges[range_id]}" for range_id in sorted(ranges))


def container_link(url: str) -> str | None:
    """``<database>/<container>`` of a request to a container's items, else None."""
    match = _CONTAINER_PATH.match(urlsplit(url).path)
    if not match:
        return None
    return f"{unquote(match.group(1))}/{unquote(match.group(2))}"


def _merge_into(ranges: dict[str, str], range_id: str, vector: str) -> None:
    ranges[range_id] = merge_vectors(ranges[range_id], vector) if range_id in ranges else vector


class ReadTokens:
    """The session tokens a request has been given and has seen, per container and range."""

    def __init__(self) -> None:
        self.by_container: dict[str, dict[str, str]] = {}

    def merge(self, container: str, raw: str) -> None:
        ranges = parse_session_token(raw)
        if ranges is None:
            return
        mine = self.by_container.setdefault(container, {})
        for range_id, vector in ranges.items():
            _merge_into(mine, range_id, vector)

    def header_for(self, container: str, own: str | None) -> str | None:
        """The session token a read of ``container`` sends: ours merged with the SDK's own."""
        mine = self.by_container.get(container)
        if not mine:
            return None
        merged = dict(mine)
        own_ranges = parse_session_token(own) if own else None
        for range_id, vector in (own_ranges or {}).items():
            _merge_into(merged, range_id, vector)
        return format_session_token(merged)

    def payload(self) -> dict[str, str]:
        return {c: format_session_token(r) for c, r in sorted(self.by_container.items()) if r}


_current: ContextVar[ReadTokens | None] = ContextVar("parley_read_tokens", default=None)


def begin() -> ReadTokens:
    """A fresh set of tokens for this request (or command): nothing of another leaks in."""
    tokens = ReadTokens()
    _current.set(tokens)
    return tokens


def current() -> ReadTokens | None:
    return _current.get()


def ensure() -> ReadTokens:
    """This context's tokens, begun here when nothing began them (an operator command)."""
    return current() or begin()


def adopt(key: str, owner: str, value: str | None) -> bool:
    """Merge the caller's token into this request's: only a token this server sealed for this
    caller counts; anything else is ignored. True when one was adopted."""
    tokens = current()
    if tokens is None or not value:
        return False
    payload = unseal(key, PURPOSE, owner, value, max_chars=MAX_TOKEN_CHARS)
    if not isinstance(payload, dict):
        return False
    valid = {
        container: raw
        for container, raw in payload.items()
        if isinstance(container, str)
        and isinstance(raw, str)
        and len(container) <= 512
        and parse_session_token(raw) is not None
    }
    if len(valid) != len(payload):
        return False
    for container, raw in valid.items():
        tokens.merge(container, raw)
    return True


def seal_for(key: str, owner: str) -> str | None:
    """The response's header value: every token this request was given or saw, sealed for the
    caller; None when it would exceed MAX_TOKEN_CHARS."""
    tokens = current()
    sealed = seal(key, PURPOSE, owner, tokens.payload() if tokens else {})
    return sealed if len(sealed) <= MAX_TOKEN_CHARS else None


# ---- the Cosmos client's pipeline hooks -------------------------------------------------------


def _is_read(request: Any) -> bool:
    """A point read, a feed read or a query of items: the requests a session token serves."""
    match = _CONTAINER_PATH.match(urlsplit(str(request.url)).path)
    if not match or not _ITEMS_PATH.match(match.group(3) or ""):
        return False
    if request.method == "GET":
        return True
    headers = request.headers
    is_query = str(headers.get("x-ms-documentdb-isquery", "")).lower() == "true"
    is_batch = str(headers.get("x-ms-cosmos-is-batch-request", "")).lower() == "true"
    return request.method == "POST" and is_query and not is_batch


def request_hook(pipeline_request: Any) -> None:
    """Before a read leaves: send the request's tokens for its container with the SDK's own."""
    tokens = current()
    if tokens is None or not tokens.by_container:
        return
    request = pipeline_request.http_request
    container = container_link(str(request.url))
    if container is None or not _is_read(request):
        return
    value = tokens.header_for(container, request.headers.get(SESSION_TOKEN_HEADER))
    if value:
        request.headers[SESSION_TOKEN_HEADER] = value


def response_hook(pipeline_response: Any) -> None:
    """After any response: record its session token (writes, failed writes and reads alike)."""
    tokens = current()
    if tokens is None:
        return
    raw = pipeline_response.http_response.headers.get(SESSION_TOKEN_HEADER)
    container = container_link(str(pipeline_response.http_request.url))
    if raw and container is not None:
        tokens.merge(container, raw)


# ---- a read that missed -----------------------------------------------------------------------


@runtime_checkable
class CatchesUp(Protocol):
    """A store whose reads may lag its writes (Cosmos). ``catch_up`` makes this context's next
    reads of the caller's partition see every write acknowledged before it; False when it could
    not (then only 503 is honest, never 404)."""

    async def catch_up(self, email: str) -> bool: ...


async def catch_up(store: object, email: str) -> bool:
    """Bring this context's reads of ``email``'s data up to date; True at once for a store
    whose reads never lag (SQLite)."""
    if not isinstance(store, CatchesUp):
        return True
    ensure()
    return await store.catch_up(email)

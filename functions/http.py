"""What every HTTP function shares: identity, JSON in, JSON out, errors, the request log.

Functions use the request and response types of the Functions HTTP streaming extension
(FastAPI's, i.e. Starlette's), so streaming and plain answers share one signature, in Azure
and in the local host alike.
"""

import json
import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, TypeVar

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from shared import consistency
from shared.audit import user_hash
from shared.auth import announce_auth_mode
from shared.consistency import CatchesUp
from shared.deadline import storage_budget
from shared.errors import (
    ApiError,
    Forbidden,
    InternalError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
)
from shared.ids import is_session_id
from shared.runtime import Runtime, get_runtime

log = logging.getLogger("parley.http")

# The functions import this module when the app loads: say now, not at the first request, that
# the service runs with dev identities (or with none at all).
announce_auth_mode()

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
# The most bytes one character of a message can take in a JSON body. MAX_MESSAGE_CHARS counts
# code points; a code point outside the BMP, escaped as a surrogate pair (``\ud83d\ude00``, what
# ``json.dumps`` sends by default), takes 12. Raw UTF-8 takes at most 4, any other escape
# (``\u0000``, ``\n``) at most 6.
MAX_BODY_BYTES_PER_CHAR = 12
# Room for the other fields (ids, keys, whitespace).
BODY_OVERHEAD_BYTES = 8 * 1024
# Not an HTTP status: the log's name (nginx's) for a request whose client went away first.
CLIENT_CLOSED_REQUEST = 499
SESSION_PARAM = "sessionId"
# Response headers a single-page app on another origin needs to read: when to retry (429, 503,
# a 202 of DELETE /api/sessions), an export's file name and the token that lets the next
# request read this one's writes on any instance.
EXPOSED_HEADERS = f"Retry-After, Content-Disposition, {consistency.HEADER}"

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(
        content=model.model_dump_json(by_alias=True),
        status_code=status,
        media_type=JSON_MEDIA_TYPE,
    )


def error_response(error: ApiError) -> Response:
    # 429 and 503 always carry one (shared/errors.py); other errors may name one too.
    seconds = error.retry_after_s
    headers = {"Retry-After": str(seconds)} if seconds else None
    return Response(
        content=json.dumps(error.body()),
        status_code=error.status,
        media_type=JSON_MEDIA_TYPE,
        headers=headers,
    )


def loggable_session_id(value: object) -> str | None:
    """A session id for the log, only when it has our shape: any other value is caller-chosen
    text (it could hold an email or a message) and never reaches the log."""
    return value if isinstance(value, str) and is_session_id(value) else None


@lru_cache(maxsize=32)
def route_pattern(template: str) -> re.Pattern[str]:
    """A function's route template (``sessions/{sessionId}``) as a pattern that matches the end
    of a request path, whatever the host's route prefix."""
    parts = re.split(r"\{(\w+)\}", template.strip("/"))
    # re.split alternates literal text and parameter names.
    body = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(rf"(?:^|/){body}/?$")


def route_values(request: Request, template: str) -> dict[str, str]:
    """The route parameters of a request, read from its path against the function's template.

    In Azure the HTTP streaming extension sends every request through one catch-all FastAPI
    route, so ``request.path_params`` holds only that route's ``path``, never the function's own
    parameters; reading them from the path works the same in Azure and in the local host.
    """
    match = route_pattern(template).search(str(request.url.path))
    return match.groupdict() if match else {}


def logged_route(request: Request, template: str) -> str:
    """The route as the log names it: the host's prefix and the function's template
    (``/api/sessions/{sessionId}``), never the caller-chosen text of the URL."""
    path = str(request.url.path)
    match = route_pattern(template).search(path)
    prefix = path[: match.start()] if match else ""
    return f"{prefix}/{template.strip('/')}"


def body_limit(max_message_chars: int) -> int:
    """The largest request body accepted: a message of ``max_message_chars`` fits however it is
    encoded; anything larger is refused before it is parsed."""
    return max_message_chars * MAX_BODY_BYTES_PER_CHAR + BODY_OVERHEAD_BYTES


def ensure_utf8(data: Any) -> None:
    """Lone surrogates (``"\\ud800"``) are valid JSON escapes but not text any store can keep:
    refuse them here as a bad request instead of failing later as a 500."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest("The body contains text that is not valid Unicode.") from None


class RequestContext:
    """What the request log line reports; filled in as the request goes."""

    def __init__(self, request: Request, route: str) -> None:
        self.request = request
        self.route = route
        self.route_values = route_values(request, route)
        self.runtime: Runtime = get_runtime()
        self.email: str | None = None
        # The verified sign-in's display name (its ``name`` claim), when it has one.
        self.name: str | None = None
        self._session_id: str | None = loggable_session_id(self.route_values.get(SESSION_PARAM))
        self.request_bytes = 0
        self._body: bytes | None = None  # kept: a request run again after a catch-up reads it again

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @session_id.setter
    def session_id(self, value: str | None) -> None:
        self._session_id = loggable_session_id(value)

    def query_limit(self, default: int, maximum: int) -> int:
        """``limit`` from the query: absent is ``default``; anything but 1..maximum is 400."""
        raw = self.request.query_params.get("limit")
        if raw is None:
            return default
        # isascii: str.isdigit() also accepts digits such as "²" that int() cannot parse.
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
            raise InvalidRequest(f"limit must be a whole number from 1 to {maximum}.")
        return int(raw)

    def query_count(self, name: str, maximum: int) -> int | None:
        """A whole-number query parameter from 1 to ``maximum`` (absent is None; else 400)."""
        raw = self.request.query_params.get(name)
        if raw is None:
            return None
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
            raise InvalidRequest(f"{name} must be a whole number from 1 to {maximum}.")
        return int(raw)

    def query_flag(self, name: str) -> bool:
        """A true/false query parameter (absent is false)."""
        raw = self.request.query_params.get(name)
        if raw is None or raw.lower() == "false":
            return False
        if raw.lower() == "true":
            return True
        raise InvalidRequest(f"{name} must be true or false.")

    def query_text(self, name: str) -> str | None:
        """A query parameter as given (empty counts as absent)."""
        return self.request.query_params.get(name) or None

    def path_value(self, name: str) -> str:
        """A route parameter other than the session id (whose shape the service checks)."""
        raw = self.route_values.get(name)
        if raw is None:
            raise NotFound()
        return raw

    def path_session_id(self) -> str:
        """The ``{sessionId}`` of the URL. Anything not of our id shape cannot exist: 404 here,
        before any storage call (and after the identity check, so it reveals nothing)."""
        raw = self.route_values.get(SESSION_PARAM)
        if raw is None or not is_session_id(raw):
            raise NotFound()
        return raw

    async def caller(self) -> str:
        """The verified caller's address, once it is theirs: 401 for no valid sign-in, 403
        when the address is bound to another account (``shared.identity``). Every endpoint
        asks this before reading or writing anything."""
        caller = await self.runtime.authenticator.caller_for(self.request.headers)
        self.email = caller.email  # the request line names the (hashed) user, refused or not
        self.name = caller.name
        email = await self.runtime.identities.admit(caller)
        # The caller's Parley-Consistency: ignored unless this server sealed it for this caller.
        consistency.adopt(
            self.runtime.settings.resolved_token_signing_key,
            email,
            self.request.headers.get(consistency.HEADER),
        )
        return email

    async def body(self, model: type[M]) -> M:
        """Parse the JSON body as ``model``: 415, 413 and 400 for what cannot be."""
        media_type = self.request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType()
        limit = body_limit(self.runtime.settings.max_message_chars)
        declared = self.request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge()
        if self._body is None:
            received = bytearray()
            async for chunk in self.request.stream():
                received += chunk
                # Counted as it arrives: a client that leaves half-way is logged with what it sent.
                self.request_bytes = len(received)
                if len(received) > limit:
                    raise PayloadTooLarge()
            self._body = bytes(received)
        raw = self._body
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: deeply nested arrays fit in the size limit but not in the parser.
            raise InvalidRequest("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise InvalidRequest("The body must be a JSON object.")
        ensure_utf8(data)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidRequest(f"{where}: {first['msg']}.") from None


Body = Callable[[RequestContext], Awaitable[Response]]


def http_function(bp: func.Blueprint, route: str, methods: list[str]) -> Callable[[Body], Any]:
    """Register ``fn`` on ``bp`` as the HTTP function for ``route`` and ``methods``, wrapped by
    ``endpoint``: one place names each route, for Azure's router and for ``route_values``."""

    def register(fn: Body) -> Any:
        return bp.route(route=route, methods=methods)(endpoint(fn, route))

    return register


def endpoint(fn: Body, route: str) -> Handler:
    """Wrap a function's body: API errors become the error object, a client gone before its
    body was read a 499 (in the log only), anything else a logged 500 that reveals nothing;
    one structured log line per request."""

    # The Functions worker binds the trigger to the parameter named ``req`` by its annotation,
    # so the wrapper must not expose the inner signature (no functools.wraps / __wrapped__).
    async def handler(req: Request) -> Response:
        started = time.perf_counter()
        ctx: RequestContext | None = None
        try:
            ctx = RequestContext(req, route)
            # What the request may spend on storage in all, SDK retries included (a hung or
            # throttled store is a 503 with Retry-After, never a request near the timeout).
            consistency.begin()
            with storage_budget(ctx.runtime.settings.store_timeout_s):
                response = await _run_caught_up(fn, ctx)
        except ApiError as error:
            response = error_response(error)
        except ClientDisconnect:
            # The client went away while its body was read: nobody is left to answer and nothing
            # failed on our side, so no error and no stack; the request line says 499.
            response = Response(status_code=CLIENT_CLOSED_REQUEST)
        except Exception as exc:
            _log_unhandled(fn.__name__, exc)
            response = error_response(InternalError())
        # Cross-origin pages may read these (the platform's CORS does not expose them).
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        # Never to a caller refused for an address bound to another account: it reads nothing.
        if ctx is not None and ctx.email is not None and response.status_code != Forbidden.status:
            token = consistency.seal_for(ctx.runtime.settings.resolved_token_signing_key, ctx.email)
            if token is not None:
                response.headers[consistency.HEADER] = token
        _log_request(req, route, ctx, response, started)
        return response

    handler.__name__ = handler.__qualname__ = fn.__name__
    handler.__doc__ = fn.__doc__
    handler.__module__ = fn.__module__
    return handler


async def _run_caught_up(fn: Body, ctx: RequestContext) -> Response:
    """Run ``fn``; a session of the caller's it did not find is looked for once more with
    reads that see every acknowledged write (``shared/consistency.py``): a replica behind
    another instance's writes never makes a session the caller just created a 404. When the
    store cannot promise that, 503 with Retry-After, never 404."""
    try:
        return await fn(ctx)
    except NotFound:
        store = ctx.runtime.store
        if ctx.email is None or ctx.session_id is None or not isinstance(store, CatchesUp):
            raise  # no storage was asked, or the store's reads never lag (SQLite)
        if not await store.catch_up(ctx.email):
            raise StorageUnavailable() from None
    return await fn(ctx)


def _log_unhandled(name: str, exc: BaseException) -> None:
    """The type and the stack of an unexpected error, without its message: messages of
    encoding, validation and driver errors quote the data (a user's text) they failed on."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    log.error("unhandled %s in %s\n%s", type(exc).__name__, name, stack.rstrip())


def _log_request(
    request: Request, route: str, ctx: RequestContext | None, response: Response, started: float
) -> None:
    fields: dict[str, Any] = {
        "route": logged_route(request, route),
        "method": request.method,
        "status": response.status_code,
        "durationMs": round((time.perf_counter() - started) * 1000, 2),
    }
    if ctx is not None:
        if ctx.session_id:
            fields["sessionId"] = ctx.session_id
        if ctx.email:
            fields["user"] = user_hash(ctx.email, ctx.runtime.settings.log_hash_salt)
        fields["requestBytes"] = ctx.request_bytes
    body = getattr(response, "body", None)
    if isinstance(body, bytes):
        fields["responseBytes"] = len(body)
    log.info("request %s", json.dumps(fields, separators=(",", ":")), extra={"parley": fields})

"""What every HTTP function shares: identity, JSON in, JSON out, errors, the request log.

Functions use the request and response types of the Functions HTTP streaming extension
(FastAPI's, i.e. Starlette's), so streaming and plain answers share one signature, in Azure
and in the local host alike.
"""

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from azurefunctions.extensions.http.fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from shared.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from shared.runtime import Runtime, get_runtime

log = logging.getLogger("parley.http")

JSON_MEDIA_TYPE = "application/json; charset=utf-8"
# Room for a maximal message (4 bytes per character in UTF-8, more when JSON-escaped) and the
# other fields; anything larger is refused before it is parsed.
BODY_OVERHEAD_BYTES = 8 * 1024

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


def json_response(model: BaseModel, status: int = 200) -> Response:
    return Response(
        content=model.model_dump_json(by_alias=True),
        status_code=status,
        media_type=JSON_MEDIA_TYPE,
    )


def error_body(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message}}


def error_response(error: ApiError) -> Response:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s else None
    return Response(
        content=json.dumps(error_body(error)),
        status_code=error.status,
        media_type=JSON_MEDIA_TYPE,
        headers=headers,
    )


def email_hash(email: str, salt: str) -> str:
    """A salted hash that lets logs follow one user without ever holding the address."""
    return hashlib.sha256(f"{salt}:{email}".encode()).hexdigest()[:16]


class RequestContext:
    """What the request log line reports; filled in as the request goes."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.runtime: Runtime = get_runtime()
        self.email: str | None = None
        self.session_id: str | None = request.path_params.get("sessionId")
        self.request_bytes = 0

    async def caller(self) -> str:
        self.email = await self.runtime.authenticator.email_for(self.request.headers)
        return self.email

    async def body(self, model: type[M]) -> M:
        """Parse the JSON body as ``model``: 415, 413 and 400 for what cannot be."""
        media_type = self.request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType()
        limit = self.runtime.settings.max_message_chars * 6 + BODY_OVERHEAD_BYTES
        declared = self.request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge()
        raw = bytearray()
        async for chunk in self.request.stream():
            raw += chunk
            if len(raw) > limit:
                raise PayloadTooLarge()
        self.request_bytes = len(raw)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise InvalidRequest("The body must be a JSON object.")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidRequest(f"{where}: {first['msg']}.") from None


def endpoint(fn: Callable[[RequestContext], Awaitable[Response]]) -> Handler:
    """Wrap a function's body: API errors become the error object, anything else a logged 500
    that reveals nothing; one structured log line per request."""

    # The Functions worker binds the trigger to the parameter named ``req`` by its annotation,
    # so the wrapper must not expose the inner signature (no functools.wraps / __wrapped__).
    async def handler(req: Request) -> Response:
        started = time.perf_counter()
        ctx: RequestContext | None = None
        try:
            ctx = RequestContext(req)
            response = await fn(ctx)
        except ApiError as error:
            response = error_response(error)
        except Exception:
            log.exception("unhandled error in %s", fn.__name__)
            response = error_response(InternalError())
        _log_request(req, ctx, response, started)
        return response

    handler.__name__ = handler.__qualname__ = fn.__name__
    handler.__doc__ = fn.__doc__
    handler.__module__ = fn.__module__
    return handler


def _log_request(
    request: Request, ctx: RequestContext | None, response: Response, started: float
) -> None:
    fields: dict[str, Any] = {
        "route": request.url.path,
        "method": request.method,
        "status": response.status_code,
        "durationMs": round((time.perf_counter() - started) * 1000, 2),
    }
    if ctx is not None:
        if ctx.session_id:
            fields["sessionId"] = ctx.session_id
        if ctx.email:
            fields["user"] = email_hash(ctx.email, ctx.runtime.settings.log_hash_salt)
        fields["requestBytes"] = ctx.request_bytes
    body = getattr(response, "body", None)
    if isinstance(body, bytes):
        fields["responseBytes"] = len(body)
    log.info("request %s", json.dumps(fields, separators=(",", ":")), extra={"parley": fields})

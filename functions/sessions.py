"""GET /api/sessions, GET /api/sessions/{sessionId}, DELETE /api/sessions/{sessionId}."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.errors import InvalidRequest
from shared.service import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure.functions lacks the hint


def parse_limit(raw: str | None) -> int:
    """``limit`` from the query: absent is the default; anything but 1..100 is 400."""
    if raw is None:
        return LIST_LIMIT_DEFAULT
    # isascii: str.isdigit() also accepts digits such as "²" that int() cannot parse.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= LIST_LIMIT_MAX:
        raise InvalidRequest(f"limit must be a whole number from 1 to {LIST_LIMIT_MAX}.")
    return int(raw)


def parse_flag(name: str, raw: str | None) -> bool:
    if raw is None or raw.lower() == "false":
        return False
    if raw.lower() == "true":
        return True
    raise InvalidRequest(f"{name} must be true or false.")


@http_function(bp, "sessions", ["GET"])
async def list_sessions(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    query = ctx.request.query_params
    listing = await ctx.runtime.service.list_sessions(
        email,
        limit=parse_limit(query.get("limit")),
        continuation=query.get("continuationToken") or None,
        archived=parse_flag("archived", query.get("archived")),
    )
    return json_response(listing)


@http_function(bp, "sessions/{sessionId}", ["GET"])
async def get_session(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    detail = await ctx.runtime.service.get_session(email, ctx.path_session_id())
    return json_response(detail)


@http_function(bp, "sessions/{sessionId}", ["DELETE"])
async def delete_session(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    await ctx.runtime.service.delete_session(email, ctx.path_session_id())
    return Response(status_code=204)

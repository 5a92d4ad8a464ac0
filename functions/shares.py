"""Sharing a conversation: share, list, revoke, read, the view log, continue."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.models import ShareCreateRequest
from shared.sharing import SHARES_LIMIT_DEFAULT, SHARES_LIMIT_MAX

bp = func.Blueprint()

SHARE_PARAM = "shareId"


@http_function(bp, "sessions/{sessionId}/shares", ["POST"])
async def create_share(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    request = await ctx.body(ShareCreateRequest)
    share = await ctx.runtime.shares.create(email, session_id, request)
    return json_response(share, status=201)


@http_function(bp, "shares", ["GET"])
async def list_shares(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    listing = await ctx.runtime.shares.list(
        email,
        limit=ctx.query_limit(SHARES_LIMIT_DEFAULT, SHARES_LIMIT_MAX),
        continuation=ctx.query_text("continuationToken"),
    )
    return json_response(listing)


@http_function(bp, "shares/{shareId}", ["DELETE"])
async def revoke_share(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    await ctx.runtime.shares.revoke(email, ctx.path_value(SHARE_PARAM))
    return Response(status_code=204)


@http_function(bp, "shares/{shareId}", ["GET"])
async def read_share(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    shared = await ctx.runtime.shares.read(email, ctx.path_value(SHARE_PARAM))
    return json_response(shared)


@http_function(bp, "shares/{shareId}/views", ["GET"])
async def share_views(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    views = await ctx.runtime.shares.views(email, ctx.path_value(SHARE_PARAM))
    return json_response(views)


@http_function(bp, "shares/{shareId}/continue", ["POST"])
async def continue_share(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    summary = await ctx.runtime.shares.continue_share(email, ctx.path_value(SHARE_PARAM))
    ctx.session_id = summary.session_id
    return json_response(summary, status=201)

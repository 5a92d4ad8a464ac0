"""GET /api/search: the caller's conversations that hold the words of a phrase."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.search import SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX, order_of, scope_of

bp = func.Blueprint()


@http_function(bp, "search", ["GET"])
async def search(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    results = await ctx.runtime.service.search(
        email,
        ctx.query_text("q"),
        limit=ctx.query_limit(SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX),
        continuation=ctx.query_text("continuationToken"),
        archived=scope_of(ctx.query_text("archived")),
        order=order_of(ctx.query_text("order")),
    )
    return json_response(results)

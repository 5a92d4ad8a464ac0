"""GET /api/usage: what the caller's model calls cost today and this month, and the limits;
with ``days``, also each of the last ``days`` UTC days (the "your activity" view)."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.usage import HISTORY_MAX_DAYS

bp = func.Blueprint()


@http_function(bp, "usage", ["GET"])
async def usage(ctx: RequestContext) -> Response:
    days = ctx.query_count("days", HISTORY_MAX_DAYS)
    email = await ctx.caller()
    report = await ctx.runtime.service.usage_report(email, days=days)
    response = json_response(report)
    # It changes with every turn: a cached copy would show an old figure.
    response.headers["Cache-Control"] = "no-store"
    return response

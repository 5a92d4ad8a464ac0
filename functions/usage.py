"""GET /api/usage: what the caller's model calls cost today and this month, and the limits."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response

bp = func.Blueprint()


@http_function(bp, "usage", ["GET"])
async def usage(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    report = await ctx.runtime.service.usage_report(email)
    response = json_response(report)
    # It changes with every turn: a cached copy would show an old figure.
    response.headers["Cache-Control"] = "no-store"
    return response

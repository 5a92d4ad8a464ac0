"""GET /api/realtime/negotiate: a WebSocket URL of the real-time service for the caller.

The URL admits the caller's own opaque Web PubSub user id (never the address) and no role: the
client can join no group by itself. ``POST /api/realtime/join`` (``functions/groups.py``) then
adds its connections to the groups of the caller's Parley groups. See ``docs/http.md``.
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.clock import iso
from shared.errors import RealtimeUnavailableError
from shared.models import RealtimeAccess
from shared.realtime import CLIENT_URL_TTL_S, RealtimeUnavailable, user_id_for

bp = func.Blueprint()


@http_function(bp, "realtime/negotiate", ["GET"])
async def negotiate(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    user_id = user_id_for(ctx.runtime.settings, email)
    try:
        url, expires_at = await ctx.runtime.realtime.client_url(
            user_id, expires_in_s=CLIENT_URL_TTL_S
        )
    except RealtimeUnavailable:
        # Off, or unreachable: the client polls ?after= meanwhile and negotiates again later.
        raise RealtimeUnavailableError() from None
    response = json_response(RealtimeAccess(url=url, expires_at=iso(expires_at)))
    # The URL carries a token: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response

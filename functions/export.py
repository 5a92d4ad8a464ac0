"""GET /api/export: everything of the caller as one JSON document, streamed."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response, StreamingResponse

from functions.http import JSON_MEDIA_TYPE, RequestContext, http_function

bp = func.Blueprint()


@http_function(bp, "export", ["GET"])
async def export(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    runtime = ctx.runtime
    now = runtime.clock.now()
    document = runtime.service.export(email, now=now)
    filename = f"parley-export-{now:%Y%m%d-%H%M%S}.json"
    return StreamingResponse(
        document,
        media_type=JSON_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )

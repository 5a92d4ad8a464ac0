"""GET /api/export?format=json|markdown|csv: everything of the caller, streamed."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response, StreamingResponse

from functions.http import RequestContext, http_function
from shared.export_formats import FORMATS, parse_format

bp = func.Blueprint()


@http_function(bp, "export", ["GET"])
async def export(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    export_format = parse_format(ctx.query_text("format"))
    runtime = ctx.runtime
    now = runtime.clock.now()
    document = runtime.service.export_as(email, export_format, now=now)
    info = FORMATS[export_format]
    filename = f"parley-export-{now:%Y%m%d-%H%M%S}.{info.extension}"
    return StreamingResponse(
        document,
        media_type=info.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )

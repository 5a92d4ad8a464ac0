"""POST /api/import: a ChatGPT or Parley export into the caller's conversations."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.errors import PayloadTooLarge, UnsupportedMediaType
from shared.importer import JSON_MEDIA_TYPE, ZIP_MEDIA_TYPE

bp = func.Blueprint()

MEDIA_TYPES = (JSON_MEDIA_TYPE, ZIP_MEDIA_TYPE)


@http_function(bp, "import", ["POST"])
async def import_conversations(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = ctx.request
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType("Send the file as application/json or application/zip.")
    limit = ctx.runtime.settings.import_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The file is larger than {limit} bytes.")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        ctx.request_bytes = len(data)
        if len(data) > limit:
            raise PayloadTooLarge(f"The file is larger than {limit} bytes.")
    report = await ctx.runtime.service.import_conversations(email, data, media_type)
    return json_response(report)

"""GET /api/health: liveness, no identity needed, touches no storage."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from functions.http import json_response
from shared.models import HealthResponse

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"])
async def health(req: Request) -> Response:
    return json_response(HealthResponse(status="ok"))

"""POST /api/chat: one turn of a conversation, as JSON or as Server-Sent Events."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

from functions.http import RequestContext, http_function, json_response
from shared.errors import ApiError, InternalError
from shared.models import ChatRequest
from shared.turns import Turn

bp = func.Blueprint()
log = logging.getLogger("parley.chat")


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "").lower()


async def event_stream(turn: Turn) -> AsyncIterator[str]:
    yield sse("session", {"sessionId": turn.session_id, "title": turn.title})
    try:
        async for piece in turn.deltas():
            yield sse("delta", {"content": piece})
            # Queued pieces come without a pause and the server writes without one, so a backlog
            # would go out in one step of the event loop: the server could not learn in between
            # that the client has gone, and each write to the lost connection would log
            # "socket.send() raised exception.". A step per event lets it see the disconnect
            # and stop the stream; the turn's own task still stores the answer.
            await asyncio.sleep(0)
        # A new session's model-written title, once stored (bounded by TITLE_TIMEOUT_S).
        if (title := await turn.model_title()) is not None:
            yield sse("title", {"title": title})
        result = await turn.result()
    except ApiError as error:
        yield sse("error", error.body())
        return
    except Exception as exc:
        # The type only: an exception's message may quote the conversation.
        log.error("stream_failed %s", type(exc).__name__, extra={"session_id": turn.session_id})
        yield sse("error", InternalError().body())
        return
    messages = [m.model_dump(by_alias=True) for m in (result.user, result.assistant)]
    yield sse("done", {"messages": messages})


@http_function(bp, "chat", ["POST"])
async def chat(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = await ctx.body(ChatRequest)
    ctx.session_id = request.session_id
    turn = await ctx.runtime.service.begin_turn(email, request)
    ctx.session_id = turn.session_id
    if wants_stream(ctx.request):
        return StreamingResponse(
            event_stream(turn),
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await turn.result()
    return json_response(result.to_response())


__all__ = ["bp", "chat"]

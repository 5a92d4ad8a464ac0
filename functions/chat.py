"""POST /api/chat: one turn of a conversation, as JSON or as Server-Sent Events; POST
/api/sessions/{sessionId}/regenerate, a turn without a new question, answered the same ways; and
the answer being generated in a session, followed from any instance (GET .../stream) or stopped
(POST .../stop), through the store (docs/http.md, "Answers as they grow")."""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from functions.http import RequestContext, http_function, json_response
from shared.answers import Ended, Followed, Grew, Resumed
from shared.config import Settings
from shared.errors import ApiError, InternalError
from shared.models import ChatRequest, RegenerateRequest
from shared.time_limits import turn_budget_s
from shared.turns import Turn

bp = func.Blueprint()
log = logging.getLogger("parley.chat")


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


# An SSE comment line: clients ignore it (docs/http.md, "Streaming"); it keeps the connection
# from looking idle while the model is silent.
KEEPALIVE = ": keep-alive\n\n"


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
    messages = [m.model_dump(by_alias=True) for m in result.messages]
    yield sse("done", {"messages": messages})


async def with_keepalive(events: AsyncIterator[str], interval_s: float) -> AsyncIterator[str]:
    """``events`` as they come, with ``KEEPALIVE`` whenever none came for ``interval_s``.

    The next event is awaited in a task of its own that a keep-alive does not disturb (waiting
    on it with a timeout that cancelled it could lose a piece of the answer)."""
    source = aiter(events)
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
                # Seen even when nobody reads it any more (the client gone): the stream's end
                # (StopAsyncIteration) is not an error to report.
                pending.add_done_callback(_retrieved)
            done, _ = await asyncio.wait({pending}, timeout=interval_s)
            if not done:
                yield KEEPALIVE
                continue
            finished, pending = pending, None
            try:
                event = finished.result()
            except StopAsyncIteration:
                return
            yield event
    finally:
        if pending is not None:
            pending.cancel()


def _retrieved(task: asyncio.Future[str]) -> None:
    if not task.cancelled():
        task.exception()


class AnswerStream(StreamingResponse):
    """An answer's events, and an invocation that ends only once the answer is stored.

    In Azure an invocation ends when its function's response has ended (the host waits for the
    worker's result and for the proxied response); an instance may be shut down as soon as
    none is running. A client that hangs up ends the stream early, but the answer is still
    being written by a task the host does not see: the response waits for it (bounded by the
    turn's own time budget, within the 230 s of an HTTP answer), the client gone or not. A
    chat turn, a regenerate and a group question all answer through this one class.
    """

    def __init__(
        self,
        events: AsyncIterator[str],
        finish: Callable[[float], Awaitable[bool]],
        settings: Settings,
        *,
        unfinished: Callable[[], None],
    ) -> None:
        super().__init__(
            with_keepalive(events, settings.sse_keepalive_s),
            media_type="text/event-stream; charset=utf-8",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.finish = finish
        self.unfinished = unfinished
        # The turn's whole budget, counted from now (the question is stored already): a wait
        # after a hang-up never takes the invocation past it.
        self.finish_by = time.monotonic() + turn_budget_s(
            llm_timeout_s=settings.llm_timeout_s,
            llm_max_retries=settings.llm_max_retries,
            store_timeout_s=settings.store_timeout_s,
            title_timeout_s=settings.title_timeout_s,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The wait is here, not in the event generator: on a hang-up Starlette (whose
        # StreamingResponse the extension's is) cancels the task that drives the generator,
        # which may leave it suspended at a ``yield`` and never resumed; this call is what the
        # server (the worker's, or the local host's) awaits to the end.
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: a hang-up cancels the stream's scope, not this wait.
            with anyio.CancelScope(shield=True):
                if not await self.finish(max(self.finish_by - time.monotonic(), 0.0)):
                    self.unfinished()


def turn_stream(turn: Turn, settings: Settings) -> AnswerStream:
    """A chat turn's (or a regenerate's) events: session, deltas, title, done."""

    def unfinished() -> None:
        log.error("answer_unfinished", extra={"session_id": turn.session_id})

    return AnswerStream(event_stream(turn), turn.finish, settings, unfinished=unfinished)


@http_function(bp, "chat", ["POST"])
async def chat(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = await ctx.body(ChatRequest)
    ctx.session_id = request.session_id
    turn = await ctx.runtime.turns.chat.begin_turn(email, request)
    ctx.session_id = turn.session_id
    if wants_stream(ctx.request):
        return turn_stream(turn, ctx.runtime.settings)
    result = await turn.result()
    return json_response(result.to_response())


@http_function(bp, "sessions/{sessionId}/regenerate", ["POST"])
async def regenerate(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    headers = ctx.request.headers
    # The body is optional (only a clientMessageId): none at all is an empty request.
    empty = "content-type" not in headers and headers.get("content-length", "0") == "0"
    request = RegenerateRequest() if empty else await ctx.body(RegenerateRequest)
    turn = await ctx.runtime.turns.regenerating.begin_regenerate(email, session_id, request)
    if wants_stream(ctx.request):
        return turn_stream(turn, ctx.runtime.settings)
    result = await turn.result()
    return json_response(result.to_response())


def followed_event(event: Followed) -> str:
    """One event of a followed answer, as the SSE the client reads."""
    if isinstance(event, Resumed):
        return sse("resume", {"message": event.message.to_api().model_dump(by_alias=True)})
    if isinstance(event, Grew):
        return sse("delta", {"content": event.content})
    ended = [event.message.to_api().model_dump(by_alias=True)] if event.message else []
    return sse("done", {"messages": ended})


async def follow_stream(first: Followed, rest: AsyncIterator[Followed]) -> AsyncIterator[str]:
    yield followed_event(first)
    if isinstance(first, Ended):
        return
    try:
        async for event in rest:
            yield followed_event(event)
    except ApiError as error:
        yield sse("error", error.body())
    except Exception as exc:
        log.error("follow_failed %s", type(exc).__name__)
        yield sse("error", InternalError().body())


@http_function(bp, "sessions/{sessionId}/stream", ["GET"])
async def follow_answer(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    ctx.session_id = ctx.path_session_id()
    events = aiter(ctx.runtime.turns.answers.follow_answer(email, ctx.session_id))
    # The first event is read here: a session that is not the caller's is a 404 response,
    # not an event. The rest ends with the answer, within a turn's own time budget (the
    # service bounds it: shared/time_limits.py), with keep-alives like a turn's stream.
    first = await anext(events)
    return StreamingResponse(
        with_keepalive(follow_stream(first, events), ctx.runtime.settings.sse_keepalive_s),
        media_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@http_function(bp, "sessions/{sessionId}/stop", ["POST"])
async def stop_answer(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    ctx.session_id = ctx.path_session_id()
    asked = await ctx.runtime.turns.answers.stop_answer(email, ctx.session_id)
    return Response(status_code=202 if asked else 204)


__all__ = ["bp", "chat", "follow_answer", "regenerate", "stop_answer"]

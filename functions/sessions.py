"""Sessions and their messages: list, read, page, rename, rate, delete one, delete all, an
answer's versions, a branch."""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.http import RequestContext, http_function, json_response
from shared.models import EraseProgress, FeedbackRequest, ForkRequest, RenameRequest
from shared.service import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MESSAGES_LIMIT_DEFAULT,
    MESSAGES_LIMIT_MAX,
)

bp = func.Blueprint()

MESSAGE_PARAM = "messageId"
# DELETE /api/sessions answers 202 when its time ran out: the client asks again this soon.
ERASE_RETRY_AFTER_S = 1


@http_function(bp, "sessions", ["GET"])
async def list_sessions(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    listing = await ctx.runtime.service.list_sessions(
        email,
        limit=ctx.query_limit(LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX),
        continuation=ctx.query_text("continuationToken"),
        archived=ctx.query_flag("archived"),
    )
    return json_response(listing)


@http_function(bp, "sessions", ["DELETE"])
async def delete_all_sessions(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    runtime = ctx.runtime
    done = await runtime.service.erase_everything(
        email, budget_s=runtime.settings.erase_time_budget_s
    )
    if done:
        return Response(status_code=204)
    response = json_response(EraseProgress(remaining=True), status=202)
    response.headers["Retry-After"] = str(ERASE_RETRY_AFTER_S)
    return response


@http_function(bp, "sessions/{sessionId}", ["GET"])
async def get_session(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    detail = await ctx.runtime.service.get_session(email, ctx.path_session_id())
    return json_response(detail)


@http_function(bp, "sessions/{sessionId}", ["PATCH"])
async def rename_session(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    request = await ctx.body(RenameRequest)
    summary = await ctx.runtime.service.update_session(
        email, session_id, title=request.title, pinned=request.pinned
    )
    return json_response(summary)


@http_function(bp, "sessions/{sessionId}", ["DELETE"])
async def delete_session(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    await ctx.runtime.service.delete_session(email, ctx.path_session_id())
    return Response(status_code=204)


@http_function(bp, "sessions/{sessionId}/messages", ["GET"])
async def page_messages(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    page = await ctx.runtime.service.page_messages(
        email,
        ctx.path_session_id(),
        before=ctx.query_text("before"),
        limit=ctx.query_limit(MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX),
    )
    return json_response(page)


@http_function(bp, "sessions/{sessionId}/messages/{messageId}/feedback", ["PUT"])
async def set_feedback(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    request = await ctx.body(FeedbackRequest)
    message = await ctx.runtime.service.set_feedback(
        email, session_id, ctx.path_value(MESSAGE_PARAM), request
    )
    assert message is not None
    return json_response(message)


@http_function(bp, "sessions/{sessionId}/messages/{messageId}/feedback", ["DELETE"])
async def clear_feedback(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    await ctx.runtime.service.set_feedback(email, session_id, ctx.path_value(MESSAGE_PARAM), None)
    return Response(status_code=204)


@http_function(bp, "sessions/{sessionId}/messages/{messageId}/versions", ["GET"])
async def message_versions(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    versions = await ctx.runtime.turns.regenerating.message_versions(
        email, session_id, ctx.path_value(MESSAGE_PARAM)
    )
    return json_response(versions)


@http_function(bp, "sessions/{sessionId}/fork", ["POST"])
async def fork_session(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    session_id = ctx.path_session_id()
    request = await ctx.body(ForkRequest)
    summary = await ctx.runtime.service.fork(email, session_id, request.message_id)
    return json_response(summary, status=201)

"""Group conversations: create, list, read, rename, delete, members, messages (JSON or, when
asking the assistant, Server-Sent Events), and joining the caller's real-time channels."""

import asyncio
import logging
from collections.abc import AsyncIterator

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Response

from functions.chat import AnswerStream, sse, wants_stream
from functions.http import RequestContext, http_function, json_response
from shared.config import Settings
from shared.errors import ApiError, InternalError, InvalidRequest, RealtimeUnavailableError
from shared.groups.ask import GroupSend
from shared.groups.models import (
    GroupCreateRequest,
    GroupMessages,
    GroupRenameRequest,
    GroupSendRequest,
    MemberAddRequest,
)
from shared.groups.service import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    MESSAGES_LIMIT_DEFAULT,
    MESSAGES_LIMIT_MAX,
)
from shared.realtime import RealtimeUnavailable

bp = func.Blueprint()
log = logging.getLogger("parley.groups")

GROUP_PARAM, MEMBER_PARAM = "groupId", "email"
# ``after`` is a seq: 0 (everything) up to any seq a group can reach.
MAX_SEQ = 2**53 - 1


@http_function(bp, "groups", ["POST"])
async def create_group(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = await ctx.body(GroupCreateRequest)
    group = await ctx.runtime.groups.create(email, ctx.name, request)
    return json_response(group, status=201)


@http_function(bp, "groups", ["GET"])
async def list_groups(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    listing = await ctx.runtime.groups.list_groups(
        email,
        limit=ctx.query_limit(LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX),
        continuation=ctx.query_text("continuationToken"),
    )
    return json_response(listing)


@http_function(bp, "groups/{groupId}", ["GET"])
async def get_group(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    group = await ctx.runtime.groups.get(email, ctx.path_value(GROUP_PARAM))
    return json_response(group)


@http_function(bp, "groups/{groupId}", ["PATCH"])
async def rename_group(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = await ctx.body(GroupRenameRequest)
    summary = await ctx.runtime.groups.rename(email, ctx.path_value(GROUP_PARAM), request.name)
    return json_response(summary)


@http_function(bp, "groups/{groupId}", ["DELETE"])
async def delete_group(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    await ctx.runtime.groups.delete(email, ctx.path_value(GROUP_PARAM))
    return Response(status_code=204)


@http_function(bp, "groups/{groupId}/members", ["POST"])
async def add_group_member(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = await ctx.body(MemberAddRequest)
    group = await ctx.runtime.groups.add_member(email, ctx.path_value(GROUP_PARAM), request)
    return json_response(group)


@http_function(bp, "groups/{groupId}/members/{email}", ["DELETE"])
async def remove_group_member(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    await ctx.runtime.groups.remove_member(
        email, ctx.path_value(GROUP_PARAM), ctx.path_value(MEMBER_PARAM)
    )
    return Response(status_code=204)


@http_function(bp, "groups/{groupId}/messages", ["GET"])
async def group_messages(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    raw_after = ctx.request.query_params.get("after")
    after = None
    if raw_after is not None:
        if not (raw_after.isascii() and raw_after.isdigit()) or int(raw_after) > MAX_SEQ:
            raise InvalidRequest("after must be a seq (a whole number).")
        after = int(raw_after)
    page = await ctx.runtime.groups.page_messages(
        email,
        ctx.path_value(GROUP_PARAM),
        limit=ctx.query_limit(MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX),
        after=after,
        before=ctx.query_text("before"),
    )
    return json_response(page)


@http_function(bp, "groups/{groupId}/messages", ["POST"])
async def send_group_message(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    request = await ctx.body(GroupSendRequest)
    sent = await ctx.runtime.groups.send(email, ctx.name, ctx.path_value(GROUP_PARAM), request)
    if sent.asks and wants_stream(ctx.request):
        return ask_stream(sent, ctx.runtime.settings)
    messages = await sent.result()
    return json_response(GroupMessages(messages=[m.to_api() for m in messages]), status=201)


@http_function(bp, "realtime/join", ["POST"])
async def realtime_join(ctx: RequestContext) -> Response:
    email = await ctx.caller()
    try:
        await ctx.runtime.groups.join(email)
    except RealtimeUnavailable:
        raise RealtimeUnavailableError() from None
    return Response(status_code=204)


async def ask_events(sent: GroupSend) -> AsyncIterator[str]:
    yield sse("message", {"message": sent.user.to_api().model_dump(by_alias=True)})
    try:
        async for piece in sent.deltas():
            yield sse("delta", {"content": piece})
            await asyncio.sleep(0)  # a step per event: a gone client is noticed (functions/chat.py)
        messages = await sent.result()
    except ApiError as error:
        yield sse("error", error.body())
        return
    except Exception as exc:
        log.error("group_stream_failed %s", type(exc).__name__, extra={"group_id": sent.group_id})
        yield sse("error", InternalError().body())
        return
    yield sse("done", {"messages": [m.to_api().model_dump(by_alias=True) for m in messages]})


def ask_stream(sent: GroupSend, settings: Settings) -> AnswerStream:
    """A group question's events: the stored message, deltas, done."""

    def unfinished() -> None:
        log.error("group_answer_unfinished", extra={"group_id": sent.group_id})

    return AnswerStream(ask_events(sent), sent.finish, settings, unfinished=unfinished)


__all__ = ["bp"]

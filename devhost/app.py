"""The ASGI application of the local host, built from ``function_app``'s registrations."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from devhost.schedule import Timer, TimerRunner, resolve_schedule, settings_environ
from shared import consistency
from shared.clock import Clock, OffsetClock, iso
from shared.errors import InvalidRequest, NotFound

log = logging.getLogger("parley.devhost")
ROOT = Path(__file__).resolve().parent.parent


def route_prefix(host_json: Path = ROOT / "host.json") -> str:
    """The route prefix Azure uses, from host.json (``api`` when unset)."""
    config: dict[str, Any] = json.loads(host_json.read_text()) if host_json.exists() else {}
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


class Invocations:
    """The function invocations in flight, as the Functions host counts them.

    In Azure an HTTP invocation ends when the worker has returned the function's result *and*
    the host has finished proxying its response (the host's ``EnsureSuccessfulForwardingAsync``,
    awaited before the invocation's result is set); scale-in and deployments wait only for
    invocations. So here an invocation runs from the request until the function's response has
    ended, whatever the client does meanwhile, and nothing else is waited for: work a function
    leaves behind in tasks of its own is as invisible to this host as it is to Azure's.
    """

    def __init__(self) -> None:
        self._running: dict[int, dict[str, Any]] = {}
        self._changed = asyncio.Condition()

    async def _update(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @asynccontextmanager
    async def running(self, function: str) -> AsyncIterator[dict[str, Any]]:
        state: dict[str, Any] = {"function": function, "clientGone": False}
        self._running[id(state)] = state
        try:
            yield state
        finally:
            del self._running[id(state)]
            await self._update()

    def snapshot(self) -> list[dict[str, Any]]:
        return [dict(state) for state in self._running.values()]

    async def idle(self) -> None:
        """Return once no invocation is in flight (new ones included)."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._running)


class FunctionEndpoint:
    """One HTTP function as an ASGI app: its response is sent inside the invocation."""

    def __init__(
        self, name: str, user_function: Callable[..., Any], invocations: Invocations
    ) -> None:
        self.name = name
        self.user_function = user_function
        self.invocations = invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.invocations.running(self.name) as state:

            async def watched() -> Message:
                message = await receive()
                if message["type"] == "http.disconnect":
                    state["clientGone"] = True
                return message

            # As in Azure, where the HTTP streaming extension routes every request through one
            # catch-all FastAPI route: the function sees that route's ``path``, not its own
            # route parameters (it reads them from the URL against its template).
            scope["path_params"] = {"path": str(scope["path"]).lstrip("/")}
            request = Request(scope, watched, send)
            response: Response = await self.user_function(request)
            await response(scope, watched, send)


def http_routes(
    functions: list[func.Function], prefix: str, invocations: Invocations | None = None
) -> list[Route]:
    invocations = invocations or Invocations()
    routes: list[Route] = []
    seen: set[tuple[str, str]] = set()
    for function in functions:
        for binding in function.get_bindings():
            if binding.type != "httpTrigger":
                continue
            route = str(getattr(binding, "route", None) or function.get_function_name())
            path = "/" + "/".join(p for p in (prefix, route.strip("/")) if p)
            declared = getattr(binding, "methods", None) or []
            methods = [str(getattr(m, "value", m)).upper() for m in declared]
            methods = methods or ["GET", "POST", "PUT", "PATCH", "DELETE"]
            for method in methods:
                if (path, method) in seen:
                    raise ValueError(f"{method} {path} is registered twice")
                seen.add((path, method))
            routes.append(
                Route(
                    path,
                    FunctionEndpoint(
                        str(function.get_function_name()), function.get_user_function(), invocations
                    ),
                    methods=methods,
                    name=function.get_function_name(),
                )
            )
    return routes


def timers(functions: list[func.Function], environ: dict[str, str]) -> list[Timer]:
    found: list[Timer] = []
    for function in functions:
        for binding in function.get_bindings():
            if binding.type == "timerTrigger":
                found.append(
                    Timer(
                        name=str(function.get_function_name()),
                        expression=resolve_schedule(str(getattr(binding, "schedule", "")), environ),
                        function=function.get_user_function(),
                        arg_name=str(binding.name),
                    )
                )
    return found


async def not_found(request: Request, exc: Exception) -> Response:
    body = NotFound("No such endpoint.").body()
    return JSONResponse(body, status_code=404)


def static_routes() -> list[BaseRoute]:
    """The API's OpenAPI document and the reference web client, when they exist."""
    routes: list[BaseRoute] = []
    spec = ROOT / "openapi.yaml"
    if spec.exists():

        async def openapi(_: Request) -> Response:
            return FileResponse(spec, media_type="application/yaml")

        routes.append(Route("/api/openapi.yaml", openapi, methods=["GET"]))
    web = ROOT / "web"
    if web.is_dir():
        routes.append(Mount("/", StaticFiles(directory=web, html=True), name="web"))
    return routes


def build_app(
    function_app: func.FunctionApp | None = None,
    *,
    run_timers: bool = True,
    clock: Clock | None = None,
    extra_routes: list[BaseRoute] | None = None,
) -> Starlette:
    if function_app is None:
        from function_app import app as function_app
    assert function_app is not None
    from shared.config import get_settings

    settings = get_settings()
    # get_functions() may be called once per app: it indexes (and validates) as it goes.
    functions = function_app.get_functions()
    scheduled = timers(functions, settings_environ())
    runner = TimerRunner(scheduled, clock=clock)
    # The app's own clock: the system's, moved forward only by POST /admin/clock.
    from shared.runtime import use_clock

    app_clock = OffsetClock()
    use_clock(app_clock)
    invocations = Invocations()

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        tasks = runner.start() if run_timers else []
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            from shared.runtime import reset_runtime

            # uvicorn has waited for every request already; as Azure's host, wait for the
            # invocations (and for nothing they left behind).
            await invocations.idle()
            await reset_runtime()

    async def fire_timer(request: Request) -> Response:
        # Azure's admin API runs a non-HTTP function on demand; the same, locally only.
        name = request.path_params["name"]
        timer = next((t for t in scheduled if t.name == name), None)
        if timer is None:
            return JSONResponse(NotFound("No such timer.").body(), 404)
        await timer.fire()
        return Response(status_code=202)

    async def settle_turns(_: Request) -> Response:
        # Once every invocation in flight has ended: a streamed answer's invocation lasts until
        # the answer is stored, its client gone or not. Locally only.
        await invocations.idle()
        return Response(status_code=204)

    async def advance_clock(request: Request) -> Response:
        # The app's time moves forward by {"advanceS": n} seconds (tests of what time does, as
        # an answer left "streaming" by a dead instance becoming "interrupted"). Locally only.
        body = await request.json()
        seconds = body.get("advanceS") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            return JSONResponse(InvalidRequest("advanceS: seconds, 0 or more.").body(), 400)
        app_clock.advance(float(seconds))
        return JSONResponse({"now": iso(app_clock.now())})

    async def list_invocations(_: Request) -> Response:
        # The invocations in flight (function, whether its client has gone). Locally only.
        return JSONResponse({"inFlight": invocations.snapshot()})

    routes: list[BaseRoute] = [
        *http_routes(functions, route_prefix(), invocations),
        Route("/admin/functions/{name}", fire_timer, methods=["POST"]),
        Route("/admin/turns/settle", settle_turns, methods=["POST"]),
        Route("/admin/invocations", list_invocations, methods=["GET"]),
        Route("/admin/clock", advance_clock, methods=["POST"]),
        *(extra_routes or []),
        *static_routes(),
    ]
    middleware = []
    if settings.cors_allowed_origins:
        # In Azure the platform's CORS does this, from the same list (infra sets it).
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_allowed_origins),
                allow_credentials=True,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Content-Type",
                    "Authorization",
                    "X-MS-CLIENT-PRINCIPAL-NAME",
                    consistency.HEADER,
                ],
            )
        )
    starlette = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        # The Functions host answers a path or method no function registered with 404; so does
        # this one, with the API's error object instead of Starlette's plain text.
        exception_handlers={404: not_found, 405: not_found},
    )
    starlette.state.timers = scheduled
    starlette.state.invocations = invocations
    return starlette

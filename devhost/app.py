"""The ASGI application of the local host, built from ``function_app``'s registrations."""

from __future__ import annotations

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

from devhost.schedule import Timer, TimerRunner, resolve_schedule, settings_environ
from shared import consistency
from shared.clock import Clock
from shared.errors import NotFound

log = logging.getLogger("parley.devhost")
ROOT = Path(__file__).resolve().parent.parent


def route_prefix(host_json: Path = ROOT / "host.json") -> str:
    """The route prefix Azure uses, from host.json (``api`` when unset)."""
    config: dict[str, Any] = json.loads(host_json.read_text()) if host_json.exists() else {}
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def _http_endpoint(user_function: Callable[..., Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        # As in Azure, where the HTTP streaming extension routes every request through one
        # catch-all FastAPI route: the function sees that route's ``path``, not its own route
        # parameters (it reads them from the URL against its template).
        request.scope["path_params"] = {"path": request.url.path.lstrip("/")}
        response: Response = await user_function(request)
        return response

    return endpoint


def http_routes(functions: list[func.Function], prefix: str) -> list[Route]:
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
                    _http_endpoint(function.get_user_function()),
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

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        tasks = runner.start() if run_timers else []
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            from shared.runtime import reset_runtime
            from shared.turns import settled

            await settled()  # answers still being written (their clients gone) are stored
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
        # Answers outlive their requests (a streaming client that hung up): this answers once
        # every one this host is writing has been stored (or has failed). Locally only.
        from shared.turns import settled

        await settled()
        return Response(status_code=204)

    routes: list[BaseRoute] = [
        *http_routes(functions, route_prefix()),
        Route("/admin/functions/{name}", fire_timer, methods=["POST"]),
        Route("/admin/turns/settle", settle_turns, methods=["POST"]),
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
    return starlette

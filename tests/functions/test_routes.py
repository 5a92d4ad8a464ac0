"""Route parameters come from the URL path, as they must under Azure's streaming extension."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from functions.http import logged_route, route_values


def request(path: str) -> Request:
    # In Azure the extension's one catch-all route sets path_params to {"path": ...} only.
    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
    scope["path_params"] = {"path": path.lstrip("/")}
    return Request(scope)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/sessions/s_abc", {"sessionId": "s_abc"}),
        ("/api/sessions/s_abc/", {"sessionId": "s_abc"}),
        ("/sessions/s_abc", {"sessionId": "s_abc"}),  # an empty route prefix
        ("/v2/api/sessions/x.y@z", {"sessionId": "x.y@z"}),
        ("/api/sessions", {}),
        ("/api/sessions/a/b", {}),
        ("/api/mysessions/s_abc", {}),
    ],
)
def test_route_values_match_the_template_at_the_end_of_the_path(
    path: str, expected: dict[str, str]
) -> None:
    assert route_values(request(path), "sessions/{sessionId}") == expected


def test_templates_without_parameters_give_none() -> None:
    assert route_values(request("/api/chat"), "chat") == {}


def test_the_logged_route_is_the_prefix_and_the_template() -> None:
    assert logged_route(request("/api/sessions/alice@x.com"), "sessions/{sessionId}") == (
        "/api/sessions/{sessionId}"
    )
    assert logged_route(request("/api/chat"), "chat") == "/api/chat"

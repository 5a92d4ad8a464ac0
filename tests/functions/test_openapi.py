"""openapi.yaml cannot drift: its schemas are checked against the pydantic models, its error
codes against shared/errors.py, its operations against the functions the app registers, and
the local host serves exactly the file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import BaseModel

from shared import errors, importer, models, usage
from shared.groups import models as group_models
from tools.local.host import RunningHost

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "openapi.yaml"

# Document component -> the model that produces (or parses) that JSON.
COMPONENT_MODELS: dict[str, type[BaseModel]] = {
    "ChatRequest": models.ChatRequest,
    "ChatResponse": models.ChatResponse,
    "Message": models.MessageOut,
    "SessionSummary": models.SessionSummary,
    "SessionDetail": models.SessionDetail,
    "SessionList": models.SessionList,
    "Feedback": models.FeedbackOut,
    "FeedbackRequest": models.FeedbackRequest,
    "RenameRequest": models.RenameRequest,
    "MessagePage": models.MessagePage,
    "VersionList": models.VersionList,
    "RegenerateRequest": models.RegenerateRequest,
    "ForkRequest": models.ForkRequest,
    "SearchMatch": models.SearchMatch,
    "SearchResult": models.SearchResult,
    "SearchResults": models.SearchResults,
    "EraseProgress": models.EraseProgress,
    "ExportMessage": models.ExportMessage,
    "ExportVersion": models.ExportVersion,
    "ErrorDetail": models.ErrorDetail,
    "ErrorResponse": models.ErrorResponse,
    "HealthResponse": models.HealthResponse,
    "ShareRequest": models.ShareCreateRequest,
    "Share": models.ShareOut,
    "ShareList": models.ShareList,
    "SharedConversation": models.SharedConversation,
    "SharedBy": models.SharedBy,
    "ShareView": models.ShareViewOut,
    "ShareViews": models.ShareViews,
    "Usage": usage.UsageOut,
    "UsagePeriod": usage.PeriodOut,
    "UsageTurns": usage.TurnsOut,
    "ImportReport": importer.ImportReport,
    "ImportFailure": importer.ImportFailure,
    "UsageDay": usage.DayOut,
    "GroupSummary": group_models.GroupSummary,
    "Group": group_models.GroupOut,
    "GroupMember": group_models.GroupMemberOut,
    "GroupList": group_models.GroupList,
    "Sender": group_models.Sender,
    "GroupMessage": group_models.GroupMessageOut,
    "GroupMessages": group_models.GroupMessages,
    "GroupMessagePage": group_models.GroupMessagePage,
    "GroupCreateRequest": group_models.GroupCreateRequest,
    "GroupRenameRequest": group_models.GroupRenameRequest,
    "MemberAddRequest": group_models.MemberAddRequest,
    "GroupSendRequest": group_models.GroupSendRequest,
    "RealtimeAccess": models.RealtimeAccess,
}
MODEL_COMPONENTS = {model.__name__: name for name, model in COMPONENT_MODELS.items()}
# Request bodies ignore unknown fields (additive clients keep working); responses declare all.
REQUEST_COMPONENTS = frozenset(
    {
        "ChatRequest",
        "FeedbackRequest",
        "RenameRequest",
        "ShareRequest",
        "RegenerateRequest",
        "ForkRequest",
        "GroupCreateRequest",
        "GroupRenameRequest",
        "MemberAddRequest",
        "GroupSendRequest",
    }
)
# Keywords that the models declare and the document must then state identically.
CONSTRAINTS = ("minLength", "maxLength", "pattern", "minimum", "maximum", "enum", "const")

Schema = Mapping[str, Any]


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def _resolve(node: Schema, root: Schema) -> tuple[str | None, Schema]:
    """Follow a local $ref: (the referenced name, its schema)."""
    ref = node.get("$ref")
    if ref is None:
        return None, node
    parts = ref.removeprefix("#/").split("/")
    target: Any = root
    for part in parts:
        target = target[part]
    return parts[-1], target


def _types(node: Schema, root: Schema) -> frozenset[str]:
    """The JSON types a schema allows, with objects named by their component and arrays by
    their items, so that the model's and the document's shapes compare as sets."""
    name, node = _resolve(node, root)
    if name is not None and (name in COMPONENT_MODELS or name in MODEL_COMPONENTS):
        return frozenset({"object:" + MODEL_COMPONENTS.get(name, name)})
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for option in node.get(key, []):
            found |= _types(option, root)
    declared = node.get("type")
    if declared is None and ("const" in node or "enum" in node):
        declared = "string"
    for kind in [declared] if isinstance(declared, str) else declared or []:
        if kind == "array":
            items = sorted(_types(node.get("items", {}), root))
            found.add(f"array<{'|'.join(items)}>")
        else:
            found.add(kind)
    return frozenset(found)


def _constraints(node: Schema, root: Schema) -> Iterator[tuple[str, Any]]:
    _, node = _resolve(node, root)
    for key in CONSTRAINTS:
        if key in node:
            value = node[key]
            yield key, sorted(value) if isinstance(value, list) else value
    for option in node.get("anyOf", []):
        yield from _constraints(option, root)


@pytest.mark.parametrize("component", sorted(COMPONENT_MODELS))
def test_component_matches_its_model(spec: dict[str, Any], component: str) -> None:
    model_schema = COMPONENT_MODELS[component].model_json_schema(by_alias=True)
    doc_schema = spec["components"]["schemas"][component]

    assert set(doc_schema["properties"]) == set(model_schema["properties"]), component
    assert set(doc_schema.get("required", [])) == set(model_schema.get("required", [])), component
    for name, model_prop in model_schema["properties"].items():
        doc_prop = doc_schema["properties"][name]
        assert _types(doc_prop, spec) == _types(model_prop, model_schema), f"{component}.{name}"
        doc_constraints = dict(_constraints(doc_prop, spec))
        for key, value in _constraints(model_prop, model_schema):
            assert doc_constraints.get(key) == value, f"{component}.{name}: {key}"


def test_response_schemas_admit_nothing_undeclared(spec: dict[str, Any]) -> None:
    # The fuzzer checks every response against these: an extra field (say, an email) fails it.
    for component in COMPONENT_MODELS:
        if component not in REQUEST_COMPONENTS:
            assert spec["components"]["schemas"][component]["additionalProperties"] is False


def _api_errors() -> list[type[errors.ApiError]]:
    found: list[type[errors.ApiError]] = []
    pending = [errors.ApiError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_error_codes_are_the_services(spec: dict[str, Any]) -> None:
    codes = {cls.code for cls in _api_errors()}
    assert set(spec["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]) == codes


def test_retry_after_is_documented_on_503_and_429(spec: dict[str, Any]) -> None:
    for name in ("StorageUnavailable", "TooManyRequests"):
        header = spec["components"]["responses"][name]["headers"]["Retry-After"]
        assert _resolve(header, spec)[1]["required"] is True


def test_every_error_status_answers_with_the_error_object(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    _, body = _resolve(response, spec)
                    schema = body["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (
                        f"{method} {path} {status}"
                    )


def test_every_operation_carries_parley_consistency(spec: dict[str, Any]) -> None:
    """Every operation of a signed-in caller accepts the header and declares it on every
    answer but 401 (no caller: nothing to seal for) and 403 (an address bound to another
    account: that caller reads nothing, a token included)."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or operation.get("security") == []:
                continue
            params = [_resolve(p, spec)[1] for p in operation.get("parameters", [])]
            assert {"name": "Parley-Consistency", "in": "header"}.items() <= next(
                (p.items() for p in params if p.get("name") == "Parley-Consistency"), set()
            ), (path, method)
            for status, response in operation["responses"].items():
                headers = _resolve(response, spec)[1].get("headers", {})
                assert ("Parley-Consistency" in headers) == (status not in ("401", "403")), (
                    path,
                    method,
                    status,
                )


def test_chat_documents_the_event_stream(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/api/chat"]["post"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}


def test_security_schemes_cover_every_auth_mode(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["devHeader"]["name"] == "X-MS-CLIENT-PRINCIPAL-NAME"
    assert schemes["easyAuth"]["name"] == "X-MS-CLIENT-PRINCIPAL"
    assert schemes["bearer"] == schemes["bearer"] | {"type": "http", "scheme": "bearer"}
    assert spec["paths"]["/api/health"]["get"]["security"] == []


REGISTERED_ROUTES = """
import json
from devhost.app import http_routes, route_prefix
from function_app import app
routes = http_routes(app.get_functions(), route_prefix())
print(json.dumps([[r.path, m.lower()] for r in routes for m in r.methods or () if m != "HEAD"]))
"""


def test_operations_are_the_registered_functions(spec: dict[str, Any]) -> None:
    # The app's own registrations, read as the local host reads them (devhost.app.http_routes),
    # in a process of their own: a FunctionApp can be indexed only once per process.
    out = subprocess.run(
        [sys.executable, "-c", REGISTERED_ROUTES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    registered = {(path, method) for path, method in json.loads(out.splitlines()[-1])}
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == registered


def test_host_serves_the_document(host: RunningHost) -> None:
    response = httpx.get(host.base_url + "/api/openapi.yaml", timeout=5)
    assert response.status_code == 200
    assert "yaml" in response.headers["content-type"]
    assert yaml.safe_load(response.text) == yaml.safe_load(SPEC_PATH.read_text())

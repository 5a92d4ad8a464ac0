"""The analytics workbook (infra/workbook.py): in the Pulumi program (mocks), its queries the
repository's ``infra/workbook/*.kql`` files, and every query checked against the event schema
(shared/events.py) by a light KQL lexer: the events and fields it names exist, its brackets and
quotes balance, each stage is a known operator and each call a known function."""

from __future__ import annotations

import json
import re

import pytest

from infra.workbook import CHARTS, QUERY_DIR, query_text, workbook_name
from shared.events import CUSTOM_EVENT_NAMESPACE, SCHEMA
from tests.infra.support import Deployment, make_config, run_program

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
OPERATORS = {"where", "extend", "summarize", "render", "order", "project", "top"}
FUNCTIONS = {
    "ago", "bin", "count", "countif", "dcount", "iff", "percentile", "round", "sum", "toint",
    "tostring", "by", "in", "desc", "and", "not",
}  # fmt: skip
TOKEN = re.compile(
    r'(?P<comment>//[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<number>\d+(?:\.\d+)?[a-z]?)'
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<op>==|!=|>=|<=|[|(),=<>+\-*/])|(?P<space>\s+)"
)


def lex(query: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; anything KQL would not lex here fails the test."""
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(query):
        match = TOKEN.match(query, at)
        assert match, f"cannot lex {query[at : at + 20]!r}"
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group()))
        at = match.end()
    return tokens


@pytest.mark.parametrize("chart", CHARTS, ids=[c.file for c in CHARTS])
def test_each_query_names_only_events_and_fields_of_the_schema(chart: object) -> None:
    from infra.workbook import Chart

    assert isinstance(chart, Chart)
    query = query_text(chart)
    tokens = lex(query)
    assert tokens[0] == ("name", "customEvents")
    events = [
        text.strip('"').removeprefix(CUSTOM_EVENT_NAMESPACE)
        for kind, text in tokens
        if kind == "string" and text.strip('"').startswith(CUSTOM_EVENT_NAMESPACE)
    ]
    assert len(events) == 1, "each query reads exactly one event"
    assert events[0] in SCHEMA
    fields = SCHEMA[events[0]]
    named = {t.split(".", 1)[1] for k, t in tokens if k == "name" and "customDimensions." in t}
    assert named, "a query charts some of the event's fields"
    assert named <= set(fields), f"not in the {events[0]} event: {named - set(fields)}"
    # Balanced parentheses, each stage a known operator, each call a known function.
    depth = 0
    for kind, text in tokens:
        depth += {"(": 1, ")": -1}.get(text, 0) if kind == "op" else 0
        assert depth >= 0
    assert depth == 0
    for i, (kind, text) in enumerate(tokens[:-1]):
        if text == "|":
            assert tokens[i + 1][1] in OPERATORS, f"unknown operator {tokens[i + 1][1]}"
        if kind == "name" and tokens[i + 1][1] == "(":
            assert text in FUNCTIONS, f"unknown function {text}"
    # Values compared with the closed fields are values those fields admit.
    for field in ("kind", "outcome", "rating"):
        spec = fields.get(field)
        if spec is None or spec.values is None:
            continue
        compared = re.findall(rf'\b{field}\)? (?:==|in) (\([^)]*\)|"[^"]*")', query)
        for group in compared:
            for value in re.findall(r'"([^"]*)"', group):
                assert value in spec.values, f"{field} is never {value!r}"


def test_every_query_file_is_a_chart_and_the_figures_are_all_there() -> None:
    assert {p.name for p in QUERY_DIR.glob("*.kql")} == {c.file for c in CHARTS}
    titles = " / ".join(c.title.lower() for c in CHARTS)
    for figure in (
        "daily active users",
        "turns and tokens per day",
        "tokens per model",
        "median and p95",
        "rated up and down per model",
        "from the cache",
        "quota",
        "moved and failed",
    ):
        assert figure in titles


def test_the_program_deploys_the_workbook_on_the_component(deployment: Deployment) -> None:
    workbook = deployment.one("applicationinsights:Workbook")
    component = deployment.one("applicationinsights:Component")
    inputs = workbook.inputs
    assert GUID.match(inputs["resourceName"])
    assert inputs["kind"] == "shared"
    assert inputs["category"] == "workbook"
    assert inputs["sourceId"] == component.id
    assert inputs["resourceGroupName"] == "rg-parley-test"
    document = json.loads(inputs["serializedData"])
    assert document["version"] == "Notebook/1.0"
    queries = [i["content"]["query"] for i in document["items"] if i["type"] == 3]
    assert queries == [query_text(c) for c in CHARTS]
    assert all(
        i["content"]["resourceType"] == "microsoft.insights/components"
        for i in document["items"]
        if i["type"] == 3
    )


def test_the_workbook_keeps_its_name_across_updates() -> None:
    cfg = make_config()
    first = run_program(cfg).one("applicationinsights:Workbook").inputs["resourceName"]
    assert first == workbook_name(cfg.name_prefix)
    assert run_program(cfg).one("applicationinsights:Workbook").inputs["resourceName"] == first

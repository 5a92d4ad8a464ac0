"""Analytics events (shared/events.py, docs/operations.md "Analytics").

- the schema admits only its fields, and for strings only closed values or narrow patterns;
- a property test over random turns (random text, titles, comments, addresses; answers that
  fail half-way; quota refusals; ratings; share views) proves every call emits its one event
  and that no event line ever carries message text, a title, a comment or an address;
- the Azure exporter is configured only with a connection string, once, lazily.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import telemetry
from shared.audit import user_hash
from shared.clock import FixedClock
from shared.config import load_settings
from shared.errors import ApiError, QuotaExceeded
from shared.events import SCHEMA, EventError, LatencyTimer, check, emit, line, parse_line
from shared.llm.base import ModelMessage, Usage
from shared.models import ChatRequest, FeedbackRequest, ShareCreateRequest
from shared.sharing import ShareService
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations

AT = datetime(2031, 6, 1, 9, 0, tzinfo=UTC)
MARK = "\u27e6"  # wraps every user-written string: it must never reach an event


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.records.append(record)


@contextmanager
def captured() -> Iterator[Capture]:
    logger = logging.getLogger("parley.events")
    handler = Capture()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class ScriptedModel:
    """Echoes the message (so answers hold user text), titles with it, fails when told."""

    name = "scripted-model"

    def __init__(self) -> None:
        self.fail_after: int | None = None  # pieces before failing; None: answer fully
        self.report_usage = True

    async def stream(
        self, messages: Sequence[ModelMessage], *, cache_key: str | None = None
    ) -> AsyncIterator[str | Usage]:
        text = messages[-1]["content"]
        for n, piece in enumerate([text[: len(text) // 2], text[len(text) // 2 :]]):
            if self.fail_after is not None and n >= self.fail_after:
                raise ApiError("boom")
            yield piece or "."
        if self.report_usage:
            yield Usage("gpt-test-1", 40, 7, 32)

    async def complete(
        self, messages: Sequence[ModelMessage], *, max_tokens: int, timeout_s: float
    ) -> str:
        return f"Title {messages[-1]['content']}"

    async def close(self) -> None:
        return None


# ---- the schema -------------------------------------------------------------------------------


def turn_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "user": "0123456789abcdef",
        "kind": "answer",
        "model": "gpt-4o-mini",
        "promptTokens": 10,
        "cachedTokens": 0,
        "completionTokens": 3,
        "firstTokenMs": 12,
        "totalMs": 40,
        "outcome": "complete",
    }
    return fields | overrides


def test_a_turn_event_round_trips_through_its_line() -> None:
    assert parse_line(line("turn", turn_fields())) == ("turn", turn_fields())
    assert parse_line("feedback_changed {}") is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "What is my bank password?"},  # text where a model name goes
        {"user": "alice@example.com"},  # an address where the hash goes
        {"outcome": "whatever"},
        {"promptTokens": -1},
        {"promptTokens": True},
        {"firstTokenMs": "12"},
        {"title": "Bread"},  # a field the schema does not have
    ],
)
def test_the_schema_refuses_what_it_does_not_name(overrides: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        check("turn", turn_fields(**overrides))


def test_a_missing_field_or_an_unknown_event_is_refused() -> None:
    fields = turn_fields()
    del fields["outcome"]
    with pytest.raises(EventError):
        check("turn", fields)
    with pytest.raises(EventError):
        check("chat", turn_fields())


def test_a_refused_event_is_dropped_with_its_field_name_only() -> None:
    with captured() as capture:
        emit("turn", **turn_fields(model="secret words here"))
    assert len(capture.lines) == 1
    assert capture.lines[0].startswith("event_rejected")
    assert "secret" not in capture.lines[0]


def test_an_event_is_a_custom_event_with_its_fields_as_dimensions() -> None:
    with captured() as capture:
        emit("turn", **turn_fields(firstTokenMs=None))
    (record,) = capture.records
    assert record.__dict__["microsoft.custom_event.name"] == "parley.turn"
    assert record.__dict__["promptTokens"] == 10
    assert "firstTokenMs" not in record.__dict__  # absent, not null, in customDimensions


def test_latency_timer_counts_first_token_once_on_a_monotonic_clock() -> None:
    ticks = iter([100.0, 100.25, 100.5, 101.0])
    timer = LatencyTimer(lambda: next(ticks))
    timer.first_token()
    timer.first_token()  # not the first: ignored (no tick consumed)
    assert timer.first_token_ms == 250
    assert timer.total_ms() == 500


# ---- no text, title or address, over random turns ----------------------------------------------

user_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).map(
    lambda t: f"{MARK}{t}{MARK}"
)
step = st.one_of(
    st.tuples(st.just("turn"), user_text, st.sampled_from([None, 0, 1]), st.booleans()),
    st.tuples(st.just("rate"), st.sampled_from(["up", "down", None]), user_text),
    st.tuples(st.just("share"), user_text),
)


def words(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    local=st.from_regex(r"[a-z]{3,12}", fullmatch=True),
    first=user_text,
    steps=st.lists(step, min_size=1, max_size=6),
    daily_limit=st.sampled_from([0, 0, 150]),
)
def test_no_event_carries_text_title_comment_or_address(
    local: str, first: str, steps: list[tuple[Any, ...]], daily_limit: int
) -> None:
    # A first turn that is answered, so that every kind of step has something to act on.
    steps = [("turn", first, None, True), *steps]
    email = f"{local}.owner@example.com"
    reader = f"{local}.reader@example.com"
    settings_ = load_settings(
        {
            "AUTH_MODE": "dev",
            "TITLE_MODE": "model",
            "USER_DAILY_TOKEN_LIMIT": str(daily_limit),
            "LOG_HASH_SALT": "salt",
        }
    )
    model = ScriptedModel()
    expected: list[str] = []

    async def scenario(path: Path) -> None:
        store = SqliteStore(path)
        clock = FixedClock(AT)
        service = Conversations(store, model, settings_, clock=clock)
        shares = ShareService(
            store, clock, token_key=settings_.resolved_token_signing_key, hash_salt="salt"
        )
        session_id: str | None = None
        answer_id: str | None = None
        try:
            for item in steps:
                if item[0] == "turn":
                    _, text, fail_after, report = item
                    model.fail_after, model.report_usage = fail_after, report
                    try:
                        result = await service.chat(
                            email, ChatRequest(message=text, sessionId=session_id)
                        )
                        new = session_id is None
                        session_id, answer_id = result.session_id, result.assistant.id
                        expected.extend(["turn:answer:complete", *(["turn:title"] if new else [])])
                    except QuotaExceeded:
                        expected.append("turn:answer:quota")
                    except ApiError:
                        expected.append("turn:answer:failed")
                        # The question is stored: a session exists from now on.
                        if session_id is None:
                            listed = await service.list_sessions(
                                email, limit=1, continuation=None, archived=False
                            )
                            if listed.sessions:
                                session_id = listed.sessions[0].session_id
                                expected.append("turn:title")
                elif item[0] == "rate" and answer_id and session_id:
                    _, rating, comment = item
                    request = FeedbackRequest(rating=rating, comment=comment) if rating else None
                    await service.set_feedback(email, session_id, answer_id, request)
                    expected.append("feedback")
                elif item[0] == "share" and session_id:
                    share = await shares.create(
                        email,
                        session_id,
                        ShareCreateRequest.model_validate(
                            {"audience": "people", "people": [reader]}
                        ),
                    )
                    await shares.read(reader, share.share_id)
                    await shares.read(email, share.share_id)  # the owner's own: no event
                    expected.append("share_view")
        finally:
            await store.close()

    with captured() as capture, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp) / "events.db"))

    events = [parse_line(text) for text in capture.lines]
    assert all(e is not None for e in events), capture.lines  # nothing rejected
    kinds: list[str] = []
    for event in events:
        assert event is not None
        name, fields = event
        check(name, fields)
        kinds.append(f"turn:{fields['kind']}:{fields['outcome']}" if name == "turn" else name)
        if name in ("turn", "feedback"):
            assert fields["user"] == user_hash(email, "salt")
        if name == "share_view":
            assert fields["owner"] == user_hash(email, "salt")
    # Every call emitted its one event (titles may finish after the turn: compare as sets of
    # counts, titles by kind only).
    assert sorted(k if not k.startswith("turn:title") else "turn:title" for k in kinds) == sorted(
        expected
    )
    for text in capture.lines:
        assert MARK not in text and "Title" not in text
        # The addresses' local parts, whole: a bare ``local`` of three letters ("mod") can be
        # part of a field's name ("model").
        rest = text.replace(user_hash(email, "salt"), "")
        assert "@" not in text and email.split("@")[0] not in rest
        assert reader.split("@")[0] not in rest


# ---- the exporter: Azure only, once, on the first event ---------------------------------------


def test_the_exporter_is_configured_once_and_only_with_a_connection_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(telemetry, "configure", calls.append)
    telemetry.reset_for_tests()
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    emit("turn", **turn_fields())
    assert calls == []

    telemetry.reset_for_tests()
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=x")
    emit("turn", **turn_fields())
    emit("turn", **turn_fields())
    assert calls == ["InstrumentationKey=x"]
    telemetry.reset_for_tests()


def test_importing_the_function_app_loads_no_exporter() -> None:
    import subprocess
    import sys

    code = (
        "import sys, function_app; "
        "print(any(m.startswith(('opentelemetry.sdk', 'azure.monitor')) for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "False"


def test_every_event_in_the_schema_has_fields() -> None:
    assert set(SCHEMA) == {"turn", "feedback", "share_view", "archive_run"}
    assert all(SCHEMA.values())

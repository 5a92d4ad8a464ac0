"""``python -m bench.capacity``: what Parley needs and costs for a workload, from what the
benchmark measured.

Every per-operation figure (request units, stored bytes, model tokens, time in the host) is read
from the benchmark's results (``bench/results/latest.json``, written by ``make bench``), never
typed in here; the JSON output names, for each measured input, the path in that file it came
from, and for each result the inputs it was computed from. What is typed in here is of three
other kinds, each said to be so: the workload (the caller's numbers, with defaults), the prices
(inputs, each default naming its page and the date it was read), and Azure's limits (one
constant each, with the page that states it). docs/capacity.md explains the model and works
three examples through it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT
from bench.prompt_cache import PRICE_CACHED_PER_M, PRICE_INPUT_PER_M
from infra.stack_config import (
    DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY,
    DEFAULT_INSTANCE_MEMORY_MB,
    DEFAULT_MAXIMUM_INSTANCE_COUNT,
    DEFAULT_OPENAI_CAPACITY,
    FLEX_MAXIMUM_INSTANCE_COUNT,
)
from shared.config import Settings

LATEST = RESULTS / "latest.json"
DAY_S = 86_400
MONTH_DAYS = 30.4  # 365 / 12, as Azure's monthly estimates count a month
GB = 1e9  # Azure bills storage in GB of 10^9 bytes

# -- Azure's limits: one constant each, with the page that states it ---------------------------


@dataclass(frozen=True)
class Limit:
    name: str
    value: float
    unit: str
    url: str


SERVERLESS_RUS_PER_CONTAINER = Limit(
    "Cosmos DB serverless throughput per container",
    5_000,
    "RU/s",
    # "5,000 request units per second (RU/s) for a container", raised with the container's
    # physical partitions once it holds more (the page's table). Read 2026-12-05.
    "https://learn.microsoft.com/en-us/azure/cosmos-db/serverless-performance",
)
SERVERLESS_STORAGE_PER_CONTAINER_GB = Limit(
    "Cosmos DB serverless storage per container",
    1_000,
    "GB",
    # The same page's table ends at "<= 1 TB". Read 2026-12-05.
    "https://learn.microsoft.com/en-us/azure/cosmos-db/serverless-performance",
)
LOGICAL_PARTITION_GB = Limit(
    "Cosmos DB storage per logical partition (one user, per container)",
    20,
    "GB",
    # "Maximum storage across all items per (logical) partition: 20 GB". Read 2026-12-05.
    "https://learn.microsoft.com/en-us/azure/cosmos-db/concepts-limits",
)
FLEX_MAX_INSTANCES = Limit(
    "Functions Flex Consumption instances per app",
    FLEX_MAXIMUM_INSTANCE_COUNT[1],  # infra/stack_config.py refuses more, for this reason
    "instances",
    # "Scale-out instances (max): 1000". Read 2026-12-05.
    "https://learn.microsoft.com/en-us/azure/azure-functions/flex-consumption-plan",
)
WEB_PUBSUB_CONNECTIONS_PER_UNIT = Limit(
    "Web PubSub concurrent connections per unit",
    1_000,
    "connections",
    # "Each unit supports up to 1,000 concurrent connections"; an instance has 1, 2, 5, 10, 20,
    # 50 or 100 units; a billed message is 2 KB of outbound traffic. Read 2026-12-05.
    "https://learn.microsoft.com/en-us/azure/azure-web-pubsub/concept-billing-model",
)
WEB_PUBSUB_MAX_UNITS = Limit(
    "Web PubSub units per instance (Standard)",
    100,
    "units",
    "https://learn.microsoft.com/en-us/azure/azure-web-pubsub/concept-billing-model",
)
WEB_PUBSUB_UNIT_SIZES = (1, 2, 5, 10, 20, 50, 100)  # the same page
WEB_PUBSUB_BILLED_MESSAGE_BYTES = 2048  # the same page: outbound traffic counted in 2 KB steps
OPENAI_TPM_PER_CAPACITY_UNIT = Limit(
    "Azure OpenAI tokens per minute per capacity unit (Standard, GlobalStandard)",
    1_000,
    "tokens/min",
    # A deployment's capacity is in units of 1,000 tokens per minute, with 6 requests per
    # minute per unit. Read 2026-12-05.
    "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/how-to/quota",
)
OPENAI_RPM_PER_CAPACITY_UNIT = 6  # the same page
# Autoscale, https://learn.microsoft.com/en-us/azure/cosmos-db/provision-throughput-autoscale:
AUTOSCALE_MIN_FRACTION = 0.1  # autoscale bills at least 10% of its maximum, every hour
AUTOSCALE_STEP_RUS = 1_000  # an autoscale maximum is 1,000 RU/s or more, in steps of 1,000
# Provisioned throughput needs at least 1 RU/s per GB stored ("Minimum RU/s required per 1 GB"),
# https://learn.microsoft.com/en-us/azure/cosmos-db/concepts-limits (read 2026-12-05).
MIN_RUS_PER_GB = 1.0

LIMITS: dict[str, Limit] = {
    "serverless_rus_per_container": SERVERLESS_RUS_PER_CONTAINER,
    "serverless_storage_per_container_gb": SERVERLESS_STORAGE_PER_CONTAINER_GB,
    "logical_partition_gb": LOGICAL_PARTITION_GB,
    "flex_max_instances": FLEX_MAX_INSTANCES,
    "web_pubsub_connections_per_unit": WEB_PUBSUB_CONNECTIONS_PER_UNIT,
    "web_pubsub_max_units": WEB_PUBSUB_MAX_UNITS,
    "openai_tpm_per_capacity_unit": OPENAI_TPM_PER_CAPACITY_UNIT,
}

# -- prices: inputs, each default with its page and the day it was read -------------------------

READ_ON = "2026-12-05"
UNCONFIRMED = (
    f"not confirmed on {READ_ON}: the pricing page renders its figures by script and no current "
    "copy of it could be read; the figure is the long-standing US list price (East US, pay as "
    "you go). Check the page before relying on it."
)


@dataclass(frozen=True)
class Price:
    value: float
    unit: str
    source: str
    read: str = READ_ON
    note: str = UNCONFIRMED


COSMOS_PAGE = "https://azure.microsoft.com/en-us/pricing/details/cosmos-db/serverless/"
AUTOSCALE_PAGE = (
    "https://azure.microsoft.com/en-us/pricing/details/cosmos-db/autoscale-provisioned/"
)
FUNCTIONS_PAGE = "https://azure.microsoft.com/en-us/pricing/details/functions/"
PUBSUB_PAGE = "https://azure.microsoft.com/en-us/pricing/details/web-pubsub/"
OPENAI_PAGE = "https://azure.microsoft.com/en-us/pricing/details/cognitive-services/openai-service/"
MODEL_NOTE = "GPT-4.1 (GlobalStandard) list price; the same figure bench/prompt_cache.py uses. "

DEFAULT_PRICES: dict[str, Price] = {
    "cosmos_serverless_per_million_ru": Price(0.25, "USD per million RU", COSMOS_PAGE),
    "cosmos_storage_per_gb_month": Price(0.25, "USD per GB-month", COSMOS_PAGE),
    "cosmos_autoscale_per_100_rus_hour": Price(
        0.012, "USD per 100 RU/s per hour (single region)", AUTOSCALE_PAGE
    ),
    "functions_flex_per_gb_s": Price(
        0.000026,
        "USD per GB-second (on demand)",
        FUNCTIONS_PAGE,
        note=UNCONFIRMED + " The same figure is quoted by "
        "https://modal.com/blog/azure-function-pricing-guide (2025-05-22).",
    ),
    "functions_flex_per_million_executions": Price(
        0.40, "USD per million executions (on demand)", FUNCTIONS_PAGE
    ),
    "functions_flex_free_gb_s": Price(100_000, "GB-seconds free per month", FUNCTIONS_PAGE),
    "functions_flex_free_executions": Price(250_000, "executions free per month", FUNCTIONS_PAGE),
    "web_pubsub_per_unit_day": Price(
        1.61,
        "USD per unit per day (Standard)",
        PUBSUB_PAGE,
        note=UNCONFIRMED + " Figure as quoted by "
        "https://c3x.dev/resources/azure/azurerm_web_pubsub/ (read 2026-12-05).",
    ),
    "web_pubsub_free_messages_per_unit_day": Price(
        1_000_000, "messages included per unit per day", PUBSUB_PAGE
    ),
    "web_pubsub_per_million_messages": Price(1.0, "USD per million further messages", PUBSUB_PAGE),
    "openai_input_per_million": Price(
        PRICE_INPUT_PER_M,
        "USD per million input tokens",
        OPENAI_PAGE,
        note=MODEL_NOTE + UNCONFIRMED,
    ),
    "openai_cached_per_million": Price(
        PRICE_CACHED_PER_M,
        "USD per million cached input tokens",
        OPENAI_PAGE,
        note=MODEL_NOTE + UNCONFIRMED,
    ),
    "openai_output_per_million": Price(
        8.0, "USD per million output tokens", OPENAI_PAGE, note=MODEL_NOTE + UNCONFIRMED
    ),
}

# -- the workload: the caller's numbers --------------------------------------------------------

_SETTINGS = Settings.model_validate({})


@dataclass(frozen=True)
class Workload:
    """Per day unless said otherwise; each field is a flag of the CLI (``--users``...)."""

    users: float = 1_000  # registered users
    active_share: float = 0.3  # share of them active on a day
    turns_per_active_user: float = 10.0  # chat turns per active user per day
    user_message_chars: float = 300.0  # characters of a user message
    answer_chars: float = 1_500.0  # characters of an answer
    answer_tokens: float = 400.0  # model output tokens per answer
    conversation_turns: int = 10  # turns in a conversation before a new one starts
    opens_per_active_user: float = 3.0  # conversations opened (read) per active user
    searches_per_active_user: float = 1.0  # searches per active user
    group_messages_per_active_user: float = 0.0  # group messages sent per active user
    group_size: float = 5.0  # members a group message goes to
    online_minutes_per_active_user: float = 30.0  # minutes connected for realtime per day
    peak_to_average: float = 3.0  # the busiest minute's rate over the day's average
    peak_hours: float = 4.0  # hours a day at the peak rate (for autoscale's hourly bill)
    answer_seconds: float = 8.0  # how long the model streams an answer (holds the function)
    heaviest_user_factor: float = 20.0  # the heaviest user's turns over the average's
    index_factor: float = 1.2  # stored bytes with Azure's index over the items' own bytes
    archive_after_days: int = _SETTINGS.archive_after_days  # ARCHIVE_AFTER_DAYS
    retention_days: int = _SETTINGS.retention_days  # RETENTION_DAYS (0 keeps everything)
    archive_concurrency: int = _SETTINGS.archive_concurrency  # ARCHIVE_CONCURRENCY
    archive_time_budget_s: float = _SETTINGS.archive_time_budget_s  # ARCHIVE_TIME_BUDGET_S
    context_window: str = _SETTINGS.context_window  # CONTEXT_WINDOW
    openai_capacity: int = DEFAULT_OPENAI_CAPACITY  # the stack's openAiCapacity
    instance_memory_mb: int = DEFAULT_INSTANCE_MEMORY_MB  # instanceMemoryMB
    maximum_instance_count: int = DEFAULT_MAXIMUM_INSTANCE_COUNT  # maximumInstanceCount
    http_per_instance_concurrency: int = DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY

    @property
    def daily_active(self) -> float:
        return self.users * self.active_share


# The three examples of docs/capacity.md.
PRESETS: dict[str, Workload] = {
    "team": Workload(
        users=200,
        active_share=0.6,
        turns_per_active_user=15,
        opens_per_active_user=5,
        searches_per_active_user=2,
        group_messages_per_active_user=5,
        group_size=6,
        online_minutes_per_active_user=120,
        peak_to_average=4,
    ),
    "company": Workload(
        users=20_000,
        active_share=0.5,
        turns_per_active_user=10,
        opens_per_active_user=4,
        searches_per_active_user=1,
        group_messages_per_active_user=3,
        group_size=8,
        online_minutes_per_active_user=60,
        peak_to_average=4,
    ),
    "public": Workload(
        users=2_500_000,
        active_share=0.4,  # 1,000,000 daily users
        turns_per_active_user=8,
        opens_per_active_user=3,
        searches_per_active_user=0.5,
        group_messages_per_active_user=1,
        group_size=4,
        online_minutes_per_active_user=20,
        peak_to_average=3,
    ),
}

# -- the measured inputs --------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """Figures from the benchmark's results; ``paths`` says where in the file each came from."""

    turn_ru: tuple[tuple[int, float], ...]  # (turn number, RU) as the conversation grows
    open_ru: float  # a page of 50 messages
    search_ru: tuple[tuple[int, float], ...]  # (the user's messages, RU of one search)
    archive_ru_per_message: float  # an archival pass's RU per message moved, scans included
    archive_sessions_per_s: float
    archive_measured_concurrency: int
    message_overhead_bytes: float  # a message item beyond its text, active container
    archive_message_overhead_bytes: float
    session_item_bytes: float
    archive_session_item_bytes: float
    stub_item_bytes: float  # what an archived session leaves in the active container
    usage_item_bytes: float
    prompt_tokens: dict[str, tuple[tuple[int, float, float], ...]]  # policy -> (turn, in, cached)
    host_turn_ms: float  # p50 of a turn through the host, echo model (the host's own time)
    host_read_ms: float  # p50 of a read through the host
    source: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def _get(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class MissingMeasurement(RuntimeError):
    """The results file lacks a figure the model needs: run ``make bench``."""


def load_measured(path: Path = LATEST) -> Measured:
    data = json.loads(path.read_text())
    paths: dict[str, str] = {}

    def take(name: str, where: str) -> Any:
        try:
            value = _get(data, where)
        except (KeyError, IndexError, TypeError) as exc:
            raise MissingMeasurement(f"{path} has no {where}: run `make bench`") from exc
        paths[name] = where
        return value

    turns = take("turn_ru", "turns.parley")
    turn_ru = tuple((int(r["turn"]), float(r["ru"])) for r in turns)
    rows = take("search_ru", "reads.search.rows")
    search_ru = tuple((int(r["messages"]), float(r["request_units"])) for r in rows)
    pass_ru = float(take("archive_ru_per_message", "storage.archival.request_units_per_session"))
    pass_messages = int(take("archive_messages_per_session", "storage.messages_per_session"))
    storage_sessions = int(take("storage_sessions", "storage.sessions"))
    usage = take("usage_item_bytes", "storage.active.usage")
    prompt: dict[str, tuple[tuple[int, float, float], ...]] = {}
    for policy in ("sliding", "blocks"):
        got = take(f"prompt_tokens.{policy}", f"prompt_cache.{policy}.rows")
        prompt[policy] = tuple(
            (int(r["turn"]), float(r["prompt_tokens"]), float(r["cached_tokens"])) for r in got
        )
    session = take("session_item_bytes", "storage.active.session.bytes")
    archived_session = take("archive_session_item_bytes", "storage.archive.session.bytes")
    stubs = take("stub_item_bytes", "storage.active_after_archival.session.bytes")
    return Measured(
        turn_ru=turn_ru,
        open_ru=float(take("open_ru", "reads.pages.page_1.request_units")),
        search_ru=search_ru,
        archive_ru_per_message=pass_ru / pass_messages,
        archive_sessions_per_s=float(
            take("archive_sessions_per_s", "archival.cosmos.sessions_per_s")
        ),
        archive_measured_concurrency=int(
            take("archive_measured_concurrency", "archival.cosmos.concurrency")
        ),
        message_overhead_bytes=float(
            take("message_overhead_bytes", "storage.active.message.overhead_bytes_mean")
        ),
        archive_message_overhead_bytes=float(
            take("archive_message_overhead_bytes", "storage.archive.message.overhead_bytes_mean")
        ),
        session_item_bytes=session / storage_sessions,
        archive_session_item_bytes=archived_session / storage_sessions,
        stub_item_bytes=stubs / storage_sessions,
        usage_item_bytes=float(usage["bytes"]) / int(usage["items"]),
        prompt_tokens=prompt,
        host_turn_ms=float(take("host_turn_ms", "latency.cosmos.host.chat@1.p50_ms")),
        host_read_ms=float(take("host_read_ms", "latency.cosmos.host.get@1.p50_ms")),
        source={
            "file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "run": {k: data["machine"][k] for k in ("date", "commit", "cpu")}
            | {"mode": data["mode"]},
            # Sections measured again since that run (``python -m bench --only``), each stamped.
            "added": {
                step: {
                    "date": a["machine"]["date"],
                    "commit": a["machine"]["commit"],
                    "mode": a["mode"],
                }
                for step, a in data.get("added", {}).items()
            },
        },
        paths=paths,
    )


# -- the model ------------------------------------------------------------------------------


def interpolate(points: tuple[tuple[int, float], ...], x: float) -> float:
    """Linear between measured points, flat beyond the last (and before the first)."""
    ordered = sorted(points)
    if x <= ordered[0][0]:
        return ordered[0][1]
    for (x0, y0), (x1, y1) in pairwise(ordered):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ordered[-1][1]


def mean_over_turns(points: tuple[tuple[int, float], ...], turns: int) -> float:
    return sum(interpolate(points, k) for k in range(1, turns + 1)) / turns


def _figure(value: float | None, unit: str, *inputs: str) -> dict[str, Any]:
    """A result: its value (to 6 significant digits), its unit, and the names of the inputs
    (workload, measured, price, or another result) it was computed from."""
    if isinstance(value, float):
        value = float(f"{value:.6g}")
    return {"value": value, "unit": unit, "from": list(inputs)}


def cosmos_autoscale_month(
    peak_rus: float,
    average_rus: float,
    peak_hours: float,
    price_per_100_hour: float,
    storage_gb: float = 0.0,
) -> tuple[float, int]:
    """Monthly cost of autoscale (database throughput shared by the containers) and its
    maximum RU/s: the maximum covers the peak, and its tenth (where autoscale scales down to)
    covers the storage's minimum; each hour bills the most it scaled to, at least a tenth of the
    maximum. The day: ``peak_hours`` at the peak, the rest at the rate that makes the day's
    average."""
    needed = max(peak_rus, MIN_RUS_PER_GB * storage_gb / AUTOSCALE_MIN_FRACTION)
    t_max = max(AUTOSCALE_STEP_RUS, math.ceil(needed / AUTOSCALE_STEP_RUS) * AUTOSCALE_STEP_RUS)
    hours = min(max(peak_hours, 0.0), 24.0)
    rest = max(0.0, (24 * average_rus - hours * peak_rus) / (24 - hours)) if hours < 24 else 0.0
    floor = AUTOSCALE_MIN_FRACTION * t_max
    billed = hours * max(floor, peak_rus) + (24 - hours) * max(floor, rest)  # RU/s-hours a day
    return billed / 100 * price_per_100_hour * MONTH_DAYS, t_max


def _web_pubsub_units(connections: float) -> int | None:
    needed = math.ceil(connections / WEB_PUBSUB_CONNECTIONS_PER_UNIT.value) if connections else 0
    for size in WEB_PUBSUB_UNIT_SIZES:
        if size >= max(needed, 1):
            return size
    return None  # more than one instance can have


def model(w: Workload, m: Measured, prices: dict[str, Price]) -> dict[str, Any]:
    p = {name: price.value for name, price in prices.items()}
    dau = w.daily_active
    turns_day = dau * w.turns_per_active_user
    L = max(1, w.conversation_turns)
    conversations_day = turns_day / L
    r: dict[str, Any] = {}

    # Request units.
    ru_turn = mean_over_turns(m.turn_ru, L)
    user_messages_year = w.turns_per_active_user * 2 * 365 * w.active_share
    ru_search = interpolate(m.search_ru, user_messages_year)
    ru_day_active = (
        turns_day * ru_turn
        + dau * w.opens_per_active_user * m.open_ru
        + dau * w.searches_per_active_user * ru_search
    )
    ru_day_archival = conversations_day * 2 * L * m.archive_ru_per_message
    ru_day = ru_day_active + ru_day_archival
    avg_rus = ru_day / DAY_S
    peak_rus = avg_rus * w.peak_to_average
    wl = ("users", "active_share", "turns_per_active_user", "conversation_turns")
    r["ru_per_turn"] = _figure(ru_turn, "RU", "turn_ru", "conversation_turns")
    r["ru_per_search"] = _figure(
        ru_search, "RU", "search_ru", "turns_per_active_user", "active_share"
    )
    ru_inputs = (*wl, "turn_ru", "open_ru", "search_ru", "archive_ru_per_message")
    r["ru_per_day"] = _figure(ru_day, "RU", *ru_inputs)
    r["ru_per_s_average"] = _figure(avg_rus, "RU/s", *ru_inputs)
    r["ru_per_s_peak"] = _figure(peak_rus, "RU/s", *ru_inputs, "peak_to_average")
    peak_active_rus = ru_day_active / DAY_S * w.peak_to_average
    r["ru_per_s_peak_active_container"] = _figure(
        peak_active_rus, "RU/s", *ru_inputs, "peak_to_average"
    )

    # Storage, by container, after a month and a year.
    turn_bytes = 2 * m.message_overhead_bytes + w.user_message_chars + w.answer_chars
    archive_turn_bytes = (
        2 * m.archive_message_overhead_bytes + w.user_message_chars + w.answer_chars
    )
    conv_bytes = L * turn_bytes + m.session_item_bytes
    archive_conv_bytes = L * archive_turn_bytes + m.archive_session_item_bytes
    storage_inputs = (
        *wl,
        "user_message_chars",
        "answer_chars",
        "message_overhead_bytes",
        "archive_message_overhead_bytes",
        "session_item_bytes",
        "archive_session_item_bytes",
        "stub_item_bytes",
        "usage_item_bytes",
        "archive_after_days",
        "retention_days",
        "index_factor",
    )
    storage: dict[str, float] = {}
    for label, days in (("month", 30), ("year", 365)):
        live = days if not w.retention_days else min(days, w.retention_days)
        active_days = min(live, w.archive_after_days)
        archived_days = max(0, live - w.archive_after_days)
        active = (
            conversations_day * (active_days * conv_bytes + archived_days * m.stub_item_bytes)
            + dau * days * m.usage_item_bytes
        )
        archive = conversations_day * archived_days * archive_conv_bytes
        storage[f"active_{label}"] = active * w.index_factor / GB
        storage[f"archive_{label}"] = archive * w.index_factor / GB
        for container in ("active", "archive"):
            key = f"{container}_{label}"
            r[f"storage_gb_{key}"] = _figure(storage[key], "GB", *storage_inputs)
    heavy_day = w.turns_per_active_user * w.heaviest_user_factor * turn_bytes * w.index_factor
    live_year = 365 if not w.retention_days else min(365, w.retention_days)
    heavy_year = heavy_day * max(
        min(live_year, w.archive_after_days), live_year - w.archive_after_days
    )
    heavy_inputs = (
        "turns_per_active_user",
        "heaviest_user_factor",
        "user_message_chars",
        "answer_chars",
        "message_overhead_bytes",
        "index_factor",
    )
    r["heaviest_partition_gb_year"] = _figure(heavy_year / GB, "GB", *heavy_inputs)
    r["heaviest_partition_days_to_limit"] = _figure(
        LOGICAL_PARTITION_GB.value * GB / heavy_day, "days", *heavy_inputs
    )

    # The nightly archival pass.
    rate = m.archive_sessions_per_s * w.archive_concurrency / m.archive_measured_concurrency
    pass_s = conversations_day / rate
    r["archival_sessions_per_night"] = _figure(conversations_day, "sessions", *wl)
    r["archival_ru_per_night"] = _figure(
        ru_day_archival, "RU", *wl, "archive_ru_per_message", "conversation_turns"
    )
    r["archival_pass_s"] = _figure(
        pass_s,
        "s",
        *wl,
        "archive_sessions_per_s",
        "archive_measured_concurrency",
        "archive_concurrency",
    )

    # Functions: executions, and memory-seconds as Flex bills them (an instance's memory while it
    # runs anything; the executions running at once on an instance share its time).
    opens_day = dau * w.opens_per_active_user
    searches_day = dau * w.searches_per_active_user
    groups_day = dau * w.group_messages_per_active_user
    executions_day = turns_day + opens_day + searches_day + groups_day + 1  # + the timer
    exec_s_day = (
        turns_day * (w.answer_seconds + m.host_turn_ms / 1000)
        + (opens_day + searches_day + groups_day) * m.host_read_ms / 1000
        + pass_s
    )
    in_flight = exec_s_day / DAY_S
    peak_in_flight = in_flight * w.peak_to_average
    packing = min(max(in_flight, 1.0), w.http_per_instance_concurrency)
    gb_s_day = exec_s_day / packing * w.instance_memory_mb / 1024
    peak_instances = math.ceil(peak_in_flight / w.http_per_instance_concurrency)
    fn_inputs = (
        *wl,
        "opens_per_active_user",
        "searches_per_active_user",
        "group_messages_per_active_user",
        "answer_seconds",
        "host_turn_ms",
        "host_read_ms",
        "http_per_instance_concurrency",
    )
    r["function_executions_per_day"] = _figure(executions_day, "executions", *fn_inputs)
    r["function_gb_s_per_day"] = _figure(gb_s_day, "GB-s", *fn_inputs, "instance_memory_mb")
    r["function_instances_peak"] = _figure(
        peak_instances, "instances", *fn_inputs, "peak_to_average"
    )

    # Web PubSub.
    deliveries_day = groups_day * w.group_size
    billed_per_delivery = max(1, math.ceil(w.user_message_chars / WEB_PUBSUB_BILLED_MESSAGE_BYTES))
    pubsub_messages_day = deliveries_day * billed_per_delivery
    connections_peak = dau * w.online_minutes_per_active_user / 1440 * w.peak_to_average
    units = _web_pubsub_units(connections_peak)
    pubsub_inputs = (
        "users",
        "active_share",
        "group_messages_per_active_user",
        "group_size",
        "user_message_chars",
    )
    r["web_pubsub_messages_per_day"] = _figure(pubsub_messages_day, "messages", *pubsub_inputs)
    conn_inputs = ("users", "active_share", "online_minutes_per_active_user", "peak_to_average")
    r["web_pubsub_connections_peak"] = _figure(connections_peak, "connections", *conn_inputs)
    r["web_pubsub_units"] = _figure(units, "units", *conn_inputs)

    # Model tokens, with and without the prompt cache.
    rows = m.prompt_tokens[w.context_window]
    prompt_turn = mean_over_turns(tuple((t, pr) for t, pr, _ in rows), L)
    cached_turn = mean_over_turns(tuple((t, c) for t, _, c in rows), L)
    tok_inputs = (*wl, f"prompt_tokens.{w.context_window}", "answer_tokens")
    r["prompt_tokens_per_turn"] = _figure(prompt_turn, "tokens", *tok_inputs)
    r["cached_tokens_per_turn"] = _figure(cached_turn, "tokens", *tok_inputs)
    tokens_day = turns_day * (prompt_turn + w.answer_tokens)
    tpm_peak = tokens_day / 1440 * w.peak_to_average
    rpm_peak = turns_day / 1440 * w.peak_to_average
    r["model_tokens_per_day"] = _figure(tokens_day, "tokens", *tok_inputs)
    r["model_tpm_peak"] = _figure(tpm_peak, "tokens/min", *tok_inputs, "peak_to_average")
    r["model_capacity_units_needed"] = _figure(
        max(
            math.ceil(tpm_peak / OPENAI_TPM_PER_CAPACITY_UNIT.value),
            math.ceil(rpm_peak / OPENAI_RPM_PER_CAPACITY_UNIT),
        ),
        "units",
        *tok_inputs,
        "peak_to_average",
    )

    # Monthly costs.
    month = MONTH_DAYS
    cost: dict[str, Any] = {}
    storage_month = (storage["active_month"] + storage["archive_month"]) * p[
        "cosmos_storage_per_gb_month"
    ]
    storage_year = (storage["active_year"] + storage["archive_year"]) * p[
        "cosmos_storage_per_gb_month"
    ]
    serverless = ru_day * month / 1e6 * p["cosmos_serverless_per_million_ru"]
    autoscale, t_max = cosmos_autoscale_month(
        peak_rus,
        avg_rus,
        w.peak_hours,
        p["cosmos_autoscale_per_100_rus_hour"],
        storage["active_year"] + storage["archive_year"],
    )
    cost["cosmos_serverless_ru"] = _figure(
        serverless, "USD/month", "ru_per_day", "cosmos_serverless_per_million_ru"
    )
    cost["cosmos_autoscale_throughput"] = _figure(
        autoscale,
        "USD/month",
        "ru_per_s_peak",
        "ru_per_s_average",
        "peak_hours",
        "storage_gb_active_year",
        "storage_gb_archive_year",
        "cosmos_autoscale_per_100_rus_hour",
    )
    r["cosmos_autoscale_max_rus"] = _figure(
        t_max, "RU/s", "ru_per_s_peak", "storage_gb_active_year", "storage_gb_archive_year"
    )
    cost["cosmos_storage_month_1"] = _figure(
        storage_month,
        "USD/month",
        "storage_gb_active_month",
        "cosmos_storage_per_gb_month",
    )
    cost["cosmos_storage_month_12"] = _figure(
        storage_year, "USD/month", "storage_gb_active_year", "cosmos_storage_per_gb_month"
    )
    fn_gb_s = max(0.0, gb_s_day * month - p["functions_flex_free_gb_s"])
    fn_exec = max(0.0, executions_day * month - p["functions_flex_free_executions"])
    cost["functions"] = _figure(
        fn_gb_s * p["functions_flex_per_gb_s"]
        + fn_exec / 1e6 * p["functions_flex_per_million_executions"],
        "USD/month",
        "function_gb_s_per_day",
        "function_executions_per_day",
        "functions_flex_per_gb_s",
        "functions_flex_per_million_executions",
        "functions_flex_free_gb_s",
        "functions_flex_free_executions",
    )
    if groups_day or w.online_minutes_per_active_user:
        included = (units or WEB_PUBSUB_MAX_UNITS.value) * p[
            "web_pubsub_free_messages_per_unit_day"
        ]
        extra = max(0.0, pubsub_messages_day - included) / 1e6
        pubsub = (
            (units or WEB_PUBSUB_MAX_UNITS.value) * p["web_pubsub_per_unit_day"]
            + extra * p["web_pubsub_per_million_messages"]
        ) * month
    else:
        pubsub = 0.0
    cost["web_pubsub"] = _figure(
        pubsub,
        "USD/month",
        "web_pubsub_units",
        "web_pubsub_messages_per_day",
        "web_pubsub_per_unit_day",
        "web_pubsub_free_messages_per_unit_day",
        "web_pubsub_per_million_messages",
    )
    output = turns_day * w.answer_tokens * month / 1e6 * p["openai_output_per_million"]
    no_cache = turns_day * prompt_turn * month / 1e6 * p["openai_input_per_million"] + output
    with_cache = (
        turns_day
        * month
        / 1e6
        * (
            (prompt_turn - cached_turn) * p["openai_input_per_million"]
            + cached_turn * p["openai_cached_per_million"]
        )
        + output
    )
    model_prices = (
        "openai_input_per_million",
        "openai_cached_per_million",
        "openai_output_per_million",
    )
    cost["model_without_cache"] = _figure(
        no_cache, "USD/month", "prompt_tokens_per_turn", *model_prices
    )
    cost["model_with_cache"] = _figure(
        with_cache,
        "USD/month",
        "prompt_tokens_per_turn",
        "cached_tokens_per_turn",
        *model_prices,
    )
    platform = storage_year + cost["functions"]["value"] + pubsub
    cost["total_serverless_month_12"] = _figure(
        serverless + platform + with_cache, "USD/month", *cost
    )
    cost["total_autoscale_month_12"] = _figure(
        autoscale + platform + with_cache, "USD/month", *cost
    )
    r["cost"] = cost
    return r


def break_even(w: Workload, m: Measured, prices: dict[str, Price]) -> dict[str, Any]:
    """The number of users (the workload otherwise the same) from which autoscale's throughput
    costs less than serverless request units; and the average RU/s there."""

    def gap(users: float) -> float:
        c = model(dataclasses.replace(w, users=users), m, prices)["cost"]
        return float(c["cosmos_autoscale_throughput"]["value"] - c["cosmos_serverless_ru"]["value"])

    low, high = 1.0, 1.0
    while gap(high) > 0:
        low, high = high, high * 2
        if high > 1e10:
            return {"users": None, "why": "serverless stays cheaper"}
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if gap(mid) > 0 else (low, mid)
    at = model(dataclasses.replace(w, users=high), m, prices)
    return {
        "users": round(high),
        "daily_active_users": round(high * w.active_share),
        "ru_per_s_average": at["ru_per_s_average"]["value"],
        "ru_per_s_peak": at["ru_per_s_peak"]["value"],
        "from": ["cosmos_serverless_ru", "cosmos_autoscale_throughput"],
    }


# -- limits on the way -----------------------------------------------------------------------


def check_limits(figures: dict[str, float], w: Workload) -> list[dict[str, Any]]:
    """Each limit the workload meets (at or over it), with the documented number and its page.
    ``figures``: the model's values by name (see ``flag_inputs``)."""
    checks: list[tuple[str, float, float, str]] = [
        (
            "serverless_rus_per_container",
            figures["ru_per_s_peak_active_container"],
            SERVERLESS_RUS_PER_CONTAINER.value,
            "serverless cannot serve the peak in the active container: provisioned (autoscale)",
        ),
        (
            "serverless_storage_per_container_gb",
            max(figures["storage_gb_active_year"], figures["storage_gb_archive_year"]),
            SERVERLESS_STORAGE_PER_CONTAINER_GB.value,
            "a container outgrows serverless within the year: provisioned, or retention",
        ),
        (
            "logical_partition_gb",
            figures["heaviest_partition_gb_year"],
            LOGICAL_PARTITION_GB.value,
            "the heaviest user's conversations fill a logical partition within the year",
        ),
        (
            "flex_max_instances",
            figures["function_instances_peak"],
            FLEX_MAX_INSTANCES.value,
            "more instances than Flex Consumption allows one app: raise per-instance concurrency",
        ),
        (
            "maximum_instance_count",
            figures["function_instances_peak"],
            w.maximum_instance_count,
            "more instances than the stack's maximumInstanceCount: raise it",
        ),
        (
            "web_pubsub_max_units",
            figures["web_pubsub_connections_peak"] / WEB_PUBSUB_CONNECTIONS_PER_UNIT.value,
            WEB_PUBSUB_MAX_UNITS.value,
            "more connections than one Web PubSub instance holds",
        ),
        (
            "archive_time_budget_s",
            figures["archival_pass_s"],
            w.archive_time_budget_s,
            "the nightly pass needs longer than ARCHIVE_TIME_BUDGET_S: stale conversations pile "
            "up; raise archiveConcurrency or archiveTimeBudgetSeconds, or run passes more often",
        ),
        (
            "openai_capacity",
            figures["model_capacity_units_needed"],
            w.openai_capacity,
            "the peak needs more model capacity than the stack's openAiCapacity",
        ),
    ]
    flags = []
    for name, value, limit, meaning in checks:
        if value >= limit:
            source = LIMITS.get(name)
            flags.append(
                {
                    "limit": name,
                    "value": float(f"{value:.6g}"),
                    "documented": limit,
                    "url": source.url if source else "infra/stack_config.py (this stack's setting)",
                    "meaning": meaning,
                }
            )
    return flags


def flag_inputs(results: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v["value"]) for k, v in results.items() if k != "cost" and v["value"] is not None
    }


def estimate(w: Workload, m: Measured, prices: dict[str, Price] = DEFAULT_PRICES) -> dict[str, Any]:
    results = model(w, m, prices)
    return {
        "workload": dataclasses.asdict(w) | {"daily_active_users": w.daily_active},
        "measured": {
            "source": m.source,
            "inputs": {
                name: {"value": _measured_value(m, name), "path": path}
                for name, path in m.paths.items()
            },
        },
        "prices": {k: dataclasses.asdict(v) for k, v in prices.items()},
        "limits": {k: dataclasses.asdict(v) for k, v in LIMITS.items()},
        "results": results,
        "break_even": break_even(w, m, prices),
        "flags": check_limits(flag_inputs(results), w),
    }


def _measured_value(m: Measured, name: str) -> Any:
    if name.startswith("prompt_tokens."):
        return [list(row) for row in m.prompt_tokens[name.split(".", 1)[1]]]
    value = getattr(m, name, None)
    if isinstance(value, tuple):
        return [list(row) for row in value]
    return value


# -- output ---------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(report: dict[str, Any]) -> str:
    w, r, source = report["workload"], report["results"], report["measured"]["source"]
    lines = [
        f"Workload: {_fmt(w['users'])} users, {_fmt(w['daily_active_users'])} active a day, "
        f"{_fmt(w['turns_per_active_user'])} turns each, peak {w['peak_to_average']}x average",
        f"Measured inputs: {source['file']}, {source['run']['mode']} run of "
        f"{source['run']['date']} (commit {source['run']['commit']})"
        + "".join(
            f"; {step} of {a['date']} ({a['mode']}, commit {a['commit']})"
            for step, a in source["added"].items()
        ),
        "",
        "| figure | value | unit |",
        "|---|---:|---|",
    ]
    for name, fig in r.items():
        if name != "cost":
            lines.append(f"| {name} | {_fmt(fig['value'])} | {fig['unit']} |")
    lines += ["", "| monthly cost | USD |", "|---|---:|"]
    for name, fig in r["cost"].items():
        lines.append(f"| {name} | {_fmt(fig['value'])} |")
    be = report["break_even"]
    lines += [
        "",
        "Cosmos DB, serverless against autoscale: "
        + (
            f"autoscale is cheaper from {_fmt(be['users'])} users "
            f"({_fmt(be['daily_active_users'])} daily; {be['ru_per_s_average']} RU/s on average, "
            f"{be['ru_per_s_peak']} at peak)"
            if be["users"]
            else be["why"]
        ),
        "",
        "Limits met:" if report["flags"] else "Limits met: none",
    ]
    for f in report["flags"]:
        lines.append(
            f"- {f['limit']}: {_fmt(f['value'])} against {_fmt(f['documented'])} "
            f"({f['meaning']}; {f['url']})"
        )
    return "\n".join(lines)


def _parse_price(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in DEFAULT_PRICES or not value:
        raise argparse.ArgumentTypeError(
            f"--price NAME=VALUE, NAME one of {sorted(DEFAULT_PRICES)}"
        )
    return name, float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), help="an example of docs/capacity.md")
    parser.add_argument("--latest", type=Path, default=LATEST, help="the benchmark's results")
    parser.add_argument("--json", action="store_true", help="JSON instead of the table")
    parser.add_argument("--price", type=_parse_price, action="append", default=[])
    casts: dict[str, Callable[[str], Any]] = {}
    for f in dataclasses.fields(Workload):
        cast: Callable[[str], Any] = {"int": int, "float": float, "str": str}[str(f.type)]
        casts[f.name] = cast
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=cast, default=None, help=f"default {f.default}"
        )
    args = parser.parse_args(argv)
    base = PRESETS[args.preset] if args.preset else Workload()
    given = {name: getattr(args, name) for name in casts if getattr(args, name) is not None}
    workload = dataclasses.replace(base, **given)
    prices = dict(DEFAULT_PRICES)
    for name, value in args.price:
        prices[name] = dataclasses.replace(prices[name], note="given on the command line")
        prices[name] = dataclasses.replace(prices[name], value=value)
    try:
        measured = load_measured(args.latest)
    except MissingMeasurement as exc:
        print(f"capacity: {exc}", file=sys.stderr)
        return 2
    report = estimate(workload, measured, prices)
    print(json.dumps(report, indent=1) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

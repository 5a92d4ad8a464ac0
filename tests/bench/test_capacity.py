"""The capacity model (bench/capacity.py): one user worked by hand, the break-even point, each
limit flag at its documented threshold, and every figure of the JSON traceable to an input."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bench import capacity
from bench.capacity import (
    DEFAULT_PRICES,
    LATEST,
    LIMITS,
    Measured,
    Workload,
    check_limits,
    estimate,
    load_measured,
    model,
)

# Round figures, so that every result below can be checked by hand.
MEASURED = Measured(
    turn_ru=((1, 20.0), (10, 20.0)),
    open_ru=10.0,
    search_ru=((100, 5.0), (1000, 5.0)),
    archive_ru_per_message=20.0,
    archive_sessions_per_s=100.0,
    archive_measured_concurrency=8,
    message_overhead_bytes=500.0,
    archive_message_overhead_bytes=500.0,
    session_item_bytes=1000.0,
    archive_session_item_bytes=1000.0,
    stub_item_bytes=200.0,
    usage_item_bytes=300.0,
    prompt_tokens={
        "sliding": ((1, 1000.0, 0.0), (10, 1000.0, 0.0)),
        "blocks": ((1, 1000.0, 500.0), (10, 1000.0, 500.0)),
    },
    host_turn_ms=100.0,
    host_read_ms=50.0,
)
ONE_USER = Workload(
    users=1,
    active_share=1.0,
    turns_per_active_user=1,
    user_message_chars=1000,
    answer_chars=1000,
    answer_tokens=500,
    conversation_turns=1,
    opens_per_active_user=1,
    searches_per_active_user=1,
    group_messages_per_active_user=0,
    online_minutes_per_active_user=0,
    peak_to_average=1,
    peak_hours=4,
    answer_seconds=9.9,
    heaviest_user_factor=1,
    index_factor=1.0,
    archive_after_days=30,
    retention_days=0,
    archive_concurrency=8,
    context_window="blocks",
    instance_memory_mb=2048,
    http_per_instance_concurrency=16,
)
UNIT_PRICES = {
    name: dataclasses.replace(price, value=0.0 if "free" in name else 1.0)
    for name, price in DEFAULT_PRICES.items()
} | {
    "openai_cached_per_million": dataclasses.replace(
        DEFAULT_PRICES["openai_cached_per_million"], value=0.5
    )
}


def _values(results: dict[str, Any]) -> dict[str, Any]:
    out = {k: v["value"] for k, v in results.items() if k != "cost"}
    return out | {f"cost.{k}": v["value"] for k, v in results["cost"].items()}


def test_one_user_by_hand() -> None:
    v = _values(model(ONE_USER, MEASURED, UNIT_PRICES))
    # A turn 20, an open 10, a search 5, and the day's one conversation (two messages)
    # archived later, 2 x 20.
    assert v["ru_per_day"] == 75
    assert v["ru_per_s_average"] == pytest.approx(75 / 86_400, rel=1e-5)
    # A turn stores two messages of 500 bytes beside 1,000 characters each, and a session
    # item of 1,000: 4,000 a day; plus a usage item of 300 a day.
    assert v["storage_gb_active_month"] == pytest.approx((30 * 4000 + 30 * 300) / 1e9)
    assert v["storage_gb_archive_month"] == 0
    # A year: 30 days active, 335 archived (their stubs, 200 each, stay in the active one).
    assert v["storage_gb_active_year"] == pytest.approx((30 * 4000 + 335 * 200 + 365 * 300) / 1e9)
    assert v["storage_gb_archive_year"] == pytest.approx(335 * 4000 / 1e9)
    assert v["heaviest_partition_gb_year"] == pytest.approx(335 * 3000 / 1e9)
    assert v["heaviest_partition_days_to_limit"] == pytest.approx(20e9 / 3000, rel=1e-5)
    assert v["archival_sessions_per_night"] == 1
    assert v["archival_pass_s"] == pytest.approx(0.01)
    assert v["archival_ru_per_night"] == 40
    # A turn, an open, a search and the archival timer; 10 s (model 9.9 + host 0.1) + 2 x 0.05
    # + the pass, alone on a 2 GB instance.
    assert v["function_executions_per_day"] == 4
    assert v["function_gb_s_per_day"] == pytest.approx((10 + 0.1 + 0.01) * 2)
    assert v["function_instances_peak"] == 1
    assert v["web_pubsub_messages_per_day"] == 0
    assert v["prompt_tokens_per_turn"] == 1000 and v["cached_tokens_per_turn"] == 500
    assert v["model_tokens_per_day"] == 1500
    assert v["model_capacity_units_needed"] == 1
    month = 30.4
    assert v["cost.cosmos_serverless_ru"] == pytest.approx(75 * month / 1e6)
    # Autoscale: at least 1,000 RU/s maximum, billed a tenth of it every hour.
    assert v["cosmos_autoscale_max_rus"] == 1000
    assert v["cost.cosmos_autoscale_throughput"] == pytest.approx(100 * 24 / 100 * month)
    assert v["cost.functions"] == pytest.approx(20.22 * month + 4 * month / 1e6)
    assert v["cost.model_without_cache"] == pytest.approx(1500 * month / 1e6)
    assert v["cost.model_with_cache"] == pytest.approx((500 + 250 + 500) * month / 1e6)
    assert v["cost.web_pubsub"] == 0


def test_retention_and_group_messages() -> None:
    kept = dataclasses.replace(ONE_USER, retention_days=60)
    v = _values(model(kept, MEASURED, UNIT_PRICES))
    # 60 days live: 30 active, 30 archived; usage items are counted for every day.
    assert v["storage_gb_archive_year"] == pytest.approx(30 * 4000 / 1e9)
    groups = dataclasses.replace(ONE_USER, group_messages_per_active_user=2, group_size=5)
    v = _values(model(groups, MEASURED, UNIT_PRICES))
    assert v["web_pubsub_messages_per_day"] == 10  # 2 x 5 deliveries, each under 2 KB
    assert v["web_pubsub_units"] == 1
    # One unit a day; these unit prices include no messages, so the 10 are paid for too.
    assert v["cost.web_pubsub"] == pytest.approx(30.4 + 10 * 30.4 / 1e6)


def test_break_even_between_serverless_and_autoscale() -> None:
    steady = dataclasses.replace(ONE_USER, peak_to_average=1)
    # At list prices, serverless costs 0.25 per million RU: 0.65664 a month per RU/s; autoscale
    # 0.012 per 100 RU/s-hour, 0.087552 a month per RU/s, but never under a tenth of 1,000 RU/s:
    # 8.7552 a month. Equal at 13.333 RU/s on average: 15,360 users of 75 RU a day.
    result = capacity.break_even(steady, MEASURED, DEFAULT_PRICES)
    assert result["users"] == pytest.approx(15_360, rel=1e-3)
    below = model(dataclasses.replace(steady, users=15_000), MEASURED, DEFAULT_PRICES)["cost"]
    above = model(dataclasses.replace(steady, users=16_000), MEASURED, DEFAULT_PRICES)["cost"]
    assert below["cosmos_serverless_ru"]["value"] < below["cosmos_autoscale_throughput"]["value"]
    assert above["cosmos_serverless_ru"]["value"] > above["cosmos_autoscale_throughput"]["value"]
    assert capacity.break_even(steady, MEASURED, UNIT_PRICES)["users"] is None


def test_autoscale_maximum_covers_the_storage() -> None:
    # At least 1 RU/s per GB stored, at the tenth autoscale scales down to: 10 RU/s per GB.
    cost, t_max = capacity.cosmos_autoscale_month(100.0, 100.0, 4, 0.012, storage_gb=0.0)
    assert t_max == 1000
    cost, t_max = capacity.cosmos_autoscale_month(100.0, 100.0, 4, 0.012, storage_gb=250.0)
    assert t_max == 3000  # 2,500, rounded up to the next 1,000
    assert cost == pytest.approx(300 * 24 / 100 * 0.012 * 30.4)


FIGURE_FOR = {
    "serverless_rus_per_container": ("ru_per_s_peak_active_container", 5_000),
    "serverless_storage_per_container_gb": ("storage_gb_archive_year", 1_000),
    "logical_partition_gb": ("heaviest_partition_gb_year", 20),
    "flex_max_instances": ("function_instances_peak", 1_000),
    "web_pubsub_max_units": ("web_pubsub_connections_peak", 100 * 1_000),
}


def _quiet() -> dict[str, float]:
    return {
        "ru_per_s_peak_active_container": 0.0,
        "storage_gb_active_year": 0.0,
        "storage_gb_archive_year": 0.0,
        "heaviest_partition_gb_year": 0.0,
        "function_instances_peak": 0.0,
        "web_pubsub_connections_peak": 0.0,
        "model_capacity_units_needed": 0.0,
        "archival_pass_s": 0.0,
    }


@pytest.mark.parametrize("limit", sorted(FIGURE_FOR))
def test_each_azure_limit_flags_at_its_documented_number(limit: str) -> None:
    figure, at = FIGURE_FOR[limit]
    # The documented numbers (checked against their pages, docs/capacity.md) are the constants.
    documented = LIMITS[limit].value * (1_000 if limit == "web_pubsub_max_units" else 1)
    assert documented == at
    # The stack's own setting out of the way (it is tested below).
    roomy = dataclasses.replace(ONE_USER, maximum_instance_count=10_000, openai_capacity=10_000)
    just_under = _quiet() | {figure: at - 0.001}
    assert [f["limit"] for f in check_limits(just_under, roomy)] == []
    flags = check_limits(_quiet() | {figure: at}, roomy)
    assert [f["limit"] for f in flags] == [limit]
    assert flags[0]["documented"] == LIMITS[limit].value
    assert flags[0]["url"].startswith("https://learn.microsoft.com/")


def test_the_stacks_own_settings_flag_too() -> None:
    w = dataclasses.replace(
        ONE_USER, maximum_instance_count=40, openai_capacity=10, archive_time_budget_s=240
    )
    assert check_limits(_quiet() | {"function_instances_peak": 39}, w) == []
    assert [f["limit"] for f in check_limits(_quiet() | {"function_instances_peak": 40}, w)] == [
        "maximum_instance_count"
    ]
    assert check_limits(_quiet() | {"archival_pass_s": 239.9}, w) == []
    assert [f["limit"] for f in check_limits(_quiet() | {"archival_pass_s": 240}, w)] == [
        "archive_time_budget_s"
    ]
    assert check_limits(_quiet() | {"model_capacity_units_needed": 9}, w) == []
    assert [
        f["limit"] for f in check_limits(_quiet() | {"model_capacity_units_needed": 10}, w)
    ] == ["openai_capacity"]


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def test_every_figure_of_the_json_traces_to_an_input(capsys: pytest.CaptureFixture[str]) -> None:
    """Against the committed results: each measured input is at its path in the file, and
    each result names only inputs (workload, measured, price) or other results."""
    assert capacity.main(["--preset", "company", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    data = json.loads(LATEST.read_text())
    for name, entry in report["measured"]["inputs"].items():
        assert _get(data, entry["path"]) is not None, name
    measured = load_measured()
    assert set(report["measured"]["inputs"]) == set(measured.paths)
    results = report["results"]
    known = (
        set(report["workload"])
        | set(measured.paths)
        | set(report["prices"])
        | set(results)
        | set(results["cost"])
    )
    figures = [v for k, v in results.items() if k != "cost"] + list(results["cost"].values())
    for figure in figures:
        assert figure["from"], figure
        assert set(figure["from"]) <= known, set(figure["from"]) - known
    # No figure of the model is typed into it: the same workload on other measurements moves.
    doubled = dataclasses.replace(
        measured, turn_ru=tuple((t, 2 * ru) for t, ru in measured.turn_ru)
    )
    w = capacity.PRESETS["company"]
    before = estimate(w, measured)["results"]["ru_per_turn"]["value"]
    assert estimate(w, doubled)["results"]["ru_per_turn"]["value"] == pytest.approx(2 * before)


def test_every_price_names_its_page_and_date() -> None:
    for name, price in DEFAULT_PRICES.items():
        assert price.source.startswith("https://"), name
        assert price.read == "2026-12-05", name
        assert price.note, name
    for name, limit in LIMITS.items():
        assert limit.url.startswith("https://learn.microsoft.com/"), name

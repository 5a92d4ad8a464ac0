"""Writing the results: latest.json, summary.md and PNG plots under bench/results/, and the
generated part of docs/performance.md."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt

from bench.common import RESULTS, ROOT

TURNS_PNG = "turn_bytes.png"
LATENCY_PNG = "latency.png"
CACHE_PNG = "prompt_cache.png"


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("**pass**" if met else "**miss**")


DESIGNS = (
    ("parley", "Parley", "#2471a3"),
    ("baseline", "whole-document baseline", "#c0392b"),
    ("langchain", "LangChain CosmosDBChatMessageHistory", "#7d3c98"),
)


def plot_turns(turns: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for key, label, color in DESIGNS:
        per_turn = turns.get(f"{key}_bytes_per_turn")
        if per_turn:
            xs = range(1, len(per_turn) + 1)
            width = 2 if key == "parley" else 1.5
            ax.plot(xs, [b / 1024 for b in per_turn], label=label, color=color, linewidth=width)
    # The baselines grow with the conversation and Parley does not: only a log scale shows all
    # three.
    ax.set_yscale("log")
    ax.set_xlabel("turn number in the conversation")
    ax.set_ylabel("KiB on the wire per turn (sent + received, log scale)")
    ax.set_title("Cosmos bytes per chat turn (local Cosmos server)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(latency: dict[str, Any], path: Path) -> None:
    backends = [b for b in ("sqlite", "cosmos") if "host" in latency.get(b, {})]
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), dpi=110)
    axes = axes if len(backends) > 1 else [axes]
    for ax, backend in zip(axes, backends, strict=True):
        data = latency[backend]
        keys = list(data["host"])
        xs = range(len(keys))
        width = 0.4
        host = [data["host"][k]["p50_ms"] for k in keys]
        floor = [data["floor"][k]["p50_ms"] for k in keys]
        host99 = [data["host"][k]["p99_ms"] for k in keys]
        ax.bar([x - width / 2 for x in xs], host, width, label="host p50", color="#2471a3")
        ax.bar([x + width / 2 for x in xs], floor, width, label="store floor p50", color="#7f8c8d")
        ax.scatter(
            [x - width / 2 for x in xs],
            host99,
            marker="_",
            s=200,
            color="k",
            label="host p99",
            zorder=3,
        )
        ax.set_xticks(list(xs), keys, rotation=45, ha="right")
        ax.set_ylabel("ms")
        ax.set_title(f"{backend}: latency by operation@concurrency")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _ru(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def _ops(kinds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in kinds.items()) or "none"


def _compare_md(t: dict[str, Any]) -> list[str]:
    lines = [
        "| turn | Parley bytes | whole-doc bytes | LangChain bytes | whole-doc / Parley "
        "| LangChain / Parley | requests (P / W / L) | request units (P / W / L) |",
        "|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for p, b, lc in zip(t["parley"], t["baseline"], t["langchain"], strict=True):
        lines.append(
            f"| {p['turn']} | {p['bytes']:,} | {b['bytes']:,} | {lc['bytes']:,} "
            f"| {b['bytes'] / p['bytes']:.1f}x | {lc['bytes'] / p['bytes']:.1f}x "
            f"| {p['requests']} / {b['requests']} / {lc['requests']} "
            f"| {_ru(p['ru'])} / {_ru(b['ru'])} / {_ru(lc['ru'])} |"
        )
    return [*lines, ""]


def _parley_md(t: dict[str, Any]) -> list[str]:
    lines = [
        "| turn | requests | operations | sent | received | request units |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for p in t["parley"]:
        lines.append(
            f"| {p['turn']} | {p['requests']} | {_ops(p['kinds'])} | {p['sent']:,} "
            f"| {p['received']:,} | {_ru(p['ru'])} |"
        )
    return [*lines, ""]


def _budgets_md(t: dict[str, Any]) -> list[str]:
    last, at = t["last_turn"], t["compare_turn"]
    lc, wd = t["ratio_langchain_over_parley"], t["ratio_baseline_over_parley"]
    ratio_100 = t["ratio_langchain_over_parley_bytes_at_100"]
    over = t["turns_over_request_budget"] or "none"
    short = f"(n/a: this run ends at turn {last})"
    growth = t["parley_growth_last_vs_turn25"]
    return [
        f"- At turn {at}: LangChain / Parley bytes **{lc['bytes']}x** (sent {lc['sent']}x, "
        f"received {lc['received']}x); whole-document / Parley **{wd['bytes']}x** (sent "
        f"{wd['sent']}x, received {wd['received']}x).",
        "- Budget, at most 3 Cosmos requests in a turn after the first: "
        f"{_ok(t['budget_requests_met'])} (turns over: {over}).",
        f"- Budget, turn {last} within 10% of turn {t['growth_from_turn']} (bytes): "
        f"{growth}x, {_ok(t['budget_growth_met'])}. Whole-document baseline: "
        f"{t['baseline_growth_last_vs_turn25']}x.",
        "- Budget, steady-state bytes at least 20x fewer than LangChain's at turn "
        f"{t['langchain_turn']}: "
        + (f"{ratio_100}x, {_ok(t['budget_langchain_ratio_met'])}." if ratio_100 else short),
        "",
    ]


def _charge_note(t: dict[str, Any]) -> str:
    seen = t.get("charges_seen") or []
    if not seen:
        return "Request units: the local server sent no `x-ms-request-charge`, so they read n/a."
    note = (
        "Request units are the local server's `x-ms-request-charge`, summed per request: a "
        "**local estimate**, not what Azure would bill."
    )
    if len(seen) == 1:
        note += (
            f" Every request was charged the same {seen[0]:g} RU here: the server's charge is a "
            "flat placeholder, so these figures count requests rather than estimate cost."
        )
    if not t.get("requests_charged"):
        note += " Some responses carried no charge; they count as 0."
    return note


def _phases_md(t: dict[str, Any]) -> list[str]:
    ph = t["phases"]
    first, last = ph["turns"]
    lines = [
        f"Parley turns {first} to {last} (steady state), by phase: mean requests, bytes and "
        "request units (local estimate); median milliseconds. A phase's wall time is its span "
        "of the turn (the spans add up to the turn); 'inside' is the time spent within its own "
        "Cosmos requests, or within the model for the model phase. Phases come from the "
        "requests the transport saw and when the model ran: reads before the first write, "
        "the writes before the model, the model, the writes after it (bench/phases.py).",
        "",
        "| phase | requests | operations | sent | received | request units "
        "| wall ms (p50) | inside ms (p50) |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in ph["phases"].items():
        if name == "other" and not row["requests"]:
            continue
        lines.append(
            f"| {name} | {row['requests']:g} | {_ops(row['kinds'])} | {row['sent']:,} "
            f"| {row['received']:,} | {_ru(row['ru'])} | {row['wall_ms_p50']:.3f} "
            f"| {row['inside_ms_p50']:.3f} |"
        )
    lines += [f"| **turn** | | | | | | **{ph['turn_ms_p50']:.3f}** | |", ""]
    return lines


def _turns_md(t: dict[str, Any]) -> list[str]:
    if "not_available" in t or "error" in t:
        return [f"Not available: {t.get('not_available') or t.get('error')}", ""]
    return [
        "Per turn, the three designs on the same messages: Parley, the whole-document design "
        "of earlier systems (bench/baseline.py: read + upsert the whole session per message), "
        "and LangChain's `CosmosDBChatMessageHistory` (bench/langchain_history.py: read the "
        "history, then upsert the whole session per message). P / W / L: Parley, "
        "whole-document, LangChain.",
        "",
        *_compare_md(t),
        *_budgets_md(t),
        _charge_note(t),
        "",
        "**Parley per turn**",
        "",
        *_parley_md(t),
        "**Where a Parley turn goes**",
        "",
        *_phases_md(t),
    ]


def _latency_md(lat: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for backend in ("sqlite", "cosmos"):
        data = lat.get(backend, {})
        lines.append(f"**{backend}**")
        lines.append("")
        if "host" not in data:
            lines += [f"Not available: {data.get('not_available', 'not measured')}", ""]
            continue
        lines += [
            "| op@concurrency | host p50 | p95 | p99 | req/s | floor p50 | floor p99 "
            "| overhead p50 | overhead p99 | host/floor p50 | budget |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, h in data["host"].items():
            f, o = data["floor"][key], data["overhead"][key]
            budget = _ok(o["budget_met"]) if key.endswith("@1") else "(queueing)"
            lines.append(
                f"| {key} | {h['p50_ms']:.2f} | {h['p95_ms']:.2f} | {h['p99_ms']:.2f} "
                f"| {h['throughput_rps']} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} "
                f"| {o['overhead_p50_ms']:.2f} | {o['overhead_p99_ms']:.2f} | {o['ratio_p50']} "
                f"| {budget} |"
            )
        lines.append("")
    lines += [
        "Times in ms. The floor is the same store methods timed in-process on the same data "
        "(chat: read_turn + 2 appends; list: list_sessions; get: get_session + "
        "page_messages). The budget (overhead p50 < 5 ms, p99 < 20 ms) is judged at "
        "concurrency 1; at 8 and 32 the single host process, the client and the store share "
        f"{lat.get('nproc', 'the')} cores, so the difference is mostly queueing. "
        "p99 of a difference of two runs is noisy; a negative value means noise.",
        "",
    ]
    return lines


def _cold_md(c: dict[str, Any]) -> list[str]:
    lines = [
        f"| import (fresh process, median of {c['runs']}) | ms | ratio to azure.functions "
        "| ratio to azure.functions + extension |",
        "|---|---:|---:|---:|",
        f"| azure.functions | {c['azure_functions_median_ms']} | 1.00 | |",
        "| azure.functions + azurefunctions.extensions.http.fastapi | "
        f"{c['with_fastapi_extension_median_ms']} | {c['extension_ratio']} | 1.00 |",
        f"| function_app | {c['function_app_median_ms']} | {c['ratio_to_azure_functions']} "
        f"| **{c['ratio']}** |",
        "",
        f"Budget: function_app within {c['budget_ratio']}x of azure.functions + the HTTP "
        f"streaming extension (SSE on Azure needs it): {_ok(c['budget_met'])}.",
    ]
    if c.get("heaviest_imports"):
        heavy = ", ".join(
            f"{r['module']} {r['cumulative_ms']:.0f} ms" for r in c["heaviest_imports"]
        )
        lines.append(f"Heaviest imports (`-X importtime`, cumulative): {heavy}.")
    return [*lines, ""]


def _stubs_md(s: dict[str, Any]) -> list[str]:
    if "ratio" not in s:
        return [f"Stubs: not available: {s.get('not_available') or s.get('error')}", ""]
    without, present = s["without_stubs"], s["with_stubs"]
    return [
        f"Request units of one pass (archiving {s['sessions_archived']} stale sessions, with "
        f"housekeeping and retention), without stubs and with {s['stubs']:,} stubs that earlier "
        "passes left in the active container (local estimate):",
        "",
        "| stubs present | pass RU | of which queries | requests "
        "| the former stale scan (`NOT IS_DEFINED`) |",
        "|---:|---:|---:|---:|---:|",
        f"| 0 | {_ru(without['pass_request_units'])} | {_ru(without['scan_request_units'])} "
        f"| {without['pass_requests']} | {_ru(without['legacy_stale_scan_request_units'])} |",
        f"| {s['stubs']:,} | {_ru(present['pass_request_units'])} "
        f"| {_ru(present['scan_request_units'])} | {present['pass_requests']} "
        f"| {_ru(present['legacy_stale_scan_request_units'])} |",
        "",
        f"With stubs / without: {s['ratio']}x. Budget: a pass's request units do not grow with "
        f"the stubs of earlier passes (at most {s['budget_ratio']}x): {_ok(s['budget_met'])}.",
        "",
    ]


def _analytics_md(a: dict[str, Any]) -> list[str]:
    if "at_all" not in a:
        return [f"Not measured: {a.get('not_available', 'no result')}.", ""]
    lines = [
        f"SQLite, users with {a['sessions_per_user']} sessions each (one answered turn a "
        "session), the last 30 days; computed at a fifth of the users and at all of them:",
        "",
        "| users | turns | seconds | peak memory (MiB) |",
        "|---:|---:|---:|---:|",
    ]
    for key in ("at_a_fifth", "at_all"):
        r = a[key]
        lines.append(f"| {r['users']} | {r['turns']} | {r['seconds']} | {r['peak_memory_mib']} |")
    return [*lines, ""]


def _archive_md(a: dict[str, Any]) -> list[str]:
    lines = [
        "| store | sessions x messages | concurrency | seconds | sessions/s | peak memory (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backend, r in a.items():
        if backend == "stubs":
            continue
        if "sessions" in r:
            lines.append(
                f"| {backend} | {r['sessions']} x {r['messages_per_session']} "
                f"| {r.get('concurrency', 1)} | {r['seconds']} "
                f"| {r['sessions_per_s']} | {r['peak_memory_mib']} |"
            )
        else:
            lines.append(f"| {backend} | not available: {r.get('not_available')} | | | |")
    traced = ", ".join(
        f"{r['traced_sessions_per_s']} sessions/s on {backend}"
        for backend, r in a.items()
        if "traced_sessions_per_s" in r
    )
    note = (
        "The rate is a pass timed as it runs in production. Peak memory is Python allocations "
        "during a second pass over as many fresh sessions under tracemalloc, which slows Python "
        "code several times" + (f" (that pass ran at {traced})." if traced else ".")
    )
    cosmos = a.get("cosmos", {})
    if "budget_met" in cosmos:
        note += (
            f" Budget on the local Cosmos server: at least {cosmos['budget_sessions_per_s']} "
            f"sessions/s (five times the first version's): {_ok(cosmos['budget_met'])}."
        )
    stubs = [*_stubs_md(a["stubs"])] if "stubs" in a else []
    return [*lines, "", note, "", *stubs]


def _checkpoints_md(c: dict[str, Any]) -> list[str]:
    if "with" not in c:
        return [f"Not available: {c.get('not_available') or c.get('error')}", ""]
    lines = [
        f"One turn whose answer is {c['tokens']:,} tokens, streamed over {c['model_s']:g} s of "
        f"model time (simulated), `STREAM_CHECKPOINT_MS` = {c['interval_ms']}: *without* "
        "checkpoints the answer ends within one interval (written once, whole, as before), "
        "*with* them it is created at the first checkpoint, patched once per interval and "
        'written whole at the end (docs/design.md, "Streaming checkpoints").',
        "",
        "| answer | requests | bytes | request units (local estimate) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("without", "with"):
        row = c[name]
        lines.append(f"| {name} checkpoints | {row['requests']} | {row['bytes']:,} | {row['ru']} |")
    lines += [
        "",
        f"Checkpoints add {c['extra_requests']} requests, {c['extra_bytes']:,} bytes and "
        f"{c['extra_ru']} request units to that answer "
        f"(one write per interval at most: {_ok(c['budget_extra_requests_met'])}); an answer "
        f"within one interval costs what a steady turn costs: "
        f"{_ok(c['budget_whole_answer_unchanged'])}.",
        "",
    ]
    return lines


def _reads_md(r: dict[str, Any]) -> list[str]:
    if "pages" not in r:
        return [f"Not available: {r.get('not_available') or r.get('error')}", ""]
    p = r["pages"]
    lines = [
        f"A conversation of {p['session_messages']:,} messages, paged backwards "
        f"{p['page_size']} at a time (`GET /api/sessions/{{id}}/messages?before=`):",
        "",
        "| page | requests | bytes | request units (local estimate) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("page_1", "page_20"):
        row = p[name]
        lines.append(
            f"| {name.replace('_', ' ')} | {row['requests']} | {row['bytes']:,} "
            f"| {_ru(row['request_units'])} |"
        )
    lines += [
        "",
        f"Page 20 / page 1 bytes: {p['ratio_bytes_20_over_1']}x; one query each: "
        f"{_ok(p['budget_met'])}.",
        "",
        *search_md(r["search"]),
    ]
    return [*lines, ""]


def search_md(s: dict[str, Any]) -> list[str]:
    """The search measurement's table (also printed alone by ``--step search``)."""
    if "rows" not in s:
        return [f"Not available: {s.get('not_available') or s.get('error')}", ""]
    lines = [
        "Search for a phrase in one message, by how many messages the user has: the whole "
        "search through the full-text index, and its two lookups (messages, titles) beside the "
        "two `CONTAINS` scans of the user's partition they replaced:",
        "",
        "| user's messages | search: requests | bytes | RU | lookups: RU | `CONTAINS` scans: RU "
        "| bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in s["rows"]:
        lines.append(
            f"| {row['messages']:,} | {row['requests']} | {row['bytes']:,} "
            f"| {_ru(row['request_units'])} | {_ru(row['lookups']['request_units'])} "
            f"| {_ru(row['contains']['request_units'])} | {row['contains']['bytes']:,} |"
        )
    if "ratio_ru_last_over_first" in s:
        lines += [
            "",
            f"Search request units at the largest size / the smallest: "
            f"{s['ratio_ru_last_over_first']}x (budget {s['growth_budget']}x): "
            f"{_ok(s['budget_met'])}.",
        ]
    return [*lines, ""]


def plot_prompt_cache(cache: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for policy, label, color in (
        ("sliding", "sliding window", "#c0392b"),
        ("blocks", "window kept for the cache", "#2471a3"),
    ):
        rows = cache[policy]["rows"]
        turns = [r["turn"] for r in rows]
        ax.plot(turns, [r["prompt_tokens"] for r in rows], label=f"{label}: prompt", color=color)
        ax.plot(
            turns,
            [r["prompt_tokens"] - r["cached_tokens"] for r in rows],
            label=f"{label}: not cached",
            color=color,
            linestyle="--",
        )
    ax.set_xlabel("turn")
    ax.set_ylabel("prompt tokens")
    ax.set_title("The model's input per turn (simulated Azure OpenAI prompt cache)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


CACHE_TURNS = (1, 2, 10, 25, 50, 100, 101, 102, 103, 104, 150, 200)


def _prompt_cache_md(c: dict[str, Any]) -> list[str]:
    if "sliding" not in c:
        return [f"Not measured: {c.get('not_available') or c.get('error')}", ""]
    price = (
        f"${c['price_input_per_m']:.2f} per million input tokens and "
        f"${c['price_cached_per_m']:.2f} per million cached input tokens"
    )
    lines = [
        f"One {c['turns']}-turn conversation per window, the same questions and answers, "
        f"through the service (OpenAI-compatible adapter, SQLite store) against a model server "
        f"that caches prompt prefixes as Azure OpenAI does; `MAX_CONTEXT_TOKENS` "
        f"{c['max_context_tokens']}, `MAX_HISTORY_MESSAGES` {c['max_history_messages']}. "
        f"Input cost at {price}. Context kept: the window's history against the limit that "
        "binds (messages or estimated tokens).",
        "",
        "| turn | sliding: prompt | cached | context | cost (US$) "
        "| blocks: prompt | cached | context | cost (US$) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sliding = {r["turn"]: r for r in c["sliding"]["rows"]}
    blocks = {r["turn"]: r for r in c["blocks"]["rows"]}
    for turn in CACHE_TURNS:
        if turn not in sliding:
            continue
        cells = []
        for rows in (sliding, blocks):
            r = rows[turn]
            cells += [
                f"{r['prompt_tokens']:,}",
                f"{r['cached_tokens']:,}",
                f"{r['context_fraction']:.2f}",
                f"{r['input_cost_usd']:.5f}",
            ]
        lines.append(f"| {turn} | " + " | ".join(cells) + " |")
    s, b = c["sliding"]["steady"], c["blocks"]["steady"]
    lines += [
        "",
        f"Steady state (turns {s['from_turn']} to {c['turns']}, averages per turn):",
        "",
        "| window | prompt tokens | cached tokens | cached share | context kept (min) "
        "| input cost (US$) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in (("sliding", s), ("blocks", b)):
        lines.append(
            f"| {name} | {row['prompt_tokens']:,.0f} | {row['cached_tokens']:,.0f} "
            f"| {row['cached_share']:.0%} | {row['context_fraction']:.2f} "
            f"({row['min_context_fraction']:.2f}) | {row['input_cost_usd']:.5f} |"
        )
    lines += [
        "",
        f"Budgets: steady-state input cost at most 0.5x the sliding window's: "
        f"{c['cost_ratio_blocks_over_sliding']}x {_ok(c['budget_cost_met'])}; average context "
        f"kept at least 0.75 of the budget: {b['context_fraction']} "
        f"{_ok(c['budget_context_met'])}.",
        "",
    ]
    return lines


def summary_md(results: dict[str, Any], plot_prefix: str) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['nproc']} x {m['cpu']}, Python {m['python']} "
        f"({m['platform']}), commit {m['commit']}, mode `{results['mode']}`. "
        "`make bench` reruns it; `make bench-quick` is the same, smaller.",
        "",
        "### Cost of a chat turn as the conversation grows (local Cosmos server)",
        "",
        "Bytes on the wire per turn (request line, headers and body sent; status line, headers "
        "and body received), requests and request units, counted by wrappers around the "
        "SDK's transports (aiohttp for the async client, requests for the sync one).",
        "",
        *_turns_md(results["turns"]),
        f"![bytes per turn]({plot_prefix}{TURNS_PNG})",
        "",
        "### Request latency through the local host (echo model)",
        "",
        *_latency_md(results["latency"]),
        f"![latency]({plot_prefix}{LATENCY_PNG})",
        "",
        "### Cold start",
        "",
        *_cold_md(results["cold_start"]),
        "### Archival pass",
        "",
        *_archive_md(results["archival"]),
        "### The operators' report (python -m shared.report)",
        "",
        *_analytics_md(results.get("analytics", {"not_available": "not measured"})),
        "### A long answer stored as it grows (local Cosmos server)",
        "",
        *_checkpoints_md(results.get("checkpoints", {"not_available": "not measured"})),
        "### Reading as the data grows (local Cosmos server)",
        "",
        *_reads_md(results.get("reads", {"not_available": "not measured"})),
        "### The model's input with a prompt cache",
        "",
        *_prompt_cache_md(results.get("prompt_cache", {"not_available": "not measured"})),
        *(
            [f"![prompt tokens per turn]({plot_prefix}{CACHE_PNG})", ""]
            if "sliding" in results.get("prompt_cache", {})
            else []
        ),
    ]
    return "\n".join(lines)


def headline_md(results: dict[str, Any]) -> str:
    """The few figures the README shows (its "Performance" section), from the same run."""
    m, t = results["machine"], results["turns"]
    lines = []
    if "parley" in t:
        turn = {row["turn"]: row for row in t["parley"]}[t["compare_turn"]]
        langchain = t["ratio_langchain_over_parley_bytes_at_100"]
        against = (
            f": {langchain:.1f}x fewer bytes than LangChain's `CosmosDBChatMessageHistory` on "
            "the same messages"
            if langchain
            else ""
        )
        lines.append(
            f"- A chat turn at turn {t['compare_turn']} moves {turn['bytes']:,} bytes in "
            f"{turn['requests']} Cosmos DB requests ({turn['ru']} request units, local "
            f"estimate){against}; turn {t['last_turn']} costs "
            f"{t['parley_growth_last_vs_turn25']}x what turn {t['growth_from_turn']} does."
        )
    cosmos = results["archival"].get("cosmos", {})
    if "sessions_per_s" in cosmos:
        lines.append(
            f"- An archival pass moves {cosmos['sessions_per_s']} sessions a second "
            f"({cosmos['sessions']:,} sessions of {cosmos['messages_per_session']} messages, "
            f"{cosmos['concurrency']} at a time) with {cosmos['peak_memory_mib']} MiB of "
            "Python allocations at its peak."
        )
    cache = results.get("prompt_cache", {})
    if "sliding" in cache:
        lines.append(
            f"- With a prompt cache, a long conversation's model input costs "
            f"{cache['cost_ratio_blocks_over_sliding']}x what a window sliding one message a "
            f"turn costs, keeping {cache['blocks']['steady']['context_fraction']:.0%} of the "
            "context on average (simulated Azure OpenAI prefix caching)."
        )
    cold = results["cold_start"]
    if "ratio" in cold:
        lines.append(
            f"- The app imports in {cold['function_app_median_ms']} ms: {cold['ratio']}x "
            "what `azure.functions` and its HTTP streaming extension take alone."
        )
    lines.append(
        f"\nMeasured by `make bench` ({results['mode']} run) on {m['nproc']} x {m['cpu']} "
        f"against the local Cosmos DB server, commit {m['commit']}; "
        "[docs/performance.md](docs/performance.md) has the tables and what they mean."
    )
    return "\n".join(lines)


README = ROOT / "README.md"
README_START = "<!-- bench:headline: rewritten by `make bench` -->"
README_END = "<!-- /bench:headline -->"


def write_headline(headline: str, readme: Path, template: Path = README) -> None:
    """``template`` with ``headline`` between its headline markers, into ``readme``."""
    text = template.read_text()
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise RuntimeError(f"{readme} has no {README_START!r} ... {README_END!r} block")
    readme.write_text(f"{head}{README_START}\n{headline}\n{README_END}{tail}")


PAGE = ROOT / "docs" / "performance.md"
# docs/performance.md: everything above this line is written by hand and kept; everything
# below it is replaced by every run.
PAGE_MARKER = "<!-- bench:generated: everything below this line is rewritten by `make bench` -->"


def write(results: dict[str, Any], out: Path = RESULTS) -> None:
    """Write latest.json, summary.md and the plots to ``out``, the performance page and the
    README's headline figures: a run into the committed results folder rewrites
    docs/performance.md below its marker and the README's headline block; a run elsewhere (the
    test suite's) writes both beside its results, so the committed files stay as they are but
    everything is still generated."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    if "parley_bytes_per_turn" in results["turns"]:
        plot_turns(results["turns"], out / TURNS_PNG)
    plot_latency(results["latency"], out / LATENCY_PNG)
    if "sliding" in results.get("prompt_cache", {}):
        plot_prompt_cache(results["prompt_cache"], out / CACHE_PNG)
    body = summary_md(results, "")
    (out / "summary.md").write_text("# Parley benchmark: latest results\n\n" + body + "\n")
    committed = out.resolve() == RESULTS.resolve()
    page = PAGE if committed else out / "performance.md"
    prefix = Path(os.path.relpath(out.resolve(), page.parent.resolve())).as_posix() + "/"
    write_page(summary_md(results, prefix), page)
    write_headline(headline_md(results), README if committed else out / "README.md")


def write_page(section: str, page: Path, template: Path = PAGE) -> None:
    """The hand-written top of ``template`` up to its marker, then ``section``, into ``page``."""
    head, marker, _ = template.read_text().partition(PAGE_MARKER)
    if not marker:
        raise RuntimeError(f"{template} has no line {PAGE_MARKER!r} to write the results below")
    page.write_text(f"{head}{PAGE_MARKER}\n\n{section}\n")

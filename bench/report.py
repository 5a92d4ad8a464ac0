"""Writing the results: latest.json, summary.md, PNG plots, and the README's Performance section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt

from bench.common import RESULTS, ROOT

TURNS_PNG = "turn_bytes.png"
LATENCY_PNG = "latency.png"


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("**pass**" if met else "**miss**")


def plot_turns(turns: dict[str, Any], path: Path) -> None:
    parley = turns["parley_bytes_per_turn"]
    baseline = turns["baseline_bytes_per_turn"]
    xs = range(1, len(parley) + 1)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(xs, [b / 1024 for b in baseline], label="whole-document baseline", color="#c0392b")
    ax.plot(xs, [b / 1024 for b in parley], label="Parley", color="#2471a3", linewidth=2)
    ax.set_xlabel("turn number in the conversation")
    ax.set_ylabel("KiB on the wire per turn (sent + received)")
    ax.set_title("Cosmos bytes per chat turn (local Cosmos server)")
    ax.grid(alpha=0.3)
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


def _turns_md(t: dict[str, Any]) -> list[str]:
    if "not_available" in t:
        return [f"Not available: {t['not_available']}", ""]
    last = t["last_turn"]
    lines = [
        "| turn | Parley requests | Parley sent | Parley received | Parley ops "
        "| baseline requests | baseline sent | baseline received | baseline / Parley bytes |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for p, b in zip(t["parley"], t["baseline"], strict=True):
        ops = ", ".join(f"{k} {v}" for k, v in p["kinds"].items())
        ratio = b["bytes"] / p["bytes"]
        lines.append(
            f"| {p['turn']} | {p['requests']} | {p['sent']:,} | {p['received']:,} | {ops} "
            f"| {b['requests']} | {b['sent']:,} | {b['received']:,} | {ratio:.1f}x |"
        )
    lines += [
        "",
        f"- Baseline / Parley at turn {last}: bytes "
        f"**{t['ratio_baseline_over_parley_bytes_at_last']}x** (sent "
        f"{t['ratio_baseline_over_parley_sent_at_last']}x, received "
        f"{t['ratio_baseline_over_parley_received_at_last']}x).",
        f"- Parley growth, turn {last} / turn 2: {t['parley_growth_last_vs_turn2']}x "
        f"({_ok(t['budget_growth_vs_turn2_met'])} against 'within 10%': the context window in "
        "the session item fills up to MAX_HISTORY_MESSAGES=20 by turn 10, then stays bounded); "
        f"turn {last} / turn 10: {t['parley_growth_last_vs_turn10']}x "
        f"({_ok(t['budget_growth_vs_turn10_met'])}). "
        f"Baseline turn {last} / turn 2: {t['baseline_growth_last_vs_turn2']}x.",
        "- At most 1 point read and 2 batches per turn, nothing else: "
        f"{_ok(t['budget_operations_met'])} "
        f"(turns over: {t['turns_over_operation_budget'] or 'none'}).",
        "",
    ]
    return lines


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
        "(chat: get_session + 2 commits; list: list_sessions; get: get_session + "
        "list_messages). The budget (overhead p50 < 5 ms, p99 < 20 ms) is judged at "
        "concurrency 1; at 8 and 32 the single host process, the client and the store share "
        f"{lat.get('nproc', 'the')} cores, so the difference is mostly queueing. "
        "p99 of a difference of two runs is noisy; a negative value means noise.",
        "",
    ]
    return lines


def _cold_md(c: dict[str, Any]) -> list[str]:
    lines = [
        f"| import (fresh process, median of {c['runs']}) | ms | ratio to azure.functions |",
        "|---|---:|---:|",
        f"| azure.functions | {c['azure_functions_median_ms']} | 1.00 |",
    ]
    if c.get("with_fastapi_extension_median_ms"):
        lines.append(
            "| azure.functions + azurefunctions.extensions.http.fastapi | "
            f"{c['with_fastapi_extension_median_ms']} | {c['extension_ratio']} |"
        )
    lines += [
        f"| function_app | {c['function_app_median_ms']} | **{c['ratio']}** |",
        "",
        f"Budget <= {c['budget_ratio']}x: {_ok(c['budget_met'])}.",
    ]
    if c.get("heaviest_imports"):
        heavy = ", ".join(
            f"{r['module']} {r['cumulative_ms']:.0f} ms" for r in c["heaviest_imports"]
        )
        lines.append(f"Heaviest imports (`-X importtime`, cumulative): {heavy}.")
    return [*lines, ""]


def _archive_md(a: dict[str, Any]) -> list[str]:
    lines = [
        "| store | sessions x messages | seconds | sessions/s | peak memory (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, r in a.items():
        if "sessions" in r:
            lines.append(
                f"| {backend} | {r['sessions']} x {r['messages_per_session']} | {r['seconds']} "
                f"| {r['sessions_per_s']} | {r['peak_memory_mib']} |"
            )
        else:
            lines.append(f"| {backend} | not available: {r.get('not_available')} | | | |")
    return [*lines, "", "Peak memory is Python allocations during the pass (tracemalloc).", ""]


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
        "and body received), counted by a wrapper around the SDK's aiohttp transport.",
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
    ]
    return "\n".join(lines)


README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"


def write(results: dict[str, Any], out: Path = RESULTS) -> None:
    """Write latest.json, summary.md and the plots to ``out``; a run into the committed
    results folder also refreshes the README's Performance section."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    if "parley_bytes_per_turn" in results["turns"]:
        plot_turns(results["turns"], out / TURNS_PNG)
    plot_latency(results["latency"], out / LATENCY_PNG)
    body = summary_md(results, "")
    (out / "summary.md").write_text("# Parley benchmark: latest results\n\n" + body + "\n")
    if out == RESULTS:
        update_readme(summary_md(results, "bench/results/"))


def update_readme(section: str, readme: Path = ROOT / "README.md") -> None:
    """Replace what stands between the README's bench markers with the latest figures."""
    text = readme.read_text()
    head, start, rest = text.partition(README_START)
    _, end, tail = rest.partition(README_END)
    if not start or not end:
        raise RuntimeError(f"README.md has no {README_START} … {README_END} markers")
    readme.write_text(f"{head}{README_START}\n{section}\n{README_END}{tail}")

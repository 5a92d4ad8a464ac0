"""``python -m bench [--quick]``: run every measurement and write bench/results/ and
docs/performance.md. ``python -m bench --step search [--quick]``: only the search measurement
(bench/reads.py), written to ``search.json`` in ``--out`` (the page and the other results stay
as they are): the full sizes take minutes, not the hour of the whole run.

Exits non-zero if a measurement breaks (a budget miss is reported, not a failure), so
``make bench-quick`` in the test suite catches a benchmark that has rotted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import (
    analytics,
    archival,
    checkpoints,
    coldstart,
    latency,
    prompt_cache,
    reads,
    report,
    storage,
    turns,
)
from bench.common import RESULTS, Cosmos, NotAvailable, cosmos_account, machine


@dataclass(frozen=True)
class Plan:
    report_turns: list[int]
    levels: list[int]
    requests: int
    import_runs: int
    archive_sessions: int
    cosmos_archive_sessions: int
    import_detail: bool  # also time the FastAPI extension alone, and list the heavy imports
    search_sizes: list[int]  # messages of the users searched
    archive_stubs: int  # stubs of earlier passes present for the pass counted in request units
    cache_turns: int  # turns of each conversation of the prompt-cache comparison
    report_users: int = 1000  # the operators' report: users, each with
    report_sessions: int = 20  # this many sessions


# Turn 25 stays in both: the growth budget compares the last turn with it.
FULL = Plan(
    [1, 2, 10, 25, 50, 100, 200],
    [1, 8, 32],
    640,
    11,
    1000,
    1000,
    True,
    [100, 1000, 10000, 100000],
    10000,
    200,
)
# Quick: every measurement still runs (LangChain's history for 50 turns, like Parley and the
# whole-document baseline), small enough for 60 s on 2 busy cores.
QUICK = Plan([1, 2, 10, 25, 50], [1, 8], 48, 5, 100, 30, False, [100, 1000], 500, 100, 50, 4)


def _step(name: str, fn: Callable[[], dict[str, Any]], failures: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    try:
        result = fn()
    except NotAvailable as exc:
        print(f"bench: {name}: not available: {exc}", file=sys.stderr)
        return {"not_available": str(exc)}
    except Exception as exc:  # report every broken step, then fail the run
        traceback.print_exc()
        failures.append(f"{name}: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return result


def _cosmos_step(
    name: str,
    cosmos: Cosmos | None,
    fn: Callable[[Cosmos], dict[str, Any]],
    failures: list[str],
) -> dict[str, Any]:
    if cosmos is None:
        return {"not_available": "the Cosmos store or server is not available"}
    return _step(name, lambda: fn(cosmos), failures)


@contextlib.contextmanager
def _maybe_cosmos(failures: list[str]) -> Iterator[Cosmos | None]:
    try:
        with cosmos_account() as account:
            yield account
    except NotAvailable as exc:
        failures.append(f"the local Cosmos server is not available: {exc}")
        yield None


def _archival(cosmos: Cosmos | None, plan: Plan, failures: list[str]) -> dict[str, Any]:
    from shared.storage.sqlite import SqliteStore

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        db = Path(tmp) / "archive.db"
        out["sqlite"] = _step(
            "archival (sqlite)",
            lambda: archival.run(lambda: SqliteStore(db), plan.archive_sessions),
            failures,
        )
    database = f"bench-archive-{int(time.time())}"
    out["cosmos"] = _cosmos_step(
        "archival (cosmos)",
        cosmos,
        lambda c: archival.run(lambda: c.store(database), plan.cosmos_archive_sessions),
        failures,
    )
    out["stubs"] = _cosmos_step(
        "archival with stubs (cosmos)",
        cosmos,
        lambda c: archival.run_stubs(c, plan.archive_stubs),
        failures,
    )
    return out


def _analytics(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        return analytics.run(Path(tmp) / "report.db", plan.report_users, plan.report_sessions)


# Measurements that can be run alone and added to an earlier full run's results.
ONLY: dict[str, Callable[[Cosmos | None, Plan, list[str]], dict[str, Any]]] = {
    "reads": lambda cosmos, plan, failures: _cosmos_step(
        "reads (pages, search)", cosmos, lambda c: reads.run(c, plan.search_sizes), failures
    ),
    "turns": lambda cosmos, plan, failures: _cosmos_step(
        "turn cost", cosmos, lambda c: turns.run(c, plan.report_turns), failures
    ),
    "storage": lambda cosmos, plan, failures: _cosmos_step(
        "storage per conversation", cosmos, lambda c: storage.run(c), failures
    ),
    "prompt_cache": lambda cosmos, plan, failures: _step(
        "model input with a prompt cache", lambda: prompt_cache.run(plan.cache_turns), failures
    ),
}


def _only(steps: list[str], plan: Plan, out: Path) -> int:
    path = out / "latest.json"
    results: dict[str, Any] = json.loads(path.read_text())
    failures: list[str] = []
    with _maybe_cosmos(failures) as cosmos:
        for step in steps:
            results[step] = ONLY[step](cosmos, plan, failures)
            results.setdefault("added", {})[step] = {
                "mode": "quick" if plan is QUICK else "full",
                "machine": machine(),
            }
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    # Only the results file: the pages are generated from a whole run (an older run's file may
    # predate what the report now expects of each section).
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"bench: added {', '.join(steps)} to {path}", file=sys.stderr)
    return 0


STEPS = ("search",)


def _one_step(step: str, plan: Plan, out: Path, *, quick: bool) -> int:
    """One measurement alone (``--step``): its results and the machine, as JSON."""
    failures: list[str] = []
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "machine": machine()}
    with _maybe_cosmos(failures) as cosmos:
        results[step] = _cosmos_step(
            "search", cosmos, lambda c: reads.run_search(c, plan.search_sizes), failures
        )
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{step}.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(report.search_md(results[step])))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, under a minute")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where to write the results (default bench/results, which also rewrites the "
        "generated part of docs/performance.md; elsewhere the page is written beside them)",
    )
    parser.add_argument(
        "--only",
        choices=sorted(ONLY),
        action="append",
        help="run only this measurement (repeatable) and put it in the results already in "
        "--out, stamped with this run's machine and date under 'added'; the pages and plots "
        "are left as they are (a whole run rewrites them)",
    )
    parser.add_argument(
        "--step",
        choices=STEPS,
        help="run only this measurement and write its results as <step>.json in --out",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.only:
        return _only(args.only, plan, args.out)
    if args.step:
        return _one_step(args.step, plan, args.out, quick=args.quick)
    failures: list[str] = []
    started = time.perf_counter()
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full", "machine": machine()}
    with _maybe_cosmos(failures) as cosmos:
        results["turns"] = _cosmos_step(
            "turn cost", cosmos, lambda c: turns.run(c, plan.report_turns), failures
        )
        results["latency"] = _step(
            "latency", lambda: latency.run(cosmos, plan.levels, plan.requests), failures
        )
        results["latency"]["nproc"] = results["machine"]["nproc"]
        results["archival"] = _archival(cosmos, plan, failures)
        results["checkpoints"] = _cosmos_step(
            "a long answer with checkpoints",
            cosmos,
            lambda c: checkpoints.run(c, turns.MAX_REQUESTS_AFTER_FIRST),
            failures,
        )
        results["reads"] = _cosmos_step(
            "reads (pages, search)", cosmos, lambda c: reads.run(c, plan.search_sizes), failures
        )
        results["storage"] = _cosmos_step(
            "storage per conversation", cosmos, lambda c: storage.run(c), failures
        )
    results["analytics"] = _step("operators' report (sqlite)", lambda: _analytics(plan), failures)
    results["prompt_cache"] = _step(
        "model input with a prompt cache", lambda: prompt_cache.run(plan.cache_turns), failures
    )
    results["cold_start"] = _step(
        "cold start", lambda: coldstart.run(plan.import_runs, detail=plan.import_detail), failures
    )
    results["duration_s"] = round(time.perf_counter() - started, 1)
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    report.write(results, args.out)
    print((args.out / "summary.md").read_text())
    print(f"bench: done in {results['duration_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

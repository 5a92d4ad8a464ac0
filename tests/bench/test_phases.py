"""The benchmark's phase breakdown and request tally (bench/phases.py, bench/transport.py):
pure bookkeeping on made-up requests, so a store rewrite cannot silently misfile a phase."""

from __future__ import annotations

from bench.phases import TurnTrace, assign, breakdown
from bench.transport import Request, Tally, classify


def _req(kind: str, started: float, ended: float, charge: float | None = 1.0) -> Request:
    return Request(kind, started, ended, sent=100, received=200, charge=charge)


def _names(trace: TurnTrace) -> dict[str, list[str]]:
    return {phase: [r.kind for r in rs] for phase, rs in assign(trace).items() if rs}


def test_point_read_then_two_batches_around_the_model() -> None:
    trace = TurnTrace(
        0.0,
        10.0,
        [_req("point_read", 0.5, 1.0), _req("batch", 1.5, 2.0), _req("batch", 6.0, 7.0)],
        model_started=3.0,
        model_ended=5.0,
    )
    assert _names(trace) == {
        "read": ["point_read"],
        "first batch": ["batch"],
        "second batch": ["batch"],
    }
    phases = breakdown(trace)
    spans = [phases[p]["wall_ms"] for p in ("read", "first batch", "model", "second batch", "rest")]
    assert spans == [1000.0, 1000.0, 3000.0, 2000.0, 3000.0]
    assert sum(spans) == 10_000.0  # the spans add up to the turn
    assert phases["model"]["inside_ms"] == 2000.0
    assert phases["read"]["ru"] == 1.0 and phases["rest"]["ru"] is None


def test_a_query_is_a_read_and_metadata_is_other() -> None:
    trace = TurnTrace(
        0.0,
        10.0,
        [
            _req("meta", 0.1, 0.2),
            _req("query", 0.5, 1.0),
            _req("query", 1.0, 1.2),
            _req("batch", 1.5, 2.0),
            _req("batch", 6.0, 7.0),
        ],
        model_started=3.0,
        model_ended=5.0,
    )
    assert _names(trace) == {
        "read": ["query", "query"],
        "first batch": ["batch"],
        "second batch": ["batch"],
        "other": ["meta"],
    }


def test_a_new_session_has_no_read_phase() -> None:
    trace = TurnTrace(0.0, 4.0, [_req("batch", 0.5, 1.0), _req("batch", 3.0, 3.5)], 1.5, 2.5)
    assert _names(trace) == {"first batch": ["batch"], "second batch": ["batch"]}
    assert breakdown(trace)["read"]["wall_ms"] == 0.0


def test_request_units_are_summed_and_absent_charges_read_none() -> None:
    charged = Tally.of([_req("batch", 0, 1, 2.5), _req("point_read", 1, 2, 1.0)])
    assert (charged.requests, charged.bytes, charged.ru()) == (2, 600, 3.5)
    assert Tally.of([_req("batch", 0, 1, None)]).ru() is None


def test_classify_reads_and_writes() -> None:
    docs = "/dbs/d/colls/c/docs"
    assert classify("GET", f"{docs}/id1", {}) == "point_read"
    assert classify("POST", docs, {"x-ms-documentdb-isquery": "True"}) == "query"
    plan = {"x-ms-documentdb-isquery": "True", "x-ms-cosmos-is-query-plan-request": "True"}
    assert classify("POST", docs, plan) == "query_plan"
    assert classify("POST", docs, {"x-ms-cosmos-is-batch-request": "True"}) == "batch"
    assert classify("POST", docs, {"x-ms-documentdb-is-upsert": "True"}) == "upsert"
    assert classify("GET", "/dbs/d/colls/c", {}) == "meta"

"""``python -m shared.report``: the operators' figures from the configured store
(``docs/operations.md``, "Analytics").

The same figures as the Azure workbook (``infra/workbook/*.kql``), computed from what the store
keeps: every user's daily usage totals (active users, turns, tokens, the cached share of prompt
tokens, per UTC day) and the stored answers (tokens, ratings per model, and the latency each
answer is stored with, as quantiles of a fixed histogram: ``shared/quantiles.py``) and the
archival passes' records (``ArchiveRun``, one per pass). The store is read in pages
(``AnalyticsStore``); what is kept between pages is one row per day and one per model and two
fixed histograms, so memory does not grow with the data.

An operator's command, run on a workstation: the HTML output draws its charts with matplotlib,
a development requirement (``requirements-dev.txt``), never deployed with the app.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.quantiles import RELATIVE_ERROR, Histogram
from shared.storage.base import WHERES, AnalyticsStore
from shared.usage import period_key

PAGE = 500  # items per store page: what memory holds at once
MAX_DAYS = 366


@dataclass
class DayFigures:
    date: str
    active_users: int = 0
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class ArchivalDay:
    date: str
    runs: int = 0
    moved: int = 0
    failed: int = 0


@dataclass
class ModelFigures:
    model: str
    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    up: int = 0
    down: int = 0


@dataclass
class Report:
    days: list[DayFigures]
    models: dict[str, ModelFigures] = field(default_factory=dict)
    # Answer latency from the answers' stored timings (shared/quantiles.py: fixed memory).
    first_token: Histogram = field(default_factory=Histogram)
    total: Histogram = field(default_factory=Histogram)
    # Archival passes per day, from the passes' stored records.
    archival: list[ArchivalDay] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        prompt = sum(d.prompt_tokens for d in self.days)
        cached = sum(d.cached_tokens for d in self.days)
        return {
            "generatedAt": self.generated_at.isoformat(timespec="seconds"),
            "days": len(self.days),
            "totals": {
                "turns": sum(d.turns for d in self.days),
                "tokens": sum(d.tokens for d in self.days),
                "promptTokens": prompt,
                "completionTokens": sum(d.completion_tokens for d in self.days),
                "cachedTokens": cached,
                "cachedShare": round(cached / prompt, 4) if prompt else 0.0,
                "peakDailyActiveUsers": max((d.active_users for d in self.days), default=0),
            },
            "perDay": [
                {
                    "date": d.date,
                    "activeUsers": d.active_users,
                    "turns": d.turns,
                    "tokens": d.tokens,
                    "promptTokens": d.prompt_tokens,
                    "completionTokens": d.completion_tokens,
                    "cachedTokens": d.cached_tokens,
                }
                for d in self.days
            ],
            "perModel": [
                {
                    "model": m.model,
                    "answers": m.answers,
                    "promptTokens": m.prompt_tokens,
                    "completionTokens": m.completion_tokens,
                    "ratedUp": m.up,
                    "ratedDown": m.down,
                }
                for m in sorted(self.models.values(), key=lambda m: m.model)
            ],
            "latency": {
                "answers": self.total.count,
                "firstTokenMs": {
                    "median": self.first_token.quantile(0.5),
                    "p95": self.first_token.quantile(0.95),
                },
                "totalMs": {"median": self.total.quantile(0.5), "p95": self.total.quantile(0.95)},
                "relativeError": round(RELATIVE_ERROR, 4),
            },
            "archival": {
                "runs": sum(d.runs for d in self.archival),
                "moved": sum(d.moved for d in self.archival),
                "failed": sum(d.failed for d in self.archival),
                "perDay": [
                    {"date": d.date, "runs": d.runs, "moved": d.moved, "failed": d.failed}
                    for d in self.archival
                ],
            },
        }


async def compute(store: AnalyticsStore, *, days: int, now: datetime) -> Report:
    """The figures of the last ``days`` UTC days (today included), page by page."""
    first = (now - timedelta(days=days - 1)).astimezone(UTC)
    by_day = {
        period_key("day", first + timedelta(days=n)): DayFigures(
            (first + timedelta(days=n)).strftime("%Y-%m-%d")
        )
        for n in range(days)
    }
    keys = list(by_day)
    after: str | None = None
    while True:
        page, after = await store.scan_usage_days(keys[0], keys[-1], limit=PAGE, after=after)
        for item in page:
            day = by_day.get(item.period)
            if day is None:
                continue
            # One item per user and day: an item with a turn is one active user.
            day.active_users += 1 if item.turns else 0
            day.turns += item.turns
            day.prompt_tokens += item.prompt_tokens
            day.completion_tokens += item.completion_tokens
            day.cached_tokens += item.cached_tokens
        if after is None:
            break
    report = Report(days=list(by_day.values()), generated_at=now)
    since = first.replace(hour=0, minute=0, second=0, microsecond=0)
    for where in WHERES:
        after = None
        while True:
            answers, after = await store.scan_answers(since, where=where, limit=PAGE, after=after)
            for answer in answers:
                name = answer.model or "unknown"
                figures = report.models.setdefault(name, ModelFigures(name))
                figures.answers += 1
                figures.prompt_tokens += answer.prompt_tokens
                figures.completion_tokens += answer.completion_tokens
                figures.up += answer.rating == "up"
                figures.down += answer.rating == "down"
                # Answers stored before their timings were kept have none: not counted.
                if answer.total_ms is not None:
                    report.total.add(answer.total_ms)
                if answer.first_token_ms is not None:
                    report.first_token.add(answer.first_token_ms)
            if after is None:
                break
    archival = {d.date: ArchivalDay(d.date) for d in report.days}
    after = None
    while True:
        runs, after = await store.scan_archive_runs(since, limit=PAGE, after=after)
        for run in runs:
            passes = archival.get(run.at.astimezone(UTC).strftime("%Y-%m-%d"))
            if passes is None:  # a clock ahead of ``now``: not in the window
                continue
            passes.runs += 1
            passes.moved += run.moved
            passes.failed += run.failed
        if after is None:
            break
    report.archival = list(archival.values())
    return report


# ---- HTML ---------------------------------------------------------------------------------------


def to_html(report: Report) -> str:
    data = report.to_json()
    totals = data["totals"]
    rows = "".join(
        f"<tr><td>{html.escape(m['model'])}</td><td>{m['answers']:,}</td>"
        f"<td>{m['promptTokens'] + m['completionTokens']:,}</td>"
        f"<td>{m['ratedUp']:,}</td><td>{m['ratedDown']:,}</td></tr>"
        for m in data["perModel"]
    )
    latency = data["latency"]

    def ms(value: int | None) -> str:
        return "—" if value is None else f"{value:,} ms"

    latency_rows = "".join(
        f"<tr><th>{label}</th><td>{ms(latency[key]['median'])}</td>"
        f"<td>{ms(latency[key]['p95'])}</td></tr>"
        for label, key in (("First token", "firstTokenMs"), ("Whole answer", "totalMs"))
    )
    archival = data["archival"]
    archival_rows = "".join(
        f"<tr><td>{d['date']}</td><td>{d['runs']:,}</td><td>{d['moved']:,}</td>"
        f"<td>{d['failed']:,}</td></tr>"
        for d in archival["perDay"]
        if d["runs"]
    )
    # Drawn by matplotlib, a development requirement: the chart code is left out of the
    # deployed package (.funcignore), where no report is ever drawn.
    from shared.report.charts import charts

    figures = "".join(
        f'<figure aria-label="{html.escape(title)}">{svg}</figure>' for title, svg in charts(report)
    )
    # The data too, for whoever wants to look further (and no fetch: it works offline).
    embedded = base64.b64encode(json.dumps(data).encode()).decode()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley report</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 900px; }}
body {{ color: #1b1e28; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }}
figure {{ margin: 16px 0; }} figure svg {{ max-width: 100%; height: auto; }}
.muted {{ color: #5b6070; }}
</style></head><body>
<h1>Parley report</h1>
<p class="muted">The last {data["days"]} UTC days, generated {data["generatedAt"]} from the
configured store (the Azure workbook draws the same figures from the events).</p>
<table id="totals"><tbody>
<tr><th>Turns</th><td>{totals["turns"]:,}</td></tr>
<tr><th>Tokens</th><td>{totals["tokens"]:,}</td></tr>
<tr><th>Prompt tokens from the cache</th><td>{100 * totals["cachedShare"]:.1f}%</td></tr>
<tr><th>Peak daily active users</th><td>{totals["peakDailyActiveUsers"]:,}</td></tr>
</tbody></table>
<h2>Per model</h2>
<table id="models"><thead><tr><th>Model</th><th>Answers</th><th>Tokens</th><th>Rated up</th>
<th>Rated down</th></tr></thead><tbody>{rows}</tbody></table>
<h2>Answer latency</h2>
<p class="muted">{latency["answers"]:,} answers, from the timings stored with each; within
{100 * latency["relativeError"]:.1f}% (a fixed histogram, docs/operations.md).</p>
<table id="latency"><thead><tr><th></th><th>Median</th><th>p95</th></tr></thead>
<tbody>{latency_rows}</tbody></table>
<h2>Archival</h2>
<p class="muted">Passes: {archival["runs"]:,}; sessions moved: {archival["moved"]:,}, failed:
{archival["failed"]:,} (from each pass's stored record; days without a pass are left out).</p>
<table id="archival"><thead><tr><th>Day</th><th>Passes</th><th>Moved</th><th>Failed</th></tr>
</thead><tbody>{archival_rows}</tbody></table>
<h2>Charts</h2>
{figures}
<script type="application/json" id="report-data">{embedded}</script>
</body></html>
"""

"""What the model costs each user, and their budget (``docs/http.md``, "Usage and budgets").

Every model call made for a user (a turn's answer, a model-written title; later a group
question or a regenerate) goes through ``UsageMeter.record``: its prompt, completion and cached
prompt tokens, as the model reports them (estimated only when it reports none), are added to
the user's totals for the UTC day and the UTC month. Each total is one small record per user and
period that the store increments atomically (``ConversationStore.add_usage``), so concurrent
calls never lose a count.

``UsageMeter.check`` runs before a turn stores anything or calls the model: a user whose day
(``USER_DAILY_TOKEN_LIMIT``) or month (``USER_MONTHLY_TOKEN_LIMIT``) is spent gets 429
``quota_exceeded`` with ``Retry-After`` up to the reset. The check reads, the answer adds later:
turns that passed the check together may all be answered, so a limit is overshot by at most the
answers in flight when it was reached, never more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from shared.clock import Clock, iso
from shared.context import estimate_tokens
from shared.deadline import storage_budget
from shared.errors import QuotaExceeded, StorageUnavailable
from shared.llm.base import ModelMessage, Usage
from shared.storage.base import Spent

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.storage.base import ConversationStore

log = logging.getLogger("parley.usage")

Period = Literal["day", "month"]
PERIODS: tuple[Period, Period] = ("day", "month")
# The longest activity history ``GET /api/usage?days=N`` returns (the web view shows 30).
HISTORY_MAX_DAYS = 90
# Counting a call that storage refused (throttling: Cosmos applied nothing): attempts, and the
# longest pause between them. A storage failure that outlasts them loses that call's count
# (logged), never the answer. A write that timed out may have been applied: counted twice then.
RECORD_ATTEMPTS = 4
RECORD_PAUSE_CAP_S = 2.0


def period_key(period: Period, when: datetime) -> str:
    """The name of the ``period`` that contains ``when`` (UTC): ``day-2026-12-05``,
    ``month-2026-12``. Stores key a user's totals by it."""
    utc = when.astimezone(UTC)
    return f"day-{utc:%Y-%m-%d}" if period == "day" else f"month-{utc:%Y-%m}"


def period_keys(when: datetime) -> tuple[str, str]:
    """The day's and the month's keys, in that order."""
    return period_key("day", when), period_key("month", when)


def resets_at(period: Period, when: datetime) -> datetime:
    """When the ``period`` containing ``when`` ends: the next UTC midnight, or the first of the
    next month at UTC midnight."""
    utc = when.astimezone(UTC)
    midnight = utc.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return midnight + timedelta(days=1)
    first = midnight.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


def call_cost(
    messages: Sequence[ModelMessage], reply: str, usage: Usage | None, *, turn: bool
) -> Spent:
    """What one model call cost: the model's own figures, or the estimator's
    (``shared.context.estimate_tokens``) for whatever it did not report."""
    prompt = usage.prompt_tokens if usage is not None else None
    completion = usage.completion_tokens if usage is not None else None
    cached = usage.cached_tokens if usage is not None else None
    if prompt is None:
        prompt = sum(estimate_tokens(m["content"]) for m in messages)
    if completion is None:
        completion = estimate_tokens(reply) if reply else 0
    return Spent(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=min(cached or 0, prompt),
        turns=1 if turn else 0,
    )


class PeriodOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    tokens: int
    limit: int | None  # None: no limit for this period
    resets_at: str = Field(alias="resetsAt")
    prompt_tokens: int = Field(alias="promptTokens")
    completion_tokens: int = Field(alias="completionTokens")
    cached_tokens: int = Field(alias="cachedTokens")


class TurnsOut(BaseModel):
    day: int
    month: int


class DayOut(BaseModel):
    """One UTC day of the caller's own activity (``GET /api/usage?days=N``)."""

    model_config = ConfigDict(populate_by_name=True)

    date: str  # YYYY-MM-DD, UTC
    turns: int
    tokens: int
    prompt_tokens: int = Field(alias="promptTokens")
    completion_tokens: int = Field(alias="completionTokens")
    cached_tokens: int = Field(alias="cachedTokens")


class UsageOut(BaseModel):
    """``GET /api/usage``."""

    day: PeriodOut
    month: PeriodOut
    turns: TurnsOut
    # Only when asked for (``days``): oldest first, every day present (zeros when idle).
    history: list[DayOut] | SkipJsonSchema[None] = None

    def model_dump_json(self, **kwargs: Any) -> str:
        # No "history" key unless it was asked for: the response is exactly what it was.
        exclude = kwargs.pop("exclude", None) or set()
        if self.history is None:
            exclude = {*exclude, "history"}
        return super().model_dump_json(exclude=exclude, **kwargs)


class UsageMeter:
    """Counts what each user's model calls cost, and refuses turns past the budget."""

    def __init__(
        self,
        store: ConversationStore,
        settings: Settings,
        clock: Clock,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._sleep = sleep

    def limit(self, period: Period) -> int:
        """The period's limit in tokens; 0 means none."""
        if period == "day":
            return self.settings.user_daily_token_limit
        return self.settings.user_monthly_token_limit

    async def check(self, email: str) -> None:
        """Raise ``QuotaExceeded`` when the caller's day or month is spent (before a turn
        stores anything). No storage call when no limit is set."""
        limited = [period for period in PERIODS if self.limit(period) > 0]
        if not limited:
            return
        now = self.clock.now()
        keys = dict(zip(PERIODS, period_keys(now), strict=True))
        spent = await self.store.read_usage(email, [keys[p] for p in limited])
        spent_periods = [p for p in limited if spent.get(keys[p], Spent()).tokens >= self.limit(p)]
        if not spent_periods:
            return
        # Both spent: the caller can send again only once the later one resets.
        period = max(spent_periods, key=lambda p: resets_at(p, now))
        reset = resets_at(period, now)
        wait_s = max(1, int((reset - now).total_seconds() + 0.999))
        log.info("quota_exceeded", extra={"period": period})
        raise QuotaExceeded(
            f"Your {'daily' if period == 'day' else 'monthly'} token budget of "
            f"{self.limit(period):,} tokens is spent; you can send again after {iso(reset)}.",
            retry_after_s=wait_s,
        )

    async def record(
        self,
        email: str,
        messages: Sequence[ModelMessage],
        reply: str,
        usage: Usage | None,
        *,
        turn: bool,
    ) -> Spent:
        """Add one model call to the caller's day and month: the one function every feature
        that calls the model for a user goes through (``turn``: it answered a turn, which the
        turn counts show). A storage failure here is logged, never the caller's error: the
        answer is already theirs."""
        spent = call_cost(messages, reply, usage, turn=turn)
        periods = period_keys(self.clock.now())
        for attempt in range(RECORD_ATTEMPTS):
            try:
                # A storage budget of its own: the count comes after a model call of any
                # length, which may have spent the request's (shared/deadline.py).
                with storage_budget(self.settings.store_timeout_s):
                    await self.store.add_usage(email, periods, spent)
                return spent
            except StorageUnavailable as exc:
                # Throttled (nothing was applied) or unreachable: try again a few times.
                if attempt + 1 < RECORD_ATTEMPTS:
                    await self._sleep(min(exc.retry_after_s or 1, RECORD_PAUSE_CAP_S))
                    continue
                log.warning("usage_not_recorded %s", type(exc).__name__)
            except Exception as exc:  # the type only: nothing of the user in the log
                log.warning("usage_not_recorded %s", type(exc).__name__)
                break
        return spent

    async def report(self, email: str, *, days: int | None = None) -> UsageOut:
        now = self.clock.now()
        keys = period_keys(now)
        # The last ``days`` UTC days, today last: one read with the day and month.
        history_keys = [
            period_key("day", now - timedelta(days=back)) for back in reversed(range(days or 0))
        ]
        spent = await self.store.read_usage(email, list(dict.fromkeys([*keys, *history_keys])))
        periods = {
            period: spent.get(key, Spent()) for period, key in zip(PERIODS, keys, strict=True)
        }

        def out(period: Period) -> PeriodOut:
            total = periods[period]
            return PeriodOut(
                tokens=total.tokens,
                limit=self.limit(period) or None,
                resets_at=iso(resets_at(period, now)),
                prompt_tokens=total.prompt_tokens,
                completion_tokens=total.completion_tokens,
                cached_tokens=total.cached_tokens,
            )

        def day(key: str) -> DayOut:
            total = spent.get(key, Spent())
            return DayOut(
                date=key.removeprefix("day-"),
                turns=total.turns,
                tokens=total.tokens,
                prompt_tokens=total.prompt_tokens,
                completion_tokens=total.completion_tokens,
                cached_tokens=total.cached_tokens,
            )

        return UsageOut(
            day=out("day"),
            month=out("month"),
            turns=TurnsOut(day=periods["day"].turns, month=periods["month"].turns),
            history=[day(key) for key in history_keys] if days else None,
        )


# ---- what the operators' command and the export show -------------------------------------


def spent_json(spent: dict[str, Spent]) -> list[dict[str, object]]:
    """Totals by period as exports and the operators' command show them."""
    return [
        {
            "period": period,
            "promptTokens": total.prompt_tokens,
            "completionTokens": total.completion_tokens,
            "cachedTokens": total.cached_tokens,
            "turns": total.turns,
        }
        for period, total in spent.items()
    ]

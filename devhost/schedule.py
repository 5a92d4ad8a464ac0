"""NCRONTAB timers, as the Functions host runs them: six fields, seconds first."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.functions.timer import TimerRequest
from croniter import croniter

from shared.clock import Clock, SystemClock

log = logging.getLogger("parley.devhost")

_APP_SETTING = re.compile(r"^%([A-Za-z0-9_]+)%$")


def resolve_schedule(schedule: str, settings: Mapping[str, str]) -> str:
    """``%NAME%`` names an app setting, as in Azure; anything else is the expression itself."""
    match = _APP_SETTING.match(schedule.strip())
    if not match:
        return schedule
    name = match.group(1)
    if name not in settings:
        raise ValueError(f"timer schedule {schedule} names an app setting that is not set")
    return settings[name]


def next_fire(expression: str, after: datetime) -> datetime:
    fire: datetime = croniter(
        expression, after, ret_type=datetime, second_at_beginning=True
    ).get_next()
    return fire


@dataclass
class Timer:
    name: str
    expression: str
    function: Callable[..., Any]
    arg_name: str

    async def fire(self, *, past_due: bool = False) -> None:
        result = self.function(**{self.arg_name: TimerRequest(past_due=past_due)})
        if inspect.isawaitable(result):
            await result


Sleeper = Callable[[float], Awaitable[None]]


class TimerRunner:
    """Runs each timer at its next NCRONTAB time. ``clock`` and ``sleep`` are injectable so a
    test can drive the schedule without waiting for real time."""

    def __init__(
        self, timers: list[Timer], *, clock: Clock | None = None, sleep: Sleeper = asyncio.sleep
    ) -> None:
        self.timers = timers
        self.clock = clock or SystemClock()
        self.sleep = sleep

    async def run_one(self, timer: Timer, *, rounds: int | None = None) -> None:
        done = 0
        while rounds is None or done < rounds:
            now = self.clock.now()
            due = next_fire(timer.expression, now)
            await self.sleep(max((due - now).total_seconds(), 0.0))
            # Late by more than a minute counts as past due, as in the Functions host.
            past_due = (self.clock.now() - due).total_seconds() > 60
            try:
                await timer.fire(past_due=past_due)
            except Exception:  # a failing run must not stop the schedule
                log.exception("timer %s failed", timer.name)
            done += 1

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.run_one(t), name=f"timer:{t.name}") for t in self.timers]


def settings_environ() -> dict[str, str]:
    """Schedules resolve against the environment, falling back to the settings' defaults."""
    from shared.config import Settings

    defaults = {
        str(f.alias): str(f.default)
        for f in Settings.model_fields.values()
        if f.alias and isinstance(f.default, str)
    }
    return {**defaults, **os.environ}

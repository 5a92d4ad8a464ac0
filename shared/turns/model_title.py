"""A new conversation's model-written title (``TITLE_MODE=model``): asked beside the first
answer, stored with a conditional write, never replacing a title the user gave. It never fails
the turn: a failure is logged and the first-message title stays (``shared/titles.py`` holds the
title rules)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from shared.backoff import LostRace, RetriesExhausted, Sleep, retry_on_conflict
from shared.config import Settings
from shared.errors import ApiError, ConcurrencyConflict
from shared.events import LatencyTimer
from shared.llm.base import ChatModel
from shared.locating import locate
from shared.models import TitleSource
from shared.storage.base import ConversationStore, Spent
from shared.titles import MODEL_TITLE_MAX_TOKENS, clean_model_title, title_prompt
from shared.turns.answer import Answering
from shared.usage import UsageMeter

log = logging.getLogger("parley.turns")

# A model title is rarely contended; a few attempts, then the first-message title stays.
MAX_MODEL_TITLE_ATTEMPTS = 5


@dataclass(frozen=True)
class ModelTitles:
    store: ConversationStore
    model: ChatModel
    settings: Settings
    usage: UsageMeter
    answering: Answering
    sleep: Sleep

    def ask(self, email: str, session_id: str, first_message: str) -> Awaitable[str | None] | None:
        """The title to ask for a new session, or None when titles are not the model's."""
        if self.settings.resolved_title_mode != "model":
            return None
        return self.write(email, session_id, first_message)

    async def write(self, email: str, session_id: str, first_message: str) -> str | None:
        """Ask the model for a title and store it with a conditional write; never fails the
        turn: a failure is logged and the first-message title stays."""
        timer = LatencyTimer()
        try:
            prompt = title_prompt(first_message)
            answer = await asyncio.wait_for(
                self.model.complete(
                    prompt,
                    max_tokens=MODEL_TITLE_MAX_TOKENS,
                    timeout_s=self.settings.title_timeout_s,
                ),
                timeout=self.settings.title_timeout_s,
            )
            # A title call reports no usage through ``complete``: estimated (shared/usage/).
            spent = await self.usage.record(email, prompt, answer, None, turn=False)
            self.answering.event(email, "title", None, spent, "complete", timer)
            title = clean_model_title(answer)
            if title is None:
                log.warning("title_failed", extra={"session_id": session_id, "reason": "empty"})
                return None
            return await self._set_title(email, session_id, title, source="model")
        except (ApiError, TimeoutError) as exc:
            reason = exc.code if isinstance(exc, ApiError) else "timeout"
            log.warning("title_failed", extra={"session_id": session_id, "reason": reason})
        except Exception as exc:  # never a turn's error; the type only (messages quote data)
            log.error("title_failed %s", type(exc).__name__, extra={"session_id": session_id})
        self.answering.event(email, "title", None, Spent(), "failed", timer)
        return None

    async def _set_title(
        self, email: str, session_id: str, title: str, *, source: TitleSource
    ) -> str | None:
        """One conditional write of the title (retried on a race). A model title never
        replaces one the user set; returns the stored title, or None if it was not stored."""

        async def attempt(_: int) -> str | None:
            located = await locate(self.store, email, session_id)
            if located is None:
                return None
            session = located.session
            if source == "model" and session.title_source == "user":
                return None
            assert session.etag is not None
            try:
                await self.store.save_session(
                    session.model_copy(update={"title": title, "title_source": source}),
                    where=located.where,
                    expected_etag=session.etag,
                )
            except ConcurrencyConflict:
                raise LostRace() from None
            return title

        try:
            return await retry_on_conflict(
                attempt, attempts=MAX_MODEL_TITLE_ATTEMPTS, sleep=self.sleep
            )
        except RetriesExhausted:
            return None

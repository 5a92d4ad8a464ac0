"""An answer being generated, seen from any instance through the store (``docs/http.md``,
"Answers as they grow"): followed as it grows (GET .../stream) or asked to stop
(POST .../stop), the mark its generator meets at its next checkpoint."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from shared.answers import Ended, Followed, Grew, Resumed, ShownAt
from shared.backoff import Sleep
from shared.config import Settings
from shared.consistency import catch_up
from shared.deadline import storage_budget
from shared.errors import NotFound
from shared.ids import is_session_id
from shared.locating import Located, find, locate
from shared.models import MessageRecord
from shared.storage.base import ConversationStore
from shared.time_limits import turn_budget_s

log = logging.getLogger("parley.turns")

# An answer being generated is looked for among a session's newest messages (turns racing it
# may follow it), and, while a question may still be in its first checkpoint interval, looked
# for again this many times, once per interval.
IN_PROGRESS_LOOKBACK = 8
IN_PROGRESS_LOOKS = 3


@dataclass(frozen=True)
class AnswersInProgress:
    store: ConversationStore
    settings: Settings
    shown_at: Callable[[], ShownAt]
    # The pause between a follower's reads, one checkpoint interval (shared/answers.py).
    checkpoint_sleep: Sleep

    async def _growing(self, email: str, session_id: str) -> tuple[Located, list[MessageRecord]]:
        """The session, and its answers being generated now as the store has them. An answer in
        its first ``STREAM_CHECKPOINT_MS`` is not stored yet: while the newest message is a
        question that may still be being answered, look again once per interval, a few
        times (an answer that goes on is stored by then)."""
        interval_s = self.settings.stream_checkpoint_ms / 1000
        for attempt in range(IN_PROGRESS_LOOKS):
            with storage_budget(self.settings.store_timeout_s):
                # Another instance wrote the answer: a replica behind its writes must not hide
                # it (shared/consistency.py; nothing for a store whose reads never lag).
                await catch_up(self.store, email)
                located = await find(self.store, email, session_id)
                newest, _ = await self.store.page_messages(
                    email, session_id, where=located.where, limit=IN_PROGRESS_LOOKBACK
                )
            shown = self.shown_at()
            growing = [
                m for m in newest if m.role == "assistant" and shown(m).status == "streaming"
            ]
            asked = (
                bool(newest)
                and newest[-1].role == "user"
                and (shown.now - newest[-1].timestamp).total_seconds() < shown.budget_s
            )
            if growing or not asked or attempt == IN_PROGRESS_LOOKS - 1:
                return located, growing
            await self.checkpoint_sleep(interval_s)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stop_answer(self, email: str, session_id: str) -> bool:
        """POST .../stop: ask whichever instance generates this session's answer to stop it,
        through the store (a mark on the answer's item that its next checkpoint meets). True
        when an answer was being generated (202): it stops within about one
        ``STREAM_CHECKPOINT_MS`` and is stored ``"stopped"`` with its text so far."""
        if not is_session_id(session_id):
            raise NotFound()
        _, growing = await self._growing(email, session_id)
        asked = False
        for answer in growing:
            with storage_budget(self.settings.store_timeout_s):
                asked = await self.store.request_stop(email, session_id, answer.seq) or asked
        if asked:
            log.info("answer_stop_requested", extra={"session_id": session_id})
        return asked

    async def follow_answer(self, email: str, session_id: str) -> AsyncIterator[Followed]:
        """GET .../stream: the answer being generated in this session (on any instance), from
        the store, until it ends: what it holds now, then what it gains at each checkpoint
        (read once per ``STREAM_CHECKPOINT_MS``), then its end. Nothing being generated: it
        ends at once. A follow never outlasts a turn's time budget (shared/time_limits.py)."""
        if not is_session_id(session_id):
            raise NotFound()
        located, growing = await self._growing(email, session_id)
        if not growing:
            yield Ended(None)
            return
        answer = self.shown_at()(growing[-1])
        yield Resumed(answer)
        sent = answer.content
        interval_s = self.settings.stream_checkpoint_ms / 1000
        budget_s = turn_budget_s(
            llm_timeout_s=self.settings.llm_timeout_s,
            llm_max_retries=self.settings.llm_max_retries,
            store_timeout_s=self.settings.store_timeout_s,
            title_timeout_s=self.settings.title_timeout_s,
        )
        where = located.where
        behind = False
        for _ in range(max(1, int(budget_s / interval_s))):
            await self.checkpoint_sleep(interval_s)
            with storage_budget(self.settings.store_timeout_s):
                if behind:
                    # Nothing new last time: a silent model, or a replica behind the generating
                    # instance's writes. Only then are reads brought up to date (a growing
                    # answer costs its follower one read per interval).
                    await catch_up(self.store, email)
                now = await self.store.get_message(email, session_id, answer.seq, where=where)
                if now is None:
                    # Moved (archived, or restored by its final write) or deleted meanwhile.
                    found = await locate(self.store, email, session_id)
                    if found is None:
                        yield Ended(None)
                        return
                    where = found.where
                    now = await self.store.get_message(email, session_id, answer.seq, where=where)
            if now is None:
                continue  # a move under way: read again at the next interval
            now = self.shown_at()(now)
            behind = True
            if len(now.content) > len(sent) and now.content.startswith(sent):
                yield Grew(now.content[len(sent) :])
                sent, behind = now.content, False
            if now.status != "streaming":
                yield Ended(now)
                return
        # Past a turn's whole budget: the answer as it is now (it cannot still be generated).
        yield Ended(self.shown_at()(now) if now is not None else answer)

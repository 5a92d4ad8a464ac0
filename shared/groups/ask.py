"""A group question in flight: the asker's message is stored; the assistant's answer, when it
was asked, runs in a task of its own (``shared/inflight.py``, as a chat turn's does), so a
streaming client that goes away does not stop the answer from being stored, and the response
waits for it before it ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.groups.models import GroupMessageRecord
from shared.inflight import InFlight


@dataclass
class GroupSend(InFlight[GroupMessageRecord]):
    """A stored group message and, when it asked the assistant, its answer to come.
    ``deltas()`` streams the answer, ``result()`` waits for the stored messages."""

    group_id: str
    user: GroupMessageRecord

    async def result(self) -> list[GroupMessageRecord]:
        """The stored messages: the user's, then the answer when the assistant was asked."""
        answer = await self.stored_answer()
        return [self.user] if answer is None else [self.user, answer]

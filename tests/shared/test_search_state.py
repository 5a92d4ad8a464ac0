"""The state a search's page token carries (shared/search_state.py): it fits the URL it comes
back in whatever ``q`` is, round-trips, and says where to look up once the carried matches run
out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from shared.clock import stored_time
from shared.errors import InvalidRequest
from shared.ids import new_session_id
from shared.paging import encode_page_token
from shared.search_state import (
    URL_CHARS,
    Found,
    carry_room,
    decode_state,
    encode_state,
    order_key,
    ordered,
)
from shared.storage.base import MatchedSession

START = datetime(2031, 6, 1, tzinfo=UTC)


def matches(n: int) -> list[Found]:
    found = [
        Found(
            MatchedSession(new_session_id(), stored_time(START + timedelta(seconds=i)), i % 7, [1]),
            "active" if i % 2 else "archive",
        )
        for i in range(n)
    ]
    return ordered(found, "relevance")


@pytest.mark.parametrize("phrase", ["kiwi", "東京タワー" * 40, "x" * 200])
def test_the_token_fits_the_url_it_comes_back_in(phrase: str) -> None:
    rest = matches(2000)
    position = encode_state(rest, "relevance", None, carry_room(phrase))
    assert position is not None
    token = encode_page_token("key", "search:all:relevance:abc", position, "a@example.com")
    url = (
        f"/api/search?q={quote(phrase, safe='')}&limit=50&archived=all&order=relevance"
        f"&continuationToken={token}"
    )
    assert len(url) <= URL_CHARS
    state = decode_state(position)
    assert len(state.pending) >= 30  # a page and more, even for the longest q
    assert state.pending == rest[: len(state.pending)]
    assert state.resume == order_key(state.pending[-1], "relevance")  # look up after it


def test_all_of_a_small_rest_is_carried_with_what_lies_beyond() -> None:
    rest = matches(5)
    beyond = (0, "2031-01-01", "s_x")
    state = decode_state(encode_state(rest, "recent", beyond, carry_room("kiwi")) or "")
    assert state.pending == rest
    assert state.resume == beyond
    assert encode_state([], "recent", None, 1000) is None
    assert decode_state(encode_state([], "recent", beyond, 1000) or "").resume == beyond


@pytest.mark.parametrize("position", ["", "garbage", "eJwDAAAAAAE"])
def test_a_position_not_made_here_is_400(position: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_state(position)

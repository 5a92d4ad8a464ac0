"""The Parley-Consistency token: merging session tokens, sealing them for one caller, and what
is ignored (shared/consistency.py)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from shared import consistency
from shared.consistency import (
    MAX_TOKEN_CHARS,
    ReadTokens,
    merge_vectors,
    parse_session_token,
    request_hook,
    response_hook,
)

KEY = "k" * 32
ACTIVE = "https://acct:443/dbs/chat/colls/Conversations"


@pytest.fixture(autouse=True)
def tokens_of_this_test_only() -> Iterator[None]:
    """``begin()`` here runs outside any request, in the test thread's own context: without this
    reset the tokens outlive the test, and every later test's stores share them (two
    "instances" that then read each other's writes)."""
    reset = consistency._current.set(None)
    yield
    consistency._current.reset(reset)


def test_merging_keeps_the_highest_lsn_per_range() -> None:
    assert merge_vectors("-1#42", "-1#17") == "-1#42"
    assert merge_vectors("1#5", "2#3") == "2#3"  # a newer version wins
    assert merge_vectors("1#5#1=4#2=9", "1#7#1=6#2=2") == "1#7#1=6#2=9"
    tokens = ReadTokens()
    tokens.merge("chat/Conversations", "0:-1#42,1:-1#8")
    tokens.merge("chat/Conversations", "1:-1#9")
    tokens.merge("chat/Conversations", "0:-1#40")
    assert tokens.payload() == {"chat/Conversations": "0:-1#42,1:-1#9"}
    # A read sends ours merged with the SDK's own token for the range it targets.
    assert tokens.header_for("chat/Conversations", "0:-1#50") == "0:-1#50,1:-1#9"
    assert tokens.header_for("chat/ConversationsArchive", "0:-1#50") is None


@pytest.mark.parametrize("raw", ["", "0", "x:-1#4", "0:-1", "0:a#4", "0:-1#4,", "0:-1#4#x=1"])
def test_anything_but_a_session_token_is_not_one(raw: str) -> None:
    assert parse_session_token(raw) is None


def test_a_token_is_bound_to_its_caller_and_its_bytes() -> None:
    consistency.begin().merge("chat/Conversations", "0:-1#42")
    sealed = consistency.seal_for(KEY, "alice@example.com")
    assert sealed is not None
    body, _, mac = sealed.rpartition(".")
    ignored = {
        "another caller's": ("bob@example.com", sealed),
        "altered": ("alice@example.com", body + "." + ("A" if mac[0] != "A" else "B") + mac[1:]),
        "oversized": ("alice@example.com", sealed + "x" * MAX_TOKEN_CHARS),
        "malformed": ("alice@example.com", "%%%"),
        "empty": ("alice@example.com", ""),
    }
    for name, (owner, value) in ignored.items():
        consistency.begin()
        assert not consistency.adopt(KEY, owner, value), name
        assert consistency.current() is not None
        assert consistency.current().payload() == {}, name  # type: ignore[union-attr]
    consistency.begin()
    assert consistency.adopt(KEY, "alice@example.com", sealed)
    assert consistency.current().payload() == {"chat/Conversations": "0:-1#42"}  # type: ignore[union-attr]


def test_a_sealed_payload_with_a_bad_token_is_ignored_whole() -> None:
    from shared.signing import seal

    forged = seal(KEY, consistency.PURPOSE, "a@example.com", {"chat/C": "0:-1#4", "x": "junk"})
    consistency.begin()
    assert not consistency.adopt(KEY, "a@example.com", forged)
    assert consistency.current().payload() == {}  # type: ignore[union-attr]


def _request(method: str, url: str, **headers: str) -> SimpleNamespace:
    return SimpleNamespace(http_request=SimpleNamespace(method=method, url=url, headers=headers))


def test_the_hooks_send_tokens_on_reads_only_and_record_every_answer() -> None:
    tokens = consistency.begin()
    response = SimpleNamespace(
        http_request=SimpleNamespace(url=f"{ACTIVE}/docs/x"),
        http_response=SimpleNamespace(headers={"x-ms-session-token": "0:-1#7"}),
    )
    response_hook(response)  # a 412 of a write, say: its token counts
    assert tokens.payload() == {"chat/Conversations": "0:-1#7"}

    read = _request("GET", f"{ACTIVE}/docs/s_1", **{"x-ms-session-token": "0:-1#3"})
    request_hook(read)
    assert read.http_request.headers["x-ms-session-token"] == "0:-1#7"
    query = _request("POST", f"{ACTIVE}/docs", **{"x-ms-documentdb-isquery": "True"})
    request_hook(query)
    assert query.http_request.headers["x-ms-session-token"] == "0:-1#7"
    for write in (
        _request("POST", f"{ACTIVE}/docs"),
        _request("PUT", f"{ACTIVE}/docs/s_1"),
        _request("POST", f"{ACTIVE}/docs", **{"x-ms-cosmos-is-batch-request": "True"}),
        _request("GET", f"{ACTIVE}/pkranges"),
    ):
        request_hook(write)
        assert "x-ms-session-token" not in write.http_request.headers

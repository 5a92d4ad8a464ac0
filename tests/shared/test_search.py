"""Search through the service, on every store (``openapi.yaml``: GET /api/search;
docs/http.md, "Search"): a title or message matches when it holds every word of the phrase, in
any order; a word is a run of letters and digits, with case and (Latin letters') accents
folded, stemmed as English, matched whole. Nothing in a phrase is syntax.

The oracle is written here, independently of the stores: each search must find exactly the
messages (and titles) whose words include all of the phrase's words, and nothing else. The same
tests run on SQLite and on the local Cosmos server, so they decide that the two agree.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import unicodedata
from datetime import timedelta
from typing import Any, Literal

import pytest

from shared import search_state
from shared.errors import InvalidRequest
from shared.ids import message_item_id
from shared.search import HITS_PER_SESSION, SNIPPET_CHARS, TITLE_WEIGHT, SearchOrder
from shared.search_state import URL_CHARS
from shared.stemming import stem
from shared.storage.base import Store
from shared.storage.cosmos import CosmosStore
from shared.storage.sqlite import SqliteStore
from tests.support.conversations import Conversations
from tests.support.faulty import FaultyStore
from tests.support.scenarios import START, archive, make_service, pause_at, seed_session
from tests.support.stores import Runner

pytestmark = pytest.mark.filterwarnings("ignore:Unverified HTTPS request")

# One message per session, each holding one tricky phrase; the decoys are what a search that
# interpreted the phrase (as LIKE, regex, FTS5, Cosmos or plain SQL) would find instead.
TRICKY = {
    "50% off": "everything is 50% off today",
    "snake_case": "my snake_case name",
    "C:\\new": "the file is in C:\\new\\dir",
    '"hello world"': 'she wrote "hello world" in quotes',
    "a*b": "the glob a*b matches",
    "x-ray": "an x-ray of the hand",
    "NEAR(alpha omega)": "the token NEAR(alpha omega) is FTS5 syntax",
    "' OR 1=1 --": "classic ' OR 1=1 -- injection",
    "c.content, @q) OR (true": "cosmos c.content, @q) OR (true attempt",
    "text:secret": "an fts5 column filter text:secret here",
    "it's": "well it's fine",
    "^begin": "anchored ^begin marker",
    "{a b}": "braces {a b} group",
    "5%": "a 5% tip",
    "'; DROP TABLE messages; --": "bobby '; DROP TABLE messages; -- tables",
}
DECOYS = [
    "everything is 50 cents off",  # LIKE '%50% off%'
    "the cat",  # LIKE '%e_c%'
    "C:\new",  # a backslash escape read as a newline
    "hello world without quotes",  # a quoted FTS5 phrase
    "the glob ab matches, also aXXb",  # * as a wildcard
    "an x ray, a ray x",  # - as NOT
    "alpha and omega",  # NEAR
    "nothing to see",  # ' OR 1=1 matches everything
    "the secret text",  # a column filter
    "its fine",
    "begin here",
    "a b",
    "a 5x tip",
    "ab",
    "a single \\ backslash",
]
UNICODE = {
    "ÉCOLE": "je vais à l'école demain",
    "МОСКВА": "поездка в москва скоро",  # noqa: RUF001 (Cyrillic on purpose)
    "東京タワー": "私は東京タワーに行きました",
    "東京": "東京 again",
    "🎉 time": "party 🎉🎉 time",
    "HeLLo ThErE": "well hello there friend",
}


def plain_words(text: str) -> set[str]:
    """Runs of letters and digits (``_`` and combining marks separate them), lower-cased."""
    return set(re.findall(r"[^\W_]+", text.lower()))


def words(text: str) -> set[str]:
    """The words a text is matched by: lower-cased, a Latin letter's accents dropped (its
    canonical decomposition's base), and each stemmed (Porter's algorithm, which
    tests/shared/test_stemming.py checks against SQLite's and the local server's)."""
    folded = "".join(
        unicodedata.normalize("NFD", char)[0]
        if unicodedata.name(char, "").startswith("LATIN")
        else char
        for char in text.lower()
    )
    return {stem(word) for word in plain_words(folded)}


def expected(corpus: dict[str, list[str]], titles: dict[str, str], q: str) -> dict[str, list[int]]:
    """Session id -> the seqs of its messages holding every word of ``q``, for every session
    whose title or messages hold them all."""
    needle = words(q)
    assert needle, f"{q!r} has no words"
    found: dict[str, list[int]] = {}
    for sid, texts in corpus.items():
        seqs = [seq for seq, text in enumerate(texts, start=1) if needle <= words(text)]
        if seqs or needle <= words(titles[sid]):
            found[sid] = seqs
    return found


def got(results: Any) -> dict[str, list[int]]:
    return {
        r.session_id: [int(m.message_id.rsplit(":", 1)[1]) for m in r.matches]
        for r in results.results
    }


async def search(
    svc: Conversations,
    email: str,
    q: str,
    *,
    limit: int = 50,
    archived: bool | Literal["all"] = False,
    continuation: str | None = None,
    order: SearchOrder = "recent",
) -> Any:
    return await svc.search(
        email, q, limit=limit, continuation=continuation, archived=archived, order=order
    )


async def every_page(
    svc: Conversations, email: str, q: str, *, limit: int, **options: Any
) -> tuple[list[Any], int]:
    """Every result of a search, page after page, and how many pages it took."""
    found: list[Any] = []
    token: str | None = None
    pages = 0
    while True:
        page = await search(svc, email, q, limit=limit, continuation=token, **options)
        pages += 1
        found += page.results
        token = page.continuation_token
        if token is None:
            return found, pages


def test_metacharacters_and_syntax_are_never_syntax(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        corpus: dict[str, list[str]] = {}
        titles: dict[str, str] = {}
        targets: dict[str, str] = {}
        texts = [*TRICKY.values(), *DECOYS]
        for index, text in enumerate(texts):
            session = await seed_session(
                store, alice, [text], at=START + timedelta(seconds=index), title=f"note {index}"
            )
            corpus[session.id], titles[session.id] = [text], f"note {index}"
            targets[text] = session.id
        for q, text in TRICKY.items():
            want = expected(corpus, titles, q)
            assert want[targets[text]] == [1], q
            found = await search(svc, alice, q)
            assert got(found) == want, q
            [match] = next(r for r in found.results if r.session_id == targets[text]).matches
            assert (match.message_id, match.role) == (message_item_id(targets[text], 1), "user")
            assert sorted(plain_words(q))[0] in match.snippet.lower()

    run(scenario)


def test_case_and_accents_are_folded_in_any_script(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        corpus: dict[str, list[str]] = {}
        titles: dict[str, str] = {}
        texts = [*sorted(set(UNICODE.values())), "ecole without the accent", "tokyo", "東京タワー"]
        for index, text in enumerate(texts):
            session = await seed_session(
                store, alice, [text, "ok"], at=START + timedelta(seconds=index), title="t"
            )
            corpus[session.id], titles[session.id] = [text, "ok"], "t"
        # "ÉCOLE" finds "école" and "ecole": accents are folded both ways
        assert len(expected(corpus, titles, "ÉCOLE")) == 2
        assert len(expected(corpus, titles, "ecole")) == 2
        for q in [*UNICODE, "ecole", "Ecoles"]:
            want = expected(corpus, titles, q)
            assert want, q
            assert got(await search(svc, alice, q)) == want, q
            assert got(await search(svc, alice, q.lower())) == want, q
            assert got(await search(svc, alice, q.upper())) == expected(corpus, titles, q.upper())

    run(scenario)


def test_titles_and_messages_match_newest_session_first(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        by_title = await seed_session(
            store, alice, ["nothing here", "nor here"], at=START, title="Kiwi Recipes"
        )
        by_message = await seed_session(
            store,
            alice,
            ["how do I peel a KIWI?", "carefully", "and a kiwi smoothie", "sure", "kiwi", "x"],
            at=START + timedelta(minutes=1),
        )
        both = await seed_session(
            store, alice, ["kiwis again", "yes"], at=START + timedelta(minutes=2), title="kiwi"
        )
        await seed_session(store, alice, ["no fruit", "none"], at=START + timedelta(minutes=3))
        found = await search(svc, alice, "kiwi")
        assert [r.session_id for r in found.results] == [both.id, by_message.id, by_title.id]
        # "kiwis" is the same word: both stores stem English (docs/http.md, "Search").
        assert got(found) == {both.id: [1], by_message.id: [1, 3, 5], by_title.id: []}
        assert [r.title for r in found.results] == ["kiwi", "seeded", "Kiwi Recipes"]
        assert [r.archived for r in found.results] == [False] * 3
        assert found.continuation_token is None
        # Up to three matches per session, the first ones in order.
        many = await seed_session(
            store, alice, [f"kiwi number {i}" for i in range(1, 9)], at=START + timedelta(hours=1)
        )
        assert got(await search(svc, alice, "kiwi number"))[many.id] == [1, 2, 3]
        assert HITS_PER_SESSION == 3

    run(scenario)


def test_snippets_hold_the_match_within_160_characters(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails
    filler = "lorem ipsum dolor sit amet " * 20  # 540 characters of words

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        texts = {
            "middle": filler + "the NEEDLE-middle is here " + filler,
            "start": "NEEDLE-start begins it " + filler,
            "end": filler + "it ends with NEEDLE-end",
            "short": "a short NEEDLE-short text",
            "unbroken": "x" * 500 + " NEEDLE-unbroken " + "y" * 500,
        }
        for index, text in enumerate(texts.values()):
            await seed_session(store, alice, [text], at=START + timedelta(seconds=index))
        for name, text in texts.items():
            phrase = f"needle-{name}"
            [result] = (await search(svc, alice, phrase)).results
            [match] = result.matches
            assert len(match.snippet) <= SNIPPET_CHARS
            assert f"NEEDLE-{name}" in match.snippet, (name, match.snippet)
            assert match.snippet in text
            if len(text) <= SNIPPET_CHARS:
                assert match.snippet == text

    run(scenario)


def test_pages_follow_on_and_tokens_are_bound_to_user_and_query(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        made = [
            (await seed_session(store, alice, [f"page me {i}"], at=START + timedelta(minutes=i))).id
            for i in range(7)
        ]
        await seed_session(store, bob, ["page me too"])
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            found = await search(svc, alice, "page me", limit=3, continuation=token)
            pages += 1
            seen += [r.session_id for r in found.results]
            token = found.continuation_token
            if token is None:
                break
        assert pages == 3
        assert seen == made[::-1]

        first = await search(svc, alice, "page me", limit=3)
        token = first.continuation_token
        assert token is not None
        for email, q, archived in (
            (bob, "page me", False),  # another user's token
            (alice, "page me too", False),  # another query's
            (alice, "PAGE ME", False),  # the same words, another phrase
            (alice, "page me", True),  # the archive's search
        ):
            with pytest.raises(InvalidRequest):
                await search(svc, email, q, limit=3, continuation=token, archived=archived)
        with pytest.raises(InvalidRequest):  # a listing's token is not a search's
            listing = await svc.list_sessions(alice, limit=3, continuation=None, archived=False)
            assert listing.continuation_token is not None
            await search(svc, alice, "page me", limit=3, continuation=listing.continuation_token)
        with pytest.raises(InvalidRequest):
            await search(svc, alice, "page me", limit=3, continuation="garbage")

    run(scenario)


@pytest.mark.parametrize(
    "q",
    [
        *("", " ", "a", " a ", "é", "🎉", "x" * 201, "tab\there", "nul\x00x", " \n "),
        *("🎉🎉", "__", "\\\\", "-- ", "%%%"),  # no letter or digit: no word to look up
    ],
)
def test_phrases_that_cannot_be_searched_are_refused(
    run: Runner[None], emails: tuple[str, str], q: str
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        with pytest.raises(InvalidRequest):
            await search(make_service(store), alice, q)

    run(scenario)


def test_the_longest_and_shortest_phrases_work(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        long_phrase = ("abcdefghij" * 20)[:200]
        target = await seed_session(store, alice, [f"x {long_phrase} y", "ok"])
        short = await seed_session(store, alice, ["an Ox here", "ok"])
        await seed_session(store, alice, ["o and x apart", "nothing"])
        assert got(await search(svc, alice, long_phrase)) == {target.id: [1]}
        assert got(await search(svc, alice, f"  {long_phrase}  ")) == {target.id: [1]}
        assert got(await search(svc, alice, "ox")) == {short.id: [1]}
        assert got(await search(svc, alice, "OX")) == {short.id: [1]}

    run(scenario)


def test_archive_isolation_deletes_and_erasure(run: Runner[None], emails: tuple[str, str]) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        active = await seed_session(store, alice, ["find the walrus", "ok"])
        archived = await seed_session(
            store,
            alice,
            ["an archived walrus", "ok"],
            at=START + timedelta(minutes=1),
            archived=True,
        )
        deleted = await seed_session(store, alice, ["a deleted walrus", "ok"])
        bobs = await seed_session(store, bob, ["bob's walrus", "ok"])
        await svc.delete_session(alice, deleted.id)

        assert got(await search(svc, alice, "walrus")) == {active.id: [1]}
        in_archive = await search(svc, alice, "walrus", archived=True)
        assert got(in_archive) == {archived.id: [1]}
        assert [r.archived for r in in_archive.results] == [True]
        assert got(await search(svc, bob, "walrus")) == {bobs.id: [1]}
        assert got(await search(svc, bob, "walrus", archived=True)) == {}
        assert got(await search(svc, alice, "bob's walrus")) == {}

        assert await svc.erase_everything(bob, budget_s=600)
        assert got(await search(svc, bob, "walrus")) == {}
        assert got(await search(svc, alice, "walrus")) == {active.id: [1]}

    run(scenario)


def test_words_whole_in_any_order_never_substrings(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        texts = [
            "I ride my bicycle to the category meeting",
            "a cat sat on the mat",
            "the mat under a cat",
            "café au lait, CAFÉ noir",
            "plain cafe here",
            "a naive question about the naïve one",
            "she was running late, he runs daily",
            "it ran once",
            "a naïve tip",
            "snake_case_name and dot.separated.words",
            "version 3.14 released",
            "東京 タワー",
            "Ελληνικά ΚΕΙΜΕΝΑ",  # noqa: RUF001 (Greek on purpose)
        ]
        corpus: dict[str, list[str]] = {}
        titles: dict[str, str] = {}
        for index, text in enumerate(texts):
            session = await seed_session(
                store, alice, [text, "ok"], at=START + timedelta(seconds=index), title="t"
            )
            corpus[session.id], titles[session.id] = [text, "ok"], "t"
        cases = {
            "bi": 0,  # a piece of a word is not a word
            "cat": 2,  # three characters, whole: not "category"
            "mat cat": 2,  # every word, any order, not adjacent
            "cat dog": 0,  # every word, not any
            '"a cat"': 2,  # quotes are not a phrase: words
            "café": 2,  # accents folded, both ways
            "cafe": 2,
            "CAFES": 2,  # stemmed: a plural finds the singular
            "Café NOIR": 1,
            "naïve": 2,
            "naive": 2,
            "run": 1,  # stemmed: "running", "runs"; not "ran" (not a suffix)
            "running daily": 1,
            "ran": 1,
            "categories": 1,  # "category", not "cat"
            "tip": 1,  # three characters are a word
            "tips": 1,
            "snake": 1,  # _ separates words
            "case name": 1,
            "separated": 1,
            "14": 1,
            "東京": 1,
            "タワー 東京": 1,
            "κείμενα": 0,  # only Latin letters' accents are folded (Greek capitals, case folded)
            "ελληνικα": 0,
            "ελληνικά κειμενα": 1,
        }
        for q, count in cases.items():
            want = expected(corpus, titles, q)
            assert len(want) == count, f"the oracle disagrees with the documented case {q!r}"
            assert got(await search(svc, alice, q)) == want, q

    run(scenario)


def test_all_searches_active_and_archived_in_one_list_paged_without_repeats_or_gaps(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        made: list[tuple[str, bool]] = []  # (session id, archived), oldest first
        for index in range(11):
            archived = index % 3 == 0
            session = await seed_session(
                store,
                alice,
                [f"heron number {index}", "ok"],
                at=START + timedelta(minutes=index),
                archived=archived,
            )
            made.append((session.id, archived))
        await seed_session(store, bob, ["bob's heron", "ok"], at=START + timedelta(hours=1))
        newest_first = made[::-1]
        for limit in (1, 2, 4, 50):
            found, pages = await every_page(svc, alice, "heron", limit=limit, archived="all")
            assert [(r.session_id, r.archived) for r in found] == newest_first, limit
            assert pages == max(1, -(-len(made) // limit))
            assert all(r.score is None for r in found)
        active, _ = await every_page(svc, alice, "heron", limit=4, archived=False)
        archived_only, _ = await every_page(svc, alice, "heron", limit=4, archived=True)
        assert [r.session_id for r in active] == [sid for sid, a in newest_first if not a]
        assert [r.session_id for r in archived_only] == [sid for sid, a in newest_first if a]
        # A token is bound to its view and order.
        first = await search(svc, alice, "heron", limit=2, archived="all")
        assert first.continuation_token is not None
        for options in ({"archived": False}, {"archived": True}, {"order": "relevance"}):
            with pytest.raises(InvalidRequest):
                await search(
                    svc, alice, "heron", limit=2, continuation=first.continuation_token, **options
                )

    run(scenario)


def test_relevance_ranks_by_matching_messages_and_title_with_scores(
    run: Runner[None], emails: tuple[str, str]
) -> None:
    alice, _ = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        at = START
        sessions: dict[str, str] = {}
        # name: (messages, title, archived); the score is the messages holding every word,
        # plus TITLE_WEIGHT for the title.
        layout = {
            "one": (["otter here", "no", "nothing"], "t", False),  # 1
            "three": (["otter a", "otter b", "otter c", "x"], "t", False),  # 3
            "titled": (["otter once", "x"], "Otter notes", True),  # 1 + 3
            "two-old": (["otter", "otter"], "t", False),  # 2, older
            "two-new": (["otter", "otter"], "t", True),  # 2, newer: first of the tie
            "none": (["nothing", "x"], "t", False),
        }
        for name in ("two-old", "one", "three", "titled", "none", "two-new"):
            texts, title, archived = layout[name]
            at += timedelta(minutes=1)
            session = await seed_session(store, alice, texts, at=at, title=title, archived=archived)
            sessions[name] = session.id
        want = [
            ("titled", 1 + TITLE_WEIGHT),
            ("three", 3),
            ("two-new", 2),
            ("two-old", 2),
            ("one", 1),
        ]
        for limit in (1, 2, 3, 50):
            found, _ = await every_page(
                svc, alice, "otter", limit=limit, archived="all", order="relevance"
            )
            assert [(r.session_id, r.score) for r in found] == [
                (sessions[name], score) for name, score in want
            ], limit
        active, _ = await every_page(svc, alice, "OTTER", limit=2, order="relevance")
        assert [r.session_id for r in active] == [
            sessions[name] for name in ("three", "two-old", "one")
        ]
        # Recent order is unchanged by it, and carries no score.
        recent = await search(svc, alice, "otter", archived="all")
        assert [r.session_id for r in recent.results][:2] == [
            sessions["two-new"],
            sessions["titled"],
        ]
        assert all(r.score is None for r in recent.results)

    run(scenario)


@pytest.mark.parametrize(
    ("step", "call"),
    [
        ("search_matches", 2),  # between the active lookup and the archive's
        ("search_page", 1),  # after both lookups, before the page is read
    ],
)
def test_a_session_archived_while_a_search_of_both_runs_is_found_once(
    run: Runner[None], emails: tuple[str, str], step: str, call: int
) -> None:
    """``archived=all`` looks the words up in the active container, then the archive, then
    reads the page: the archival pass moves the session between two of these steps (the
    pause), so it is found in both lookups, or read where it no longer is. It is one result,
    shown where it is now."""
    alice, _ = emails

    async def scenario(store: Store) -> None:
        faulty = FaultyStore(store)
        svc = make_service(faulty)
        moving = await seed_session(store, alice, ["a puffin here", "ok"], at=START)
        staying = await seed_session(
            store, alice, ["another puffin", "ok"], at=START + timedelta(minutes=1)
        )
        gate = pause_at(faulty, step, call=call)
        searching = asyncio.create_task(search(svc, alice, "puffin", archived="all"))
        await gate.reached_by(searching)
        await archive(store, moving)
        gate.release.set()
        found = await searching
        assert [r.session_id for r in found.results] == [staying.id, moving.id]
        assert [r.archived for r in found.results] == [False, True]
        assert got(found) == {staying.id: [1], moving.id: [1]}

    run(scenario)


def lookups_of(store: Store) -> list[str]:
    """Every query the store sends from now on that looks words up in its index (SQLite: an
    FTS5 ``MATCH``; Cosmos: a full-text function), as sent: the work of a search's first page
    that a later page must not do again. The real store, wrapped in place at its database."""
    sent: list[str] = []
    if isinstance(store, SqliteStore):
        read = store._read

        async def traced(fn: Any) -> Any:
            def run(conn: sqlite3.Connection) -> Any:
                conn.set_trace_callback(
                    lambda sql: sent.append(sql) if "message_search MATCH" in sql else None
                )
                try:
                    return fn(conn)
                finally:
                    conn.set_trace_callback(None)

            return await read(run)

        store._read = traced  # type: ignore[method-assign]
        return sent
    assert isinstance(store, CosmosStore)
    conn = store.conn
    stream = conn.stream  # ``query`` reads through ``stream``

    def counted(where: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if "FullText" in sql:
            sent.append(sql)
        return stream(where, sql, *args, **kwargs)

    conn.stream = counted  # type: ignore[method-assign]
    return sent


@pytest.mark.parametrize("order", ["recent", "relevance"])
@pytest.mark.parametrize("url_chars", [URL_CHARS, 1000])
def test_later_pages_never_look_the_words_up_again(
    run: Runner[None],
    emails: tuple[str, str],
    order: SearchOrder,
    url_chars: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Page 1 looks the words up once per container searched; the token carries the rest of
    the matches, so page 2 and after send no lookup at all, and still show every match once,
    in order, and nothing of another user. With a URL too short for every match (1,000
    characters: a few carried), a lookup runs again only when the carried ones run out."""
    monkeypatch.setattr(search_state, "URL_CHARS", url_chars)
    alice, bob = emails

    async def scenario(store: Store) -> None:
        svc = make_service(store)
        want: list[str] = []
        for i in range(23):
            texts = ["heron " * (1 + i % 4) + f"number {i}", "ok"] + ["a heron again"] * (i % 3)
            session = await seed_session(store, alice, texts, at=START + timedelta(minutes=i))
            want.append(session.id)
        archived_one = await seed_session(
            store, alice, ["an archived heron"], at=START + timedelta(hours=1)
        )
        await archive(store, archived_one)
        await seed_session(store, alice, ["no bird here"], at=START + timedelta(hours=2))
        theirs = await seed_session(store, bob, ["bob's heron"], at=START + timedelta(hours=3))
        sent = lookups_of(store)
        shown: list[str] = []
        lookups: list[int] = []
        token: str | None = None
        while True:
            before = len(sent)
            page = await search(
                svc, alice, "heron", limit=4, continuation=token, archived="all", order=order
            )
            lookups.append(len(sent) - before)
            shown += [r.session_id for r in page.results]
            token = page.continuation_token
            if token is None:
                break
        assert sorted(shown) == sorted([*want, archived_one.id])  # each once, none missing
        assert theirs.id not in shown
        assert len(lookups) == 6
        # SQLite: one MATCH per container; Cosmos: the message and title lookups of each.
        per_lookup = 2 if isinstance(store, SqliteStore) else 4
        assert lookups[0] == per_lookup
        if url_chars == URL_CHARS:
            assert lookups[1:] == [0] * 5, lookups
        else:
            assert 0 < sum(lookups[1:]) < 5 * per_lookup, lookups
        whole = await search(svc, alice, "heron", limit=50, archived="all", order=order)
        assert shown == [r.session_id for r in whole.results]  # the same order, paged

    run(scenario)

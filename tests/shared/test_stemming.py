"""Parley's word rules (shared/search.py, shared/stemming.py) against the stores' own: the words
SQLite's FTS5 ``porter unicode61 remove_diacritics 2`` tokenizer indexes, and the stems the local
Cosmos server's ``stemWord`` (the npm ``stemmer``) makes, for the project's own documentation's
vocabulary and for letters with accents. What Parley matches itself (titles on SQLite, the word
a snippet shows, the folded copies Cosmos indexes) must be what the stores match."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from shared.search import SNIPPET_CHARS, fold, snippet, terms_of
from shared.stemming import stem

ROOT = Path(__file__).resolve().parents[2]
EXTRA = [
    "possibly",  # "bli": the reference C rules, not Snowball's
    "logically",
    "straße",  # a byte above 127 is a consonant
    "ørsteds",
    "москва",
    "cafés",
    "yelling",
    "sky",
    "mp3s",
    "a" * 70 + "s",  # over 64 bytes: as it is
]


def vocabulary() -> list[str]:
    text = "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    return sorted({w for w in re.findall(r"[^\W_]+", text.lower())} | set(EXTRA))


def fts5_terms(texts: list[str]) -> list[list[str]]:
    conn = sqlite3.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE t USING fts5(x, tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'row')")
    out = []
    for text in texts:
        conn.execute("DELETE FROM t")
        conn.execute("INSERT INTO t (x) VALUES (?)", (text,))
        out.append(sorted(row[0] for row in conn.execute("SELECT term FROM v")))
    return out


def test_stems_are_sqlites() -> None:
    words = vocabulary()
    assert len(words) > 1000
    assert fts5_terms(words) == [[stem(fold(word))] for word in words]


def test_folded_latin_letters_are_sqlites() -> None:
    # Every letter of Latin-1 and Latin Extended-A, and decomposed accents, in a word.
    letters = [chr(c) for c in range(0xC0, 0x180) if chr(c).isalpha()]
    texts = [f"x{letter}y" for letter in letters]
    texts += ["cafe\u0301s", "x\u0306y", "İstanbul", "ΛΌΓΟΣ λόγος"]
    assert fts5_terms(texts) == [sorted(terms_of(text)) for text in texts]
    assert fold("Café CRÈME Ørsted Straße йка") == "cafe creme ørsted straße йка"


@pytest.mark.skipif(shutil.which("node") is None, reason="node runs the local Cosmos server")
def test_stems_are_the_local_cosmos_servers() -> None:
    words = vocabulary()
    script = (
        "import('./tools/cosmos/fulltext.mjs').then((m) => "
        "console.log(JSON.stringify(JSON.parse(process.argv[1]).map(m.stemWord))))"
    )
    out = subprocess.run(
        ["node", "-e", script, json.dumps(words)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [stem(word) for word in words]


def test_snippets_find_the_match_through_accents_and_stems() -> None:
    text = "x " * 150 + "Le CAFÉ crème est servi" + " y" * 150
    assert "CAFÉ crème" in snippet(text, "cafe creme")  # the phrase, accents folded
    assert len(snippet(text, "cafe creme")) <= SNIPPET_CHARS
    text = "z " * 150 + "she kept running home" + " w" * 150
    assert "running" in snippet(text, "run")  # no phrase: the first word with the stem
    decomposed = "q " * 150 + "une cafe\u0301 noire" + " r" * 150
    assert "cafe\u0301" in snippet(decomposed, "café")

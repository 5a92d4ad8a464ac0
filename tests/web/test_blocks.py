"""web/blocks.js: where the finished blocks of a streaming Markdown answer end. The page draws
the text before that once and redraws only the rest each frame, so the rule must never close a
block that more text could still change (a code fence, a list, a quote, an indented
continuation). Run in Node: the module has no DOM."""

from __future__ import annotations

import json
import subprocess

import pytest

from tools.local.host import ROOT

CASES = [
    # (text, start, the closed part)
    ("Para one.\n\nPara two\n", 0, "Para one.\n\n"),
    ("# Head\n\nText\n\nMore text\n", 0, "# Head\n\nText\n\n"),
    # The line after a blank line must be complete before it counts.
    ("Para one.\n\nPara tw", 0, ""),
    ("Text\n\nNext", 0, ""),
    # Inside a code fence, a blank line closes nothing; after the fence, it does.
    ("```js\nlet a;\n\nlet b;\n", 0, ""),
    ("```js\nlet a;\n\nlet b;\n```\n\nAfter code\n", 0, "```js\nlet a;\n\nlet b;\n```\n\n"),
    ("~~~~\n```\n\nstill code\n~~~~\n\nOut\n", 0, "~~~~\n```\n\nstill code\n~~~~\n\n"),
    # A list, a quote or an indented continuation goes on after a blank line.
    ("- a\n\n- b\n", 0, ""),
    ("1. a\n\n2. b\n", 0, ""),
    ("- a\n\n  continued\n", 0, ""),
    ("> q\n\n> q2\n", 0, ""),
    ("- a\n\n- b\n\nAfter the list\n", 0, "- a\n\n- b\n\n"),
    # Only the text from `start` (itself a closed end) is read.
    ("Done.\n\nPara\n\nNext\n", 7, "Done.\n\nPara\n\n"),
]

SCRIPT = """
import { closedBlocksEnd } from "./web/blocks.js";
const cases = JSON.parse(process.argv[1]);
console.log(JSON.stringify(cases.map(([text, start]) => closedBlocksEnd(text, start))));
"""


@pytest.fixture(scope="module")
def ends() -> list[int]:
    done = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT, json.dumps([c[:2] for c in CASES])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(done.stdout))


@pytest.mark.parametrize("index", range(len(CASES)))
def test_closed_blocks_end_where_nothing_can_change_them(ends: list[int], index: int) -> None:
    text, _, closed = CASES[index]
    assert text[: ends[index]] == closed

"""Session titles and previews, every rule of them: the first-message rule, a title the user
sets, a branch's title, and titles written by the model.

With ``TITLE_MODE=model`` the first turn of a new session asks the model, in a short call of its
own, for a title; until it is stored (and whenever the call fails) the first-message rule's
title stands, and a title the user set is never replaced (``docs/http.md``, "New sessions and
titles").
"""

from __future__ import annotations

import re

from shared.errors import InvalidRequest
from shared.llm.base import ModelMessage

TITLE_CHARS = 50  # the first-message rule
TITLE_MAX_CHARS = 100  # a title the user sets (PATCH) or an import brings, after trimming
# A branch's title: the original's and this (docs/http.md, "Branch").
FORK_TITLE_SUFFIX = " (branch)"
PREVIEW_CHARS = 100
MODEL_TITLE_CHARS = 60
MODEL_TITLE_MAX_TOKENS = 32  # a title, not an essay: also bounds the call's cost
# The title prompt sees at most this much of the first message (a title needs little of it).
TITLE_PROMPT_CHARS = 2000

TITLE_INSTRUCTIONS = (
    "Write a short title (at most six words) for a conversation that starts with the user's "
    "message below. Answer with the title only: no quotes, no trailing punctuation, one line."
)

_SPACES = re.compile(r"\s+")
# Quotes and brackets a model likes to wrap a title in; stripped from both ends.
_WRAPPERS = "\"'`*_#[]()\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e"


def cut_at_word(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: cut at a word if that keeps at least half of
    them, else cut hard (a single long word); no trailing space."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    at_space = cut.rfind(" ")
    if at_space >= limit // 2:
        return cut[:at_space].rstrip()
    return text[:limit].rstrip()


def make_title(message: str) -> str:
    """The first 50 characters of the first message, cut at a word boundary where possible."""
    return cut_at_word(_SPACES.sub(" ", message).strip(), TITLE_CHARS)


def make_preview(message: str) -> str:
    return message[:PREVIEW_CHARS]


def one_line_name(raw: str, field: str, limit: int) -> str:
    """A name a user gives (a session's title, a group's name): trimmed, 1 to ``limit``
    characters, one line; else 400 naming ``field``."""
    name = raw.strip()
    if not name or len(name) > limit:
        raise InvalidRequest(f"{field} must be 1 to {limit} characters.")
    if any(ch in name for ch in "\r\n"):
        raise InvalidRequest(f"{field} must be one line.")
    return name


def title_of(raw: str) -> str:
    """A title the user sets: trimmed, 1 to 100 characters."""
    return one_line_name(raw, "title", TITLE_MAX_CHARS)


def branch_title(original: str) -> str:
    return original + FORK_TITLE_SUFFIX


def title_prompt(first_message: str) -> list[ModelMessage]:
    return [
        {"role": "system", "content": TITLE_INSTRUCTIONS},
        {"role": "user", "content": first_message[:TITLE_PROMPT_CHARS]},
    ]


def clean_model_title(answer: str) -> str | None:
    """The model's answer as a title: its first non-empty line, unwrapped, one space between
    words, at most 60 characters (cut at a word where possible); None if nothing is left."""
    line = next((part for part in answer.splitlines() if part.strip()), "")
    text = _SPACES.sub(" ", line).strip().strip(_WRAPPERS).strip()
    text = re.sub(r"^(title)\s*:\s*", "", text, flags=re.IGNORECASE).strip(_WRAPPERS).strip()
    text = text.rstrip(".").strip()
    return cut_at_word(text, MODEL_TITLE_CHARS) or None

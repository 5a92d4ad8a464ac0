"""What the model's input costs in a long conversation, with a prompt cache: the sliding window
against the window that keeps its beginning (``CONTEXT_WINDOW=sliding|blocks``, shared/context.py).

``CachingModelServer`` is an OpenAI-compatible chat-completions server on a real socket that
caches prompt prefixes as Azure OpenAI documents it: no cache for a prompt under 1,024 tokens;
a prompt whose first 1,024 tokens (and then each further 128) match a prompt seen before has
that prefix cached, reported as ``usage.prompt_tokens_details.cached_tokens``. It tokenizes
deterministically (one token per 4 UTF-8 bytes of a message, English-like, plus 4 of framing
per message: its own tokenizer, not the service's estimator) and answers each question with a
deterministic answer of 150 to 400 words. The cache is per ``prompt_cache_key`` (the service
sends one per session), never evicted during a run (a conversation's turns come within Azure's
5 to 10 minutes of inactivity).

Each policy runs one 200-turn conversation through the real turn (shared/turns/, the
OpenAI-compatible adapter over HTTP, the SQLite store), same questions, same answers. Per turn:
prompt tokens, cached tokens, the context kept (the window's history against the limit that
binds: its messages against MAX_HISTORY_MESSAGES, or the service's estimate of its tokens
against MAX_CONTEXT_TOKENS less the system prompt, whichever is fuller) and the input cost at
the price pair below. Steady state: the second half of the conversation, long after the window first
filled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The price pair (US$ per million input tokens, and per million cached input tokens): GPT-4.1's
# list prices when this was written, cached input at a quarter of input. Only their ratio
# matters for the comparison; the absolute figures only scale the cost column.
PRICE_INPUT_PER_M = 2.00
PRICE_CACHED_PER_M = 0.50
# Azure OpenAI: a cache hit needs 1,024 identical leading tokens, then counts in 128s.
CACHE_MIN_TOKENS = 1024
CACHE_STEP_TOKENS = 128
BYTES_PER_TOKEN = 4  # the server's tokenizer: English-like text
MESSAGE_FRAMING_TOKENS = 4
# The service's defaults: the window the comparison is about.
MAX_CONTEXT_TOKENS = 8000
MAX_HISTORY_MESSAGES = 20
# The design's budget (docs/design.md, "Budgets").
MAX_COST_RATIO = 0.5
MIN_CONTEXT_FRACTION = 0.75
POLICIES = ("sliding", "blocks")
_VOCABULARY = (
    "the service keeps each conversation in one partition and reads the newest messages "
    "for every turn while the model writes an answer that streams to the client as it arrives "
    "and the store writes it once it is whole so nothing acknowledged is ever lost"
)
WORDS = tuple(_VOCABULARY.split())


def tokens_of(messages: list[dict[str, Any]]) -> list[str]:
    """The prompt as the server's tokenizer sees it: framing, then 4-byte pieces of the text."""
    tokens: list[str] = []
    for message in messages:
        tokens += [f"<{message['role']}>"] * MESSAGE_FRAMING_TOKENS
        data = str(message.get("content", "")).encode()
        tokens += [data[i : i + BYTES_PER_TOKEN].hex() for i in range(0, len(data), 4)]
    return tokens


def answer_text(question: str) -> str:
    """A deterministic answer of 150 to 400 words for a question."""
    digest = hashlib.sha256(question.encode()).digest()
    length = 150 + int.from_bytes(digest[:2], "big") % 251
    return " ".join(WORDS[(digest[2] + i) % len(WORDS)] for i in range(length))


def question_text(turn: int) -> str:
    """The user's question of a turn: 20 to 80 words."""
    length = 20 + (turn * 37) % 61
    return f"Question {turn}: " + " ".join(WORDS[(turn + i) % len(WORDS)] for i in range(length))


class PrefixCache:
    """The prefixes seen, at the boundaries Azure caches at, per cache key."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _boundaries(length: int) -> Iterator[int]:
        end = CACHE_MIN_TOKENS
        while end <= length:
            yield end
            end += CACHE_STEP_TOKENS

    def lookup_and_store(self, key: str, tokens: list[str]) -> int:
        """How many leading tokens of ``tokens`` were cached; then cache this prompt too."""
        digests: list[tuple[int, str]] = []
        running = hashlib.sha256()
        previous = 0
        for end in self._boundaries(len(tokens)):
            running.update("\n".join(tokens[previous:end]).encode() + b"\n")
            previous = end
            digests.append((end, running.copy().hexdigest()))
        with self._lock:
            seen = self._seen.setdefault(key, set())
            cached = 0
            for end, digest in digests:
                if digest not in seen:
                    break
                cached = end
            seen.update(digest for _, digest in digests)
        return cached


@contextmanager
def caching_model_server() -> Iterator[str]:
    """The server on 127.0.0.1, any free port; yields its ``/v1`` base URL."""
    cache = PrefixCache()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            messages = body["messages"]
            prompt = tokens_of(messages)
            cached = cache.lookup_and_store(str(body.get("prompt_cache_key") or ""), prompt)
            answer = answer_text(str(messages[-1]["content"]))
            completion = len(tokens_of([{"role": "assistant", "content": answer}]))
            usage = {
                "prompt_tokens": len(prompt),
                "completion_tokens": completion,
                "total_tokens": len(prompt) + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
            }
            model = body.get("model", "simulated")
            base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model}
            events = [
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer}}],
                },
                {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {**base, "choices": [], "usage": usage},
            ]
            data = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events)
            data += b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def input_cost(prompt: int, cached: int) -> float:
    """US$ of one call's input at the price pair."""
    return ((prompt - cached) * PRICE_INPUT_PER_M + cached * PRICE_CACHED_PER_M) / 1e6


async def _conversation(base_url: str, db: Path, policy: str, turns: int) -> list[dict[str, Any]]:
    from shared.config import load_settings
    from shared.context import estimate_tokens
    from shared.llm import make_model
    from shared.llm.base import ModelMessage, Usage
    from shared.models import ChatRequest
    from shared.storage.sqlite import SqliteStore
    from shared.turns import Turns

    settings = load_settings(
        {
            "OPENAI_BASE_URL": base_url,
            "OPENAI_MODEL": "simulated",
            "CONTEXT_WINDOW": policy,
            "MAX_CONTEXT_TOKENS": str(MAX_CONTEXT_TOKENS),
            "MAX_HISTORY_MESSAGES": str(MAX_HISTORY_MESSAGES),
            "TITLE_MODE": "first-message",
            "USER_DAILY_TOKEN_LIMIT": "0",  # a 200-turn conversation is not a budget test
        }
    )
    model = make_model(settings)
    seen: list[tuple[list[ModelMessage], Usage | None]] = []

    class Watching:
        """The real adapter, with each call's messages and usage noted for the report."""

        name = model.name

        async def stream(self, messages: Any, *, cache_key: str | None = None) -> Any:
            usage = None
            async for piece in model.stream(messages, cache_key=cache_key):
                if isinstance(piece, Usage):
                    usage = piece
                yield piece
            seen.append((list(messages), usage))

        async def complete(self, messages: Any, *, max_tokens: int, timeout_s: float) -> str:
            return await model.complete(messages, max_tokens=max_tokens, timeout_s=timeout_s)

        async def close(self) -> None:
            await model.close()

    store = SqliteStore(db)
    service = Turns.build(store, Watching(), settings).chat
    budget = MAX_CONTEXT_TOKENS - estimate_tokens(settings.system_prompt)
    rows: list[dict[str, Any]] = []
    try:
        session_id: str | None = None
        for turn in range(1, turns + 1):
            request = ChatRequest(message=question_text(turn), sessionId=session_id)
            session_id = (await service.chat(f"{policy}@bench.local", request)).session_id
            messages, usage = seen[-1]
            assert usage is not None and usage.prompt_tokens is not None
            prompt, cached = usage.prompt_tokens, usage.cached_tokens or 0
            kept = sum(estimate_tokens(m["content"]) for m in messages[1:])
            count = len(messages) - 1
            rows.append(
                {
                    "turn": turn,
                    "prompt_tokens": prompt,
                    "cached_tokens": cached,
                    "messages": count,
                    "context_tokens": kept,
                    # Of the limit that binds: a window is full when either limit is reached.
                    "context_fraction": round(max(kept / budget, count / MAX_HISTORY_MESSAGES), 3),
                    "input_cost_usd": round(input_cost(prompt, cached), 7),
                }
            )
    finally:
        await store.close()
        await model.close()
    return rows


def _steady(rows: list[dict[str, Any]]) -> dict[str, float]:
    half = rows[len(rows) // 2 :]
    n = len(half)
    return {
        "from_turn": half[0]["turn"],
        "prompt_tokens": round(sum(r["prompt_tokens"] for r in half) / n, 1),
        "cached_tokens": round(sum(r["cached_tokens"] for r in half) / n, 1),
        "cached_share": round(
            sum(r["cached_tokens"] for r in half) / sum(r["prompt_tokens"] for r in half), 3
        ),
        "context_fraction": round(sum(r["context_fraction"] for r in half) / n, 3),
        "min_context_fraction": min(r["context_fraction"] for r in half),
        "input_cost_usd": round(sum(r["input_cost_usd"] for r in half) / n, 7),
    }


def run(turns: int = 200) -> dict[str, Any]:
    """Both policies, one conversation each, in this run; the per-turn rows and the summary."""
    out: dict[str, Any] = {
        "turns": turns,
        "price_input_per_m": PRICE_INPUT_PER_M,
        "price_cached_per_m": PRICE_CACHED_PER_M,
        "max_context_tokens": MAX_CONTEXT_TOKENS,
        "max_history_messages": MAX_HISTORY_MESSAGES,
    }
    with (
        tempfile.TemporaryDirectory(prefix="parley-bench-cache-") as tmp,
        caching_model_server() as url,
    ):
        for policy in POLICIES:
            rows = asyncio.run(_conversation(url, Path(tmp) / f"{policy}.db", policy, turns))
            out[policy] = {"rows": rows, "steady": _steady(rows)}
    sliding, blocks = out["sliding"]["steady"], out["blocks"]["steady"]
    ratio = blocks["input_cost_usd"] / sliding["input_cost_usd"]
    out["cost_ratio_blocks_over_sliding"] = round(ratio, 3)
    out["budget_cost_met"] = ratio <= MAX_COST_RATIO
    out["budget_context_met"] = blocks["context_fraction"] >= MIN_CONTEXT_FRACTION
    return out

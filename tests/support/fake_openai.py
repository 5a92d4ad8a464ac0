"""A scripted OpenAI-compatible chat server on a real socket, for the model adapter tests.

It speaks just enough of the Chat Completions API for the ``openai`` client: streamed answers
(SSE chunks, a usage chunk, ``[DONE]``), whole answers (what the title call asks for), error
statuses with headers, an error event in the middle of a stream, and answers held until the
test releases them (so the client's timeout, not a sleep, decides what happens). Streamed and
whole requests have scripts of their own, since a turn's title call runs beside its answer.
Every request is recorded: path, headers and JSON body.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A held answer never waits longer than this, so a forgotten gate cannot hang the suite.
MAX_HOLD_S = 30.0


@dataclass
class Stream:
    """A streamed answer: ``pieces`` as content deltas, then the usage chunk and [DONE].

    ``pause_after``: after that many pieces, wait for ``gate`` before going on (never set: the
    client times out mid-stream). ``fail_after``: after that many pieces, send an error event
    instead of the rest.
    """

    pieces: tuple[str, ...]
    model: str = "fake-model-2025"
    usage: tuple[int, int] | None = (17, 3)
    pause_after: int | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    fail_after: int | None = None
    cached: int | None = None  # prompt_tokens_details.cached_tokens, when set


@dataclass
class Status:
    """A non-200 answer with a JSON body."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """No answer at all (not even headers) until ``gate`` is set."""

    gate: threading.Event = field(default_factory=threading.Event)


@dataclass
class Whole:
    """A whole (not streamed) answer; with ``hold``, given only once that is set."""

    content: str
    model: str = "fake-model-2025"
    hold: threading.Event | None = None


Reply = Stream | Status | Hang | Whole


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body["messages"])


def default_reply(body: dict[str, Any]) -> Stream | Whole:
    """Unscripted requests are answered ``re: <last message>``: in two pieces if streamed."""
    last = str(body["messages"][-1]["content"])
    return Stream(("re: ", last)) if body.get("stream") else Whole(f"re: {last}")


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._whole_script: deque[Reply] = deque()
        self._gates: list[threading.Event] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *replies: Reply) -> None:
        """Answer the next streamed requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def script_whole(self, *replies: Reply) -> None:
        """Answer the next whole (not streamed) requests with ``replies``, in order."""
        with self._lock:
            self._whole_script.extend(replies)

    def reset(self) -> None:
        self.release_all()
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self._whole_script.clear()

    def release_all(self) -> None:
        with self._lock:
            gates, self._gates = self._gates, []
        for gate in gates:
            gate.set()

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            script = self._script if recorded.body.get("stream") else self._whole_script
            reply = script.popleft() if script else default_reply(recorded.body)
            if isinstance(reply, Stream | Hang):
                self._gates.append(reply.gate)
            elif isinstance(reply, Whole) and reply.hold is not None:
                self._gates.append(reply.hold)
            return reply

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release_all()
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _handler_for(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            return None

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = fake._next(Recorded(self.path, headers, body))
            try:
                if isinstance(reply, Hang):
                    reply.gate.wait(MAX_HOLD_S)
                    self.close_connection = True
                elif isinstance(reply, Status):
                    self._status(reply)
                elif isinstance(reply, Whole):
                    self._whole(reply)
                else:
                    self._stream(reply)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up: what timeouts look like

        def _status(self, reply: Status) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in {"content-type": "application/json", **reply.headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _whole(self, reply: Whole) -> None:
            if reply.hold is not None:
                reply.hold.wait(MAX_HOLD_S)
            completion = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": reply.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
            self._status(Status(200, completion))

        def _stream(self, reply: Stream) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            # Azure's first chunk carries only content-filter results: no choices.
            self._event({**_chunk(reply.model, {}), "choices": [], "prompt_filter_results": []})
            for index, piece in enumerate(reply.pieces):
                if index == reply.pause_after:
                    reply.gate.wait(MAX_HOLD_S)
                if index == reply.fail_after:
                    self._event({"error": {"message": "upstream secret detail", "type": "server"}})
                    self._end()
                    return
                delta = (
                    {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                )
                self._event(_chunk(reply.model, delta))
            self._event(_chunk(reply.model, {}, finish="stop"))
            if reply.usage is not None:
                prompt, completion = reply.usage
                usage: dict[str, Any] = {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                }
                if reply.cached is not None:
                    usage["prompt_tokens_details"] = {"cached_tokens": reply.cached}
                self._event({**_chunk(reply.model, {}), "choices": [], "usage": usage})
            self._write(b"data: [DONE]\n\n")
            self._end()

        def _event(self, data: dict[str, Any]) -> None:
            self._write(f"data: {json.dumps(data)}\n\n".encode())

        def _write(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler

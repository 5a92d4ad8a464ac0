"""Header and body timeouts for the local host's HTTP/1.1 connections.

uvicorn bounds only the idle time between requests (keep-alive): a client that sends half a
request line, or headers and then half a body, holds its connection (and the request's task)
for ever. The Functions host's front end does not allow that; neither does this one.

- Headers: from a connection's start, or from the first byte of a later request on it, the
  headers must be complete within ``header_timeout_s``.
- Body: from the end of the headers, the whole body must arrive within ``body_timeout_s``
  (a total, so a client that drips a byte now and then is cut off too).

A request that times out is answered 408 while an answer is still possible (nothing answered
yet), and its connection is closed. A function still reading the body sees the client leave,
as it does in Azure when the front end drops such a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.errors import error_object

log = logging.getLogger("parley.devhost")

Phase = Literal["headers", "body"]
# The local host's own answer (in Azure the platform's front end times slow clients out), in
# the service's error shape.
TIMEOUT_ANSWER = json.dumps(
    error_object("request_timeout", "The request did not arrive in time.")
).encode()


class TimedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a header and a body deadline per request, which
    ``timed_protocol`` sets from the settings (their defaults are there, in ``shared.config``)."""

    header_timeout_s: float
    body_timeout_s: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase is None and self.conn.their_state is h11.IDLE:
            # The first byte of a later request on a kept-alive connection: its headers are due
            # (the wait before that byte is keep-alive's to bound).
            self._expect("headers")
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # a pipelined request may have been read just now

    def _follow(self) -> None:
        """Move the deadline along with the request: headers done, body due; body done, none."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._expect("body")
        elif state is not h11.IDLE or self._phase == "body":
            self._clear()
        if self._phase is None and state is h11.IDLE and self.conn.trailing_data[0]:
            self._expect("headers")  # part of a pipelined request is already here

    def _expect(self, phase: Phase) -> None:
        self._clear()
        seconds = self.header_timeout_s if phase == "headers" else self.body_timeout_s
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _clear(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expired(self) -> None:
        phase = self._phase
        self._deadline, self._phase = None, None
        if phase is None or self.transport.is_closing():
            return
        fields = {"phase": phase, "status": 408 if self._answer_408(phase) else None}
        log.warning("request_timeout %s", json.dumps(fields, separators=(",", ":")))
        self.transport.close()

    def _answer_408(self, phase: Phase) -> bool:
        """Answer 408 if nothing was answered yet; False when no answer is possible."""
        if phase == "headers" and not self.conn.trailing_data[0]:
            return False  # an idle connection that never began a request: just close it
        cycle = self.cycle if phase == "body" else None
        if cycle is not None:
            if cycle.response_started:
                return False  # the function answered without reading the body
            # The function stops reading as if the client had left; its own answer goes
            # nowhere (a disconnected cycle sends nothing), this 408 is the one sent.
            cycle.disconnected = True
            cycle.message_event.set()
        headers = [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(TIMEOUT_ANSWER)).encode()),
            (b"connection", b"close"),
        ]
        events = (
            h11.Response(status_code=408, headers=headers, reason=b"Request Timeout"),
            h11.Data(data=TIMEOUT_ANSWER),
            h11.EndOfMessage(),
        )
        try:
            output = b"".join(self.conn.send(event) or b"" for event in events)
        except h11.LocalProtocolError:
            return False
        self.transport.write(output)
        return True


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[TimedH11Protocol]:
    """The protocol class for ``uvicorn.run(http=...)`` with these deadlines."""

    class Configured(TimedH11Protocol):
        pass

    Configured.header_timeout_s = header_timeout_s
    Configured.body_timeout_s = body_timeout_s
    return Configured

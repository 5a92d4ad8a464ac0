"""web/api.js's calls for answers (stop, regenerate, versions, branch, follow): the method, path
and body each sends, and how each reads the API's answer (the SSE events of a followed or
regenerated answer, 202 and 204 of stop). Run in Node with a stand-in fetch, so no browser is
needed; the browser suite drives the same calls against the real host."""

from __future__ import annotations

import json
import subprocess

from tools.local.host import ROOT

SCRIPT = r"""
import { createClient } from "./web/api.js";
const sent = [];
const sse = (events) =>
  events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join("");
const replies = [
  [202, ""], [204, ""],
  [200, sse([["delta", {content: "New "}], ["delta", {content: "answer"}],
             ["done", {messages: [
               {id: "m2", role: "assistant", content: "New answer", versions: 2}]}]])],
  [200, JSON.stringify({versions: [{id: "m2", content: "old"}, {id: "m2", content: "new"}]})],
  [201, JSON.stringify({sessionId: "s_2", title: "T (branch)"})],
  [200, sse([["resume", {message: {id: "m4", content: "So far"}}], ["delta", {content: ", more"}],
             ["done", {messages: [
               {id: "m4", role: "assistant", content: "So far, more", status: "complete"}]}]])],
  [200, sse([["delta", {content: "cut"}]])],
  [200, sse([["error", {error: {code: "conflict", message: "stale"}}]])],
];
globalThis.fetch = async (url, init) => {
  sent.push([init.method, url, init.body ?? null, init.headers.Accept]);
  const [status, body] = replies[sent.length - 1];
  return new Response(status === 204 ? null : body, { status });
};
const api = createClient();
const out = {};
out.stop = [await api.stopAnswer("s_1"), await api.stopAnswer("s_1")];
const deltas = [];
out.regenerate = await api.regenerateStream(
  "s_1", { clientMessageId: "c1" }, { onDelta: (d) => deltas.push(d) });
out.deltas = deltas;
out.versions = await api.versions("s_1", "m2");
out.fork = await api.fork("s_1", "m2");
const followed = [];
out.follow = await api.followAnswer("s_1", {
  onResume: (m) => followed.push(["resume", m.content]),
  onDelta: (d) => followed.push(["delta", d]),
});
out.followed = followed;
for (const name of ["cut", "error"]) {
  try { await api.followAnswer("s_1"); out[name] = "resolved"; }
  catch (error) { out[name] = error.code; }
}
out.sent = sent;
console.log(JSON.stringify(out));
"""


def test_the_answer_calls_send_and_read_what_the_contract_says() -> None:
    done = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["stop"] == [True, False]
    assert out["deltas"] == ["New ", "answer"]
    assert out["regenerate"]["messages"][0]["versions"] == 2
    assert [v["content"] for v in out["versions"]["versions"]] == ["old", "new"]
    assert out["fork"]["sessionId"] == "s_2"
    assert out["followed"] == [["resume", "So far"], ["delta", ", more"]]
    assert out["follow"]["messages"][0]["content"] == "So far, more"
    # A stream that ends without `done` was cut off; an `error` event is the API's error.
    assert out["cut"] == "network_error"
    assert out["error"] == "conflict"
    sse, js = "text/event-stream", "application/json"
    assert out["sent"] == [
        ["POST", "/api/sessions/s_1/stop", None, js],
        ["POST", "/api/sessions/s_1/stop", None, js],
        ["POST", "/api/sessions/s_1/regenerate", '{"clientMessageId":"c1"}', sse],
        ["GET", "/api/sessions/s_1/messages/m2/versions", None, js],
        ["POST", "/api/sessions/s_1/fork", '{"messageId":"m2"}', js],
        ["GET", "/api/sessions/s_1/stream", None, sse],
        ["GET", "/api/sessions/s_1/stream", None, sse],
        ["GET", "/api/sessions/s_1/stream", None, sse],
    ]

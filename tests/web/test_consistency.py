"""web/api.js carries Parley-Consistency: every call sends the latest value the API answered
(errors included), and a response without one keeps the previous value. Run in Node with a
stand-in fetch, so no browser is needed."""

from __future__ import annotations

import json
import subprocess

from tools.local.host import ROOT

SCRIPT = """
import { createClient, CONSISTENCY_HEADER } from "./web/api.js";
const sent = [];
const answers = [
  [200, "first"], [404, "second"], [200, null], [200, "third"], [200, null],
];
globalThis.fetch = async (url, init) => {
  sent.push(init.headers[CONSISTENCY_HEADER] ?? null);
  const [status, token] = answers[sent.length - 1];
  const headers = token ? { [CONSISTENCY_HEADER]: token } : {};
  const body = status === 200 ? "{}" : '{"error":{"code":"not_found","message":"x"}}';
  return new Response(body, { status, headers });
};
const api = createClient();
for (let i = 0; i < answers.length; i += 1) {
  try { await api.getSession("s_1"); } catch (error) { if (error.status !== 404) throw error; }
}
console.log(JSON.stringify(sent));
"""


def test_the_web_client_sends_the_latest_consistency_token() -> None:
    done = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == [None, "first", "second", "second", "third"]

"""The host's log after a whole conversation and a run of errors: one structured line per
request, and no message text, identity header or raw email anywhere in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from shared.audit import user_hash
from tools.local.host import dev_headers, run_host

SALT = "test-salt-5f2c"
EMAIL = "Grace.Hopper@Example.com"
SECRETS = ["COBOL-is-my-secret-7781", "second-turn-text-9932", "streamed-words-4410", "x" * 40]
LINE = re.compile(r"parley\.http request (\{.*\})$")


def test_log_has_one_safe_line_per_request(tmp_path: Path) -> None:
    env = {
        "AUTH_MODE": "dev",
        "SQLITE_PATH": str(tmp_path / "c.db"),
        "LOG_HASH_SALT": SALT,
        "MAX_MESSAGE_CHARS": "1000",
    }
    with (
        run_host(env, tmp_path / "h.log") as host,
        httpx.Client(base_url=host.base_url, headers=dev_headers(EMAIL), timeout=10) as client,
    ):
        first = client.post("/api/chat", json={"message": SECRETS[0], "clientMessageId": "c1"})
        sid = first.json()["sessionId"]
        statuses = [first.status_code]
        statuses.append(
            client.post("/api/chat", json={"message": SECRETS[1], "sessionId": sid}).status_code
        )
        statuses.append(
            client.post(
                "/api/chat",
                json={"message": SECRETS[2], "sessionId": sid},
                headers={"Accept": "text/event-stream"},
            ).status_code
        )
        statuses.append(client.get("/api/sessions").status_code)
        statuses.append(client.get(f"/api/sessions/{sid}").status_code)
        # Errors, several carrying user text or an email where a careless log would copy it.
        statuses.append(client.post("/api/chat", json={"message": "   "}).status_code)
        statuses.append(client.post("/api/chat", json={"message": SECRETS[3] * 30}).status_code)
        statuses.append(client.post("/api/chat", content=SECRETS[0].encode()).status_code)
        statuses.append(
            client.post("/api/chat", json={"message": 5, "note": SECRETS[1]}).status_code
        )
        statuses.append(client.get(f"/api/sessions/{EMAIL}").status_code)
        statuses.append(
            client.post("/api/chat", json={"message": "hi", "sessionId": EMAIL}).status_code
        )
        statuses.append(
            client.get("/api/sessions", headers={"X-MS-CLIENT-PRINCIPAL-NAME": ""}).status_code
        )
        statuses.append(client.delete(f"/api/sessions/{sid}").status_code)
        log = host.log()

    assert statuses == [200, 200, 200, 200, 200, 400, 413, 415, 400, 404, 404, 401, 204]
    lowered = log.lower()
    for secret in SECRETS:
        assert secret.lower() not in lowered, secret
    assert EMAIL.lower() not in lowered
    assert "grace.hopper" not in lowered

    lines = [json.loads(m.group(1)) for m in map(LINE.search, log.splitlines()) if m]
    assert [line["status"] for line in lines] == statuses
    user = user_hash(EMAIL.lower(), SALT)
    for line in lines:
        assert {"route", "method", "status", "durationMs", "requestBytes"} <= set(line)
        assert line["durationMs"] >= 0
        if line["status"] != 401:
            assert line["user"] == user
    assert lines[0]["sessionId"] == sid and lines[0]["requestBytes"] > len(SECRETS[0])
    assert lines[0]["responseBytes"] > 0
    assert lines[4]["route"] == "/api/sessions/{sessionId}" and lines[4]["sessionId"] == sid
    # A caller-chosen path segment or body field that is not one of our ids is not logged.
    assert lines[9]["route"] == "/api/sessions/{sessionId}" and "sessionId" not in lines[9]
    assert "sessionId" not in lines[10]

"""POST /api/import over HTTP on the local host (``openapi.yaml``), and the operators' command
``python -m shared.importer``: media types, the size limit, the report, a malformed file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tools.local.host import ROOT, dev_headers, run_host

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "chatgpt-conversations.json"
LIMIT = 8192


def test_import_over_http(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    env = {**sqlite_env, "IMPORT_MAX_BYTES": str(LIMIT)}
    data = SAMPLE.read_bytes()
    assert len(data) < LIMIT
    with (
        run_host(env, tmp_path / "host.log") as host,
        httpx.Client(base_url=host.base_url, headers=dev_headers("ann@example.com")) as client,
    ):
        url = "/api/import"
        sent = client.post(url, content=data, headers={"content-type": "application/json"})
        assert sent.status_code == 200, sent.text
        report = sent.json()
        assert (report["imported"], report["skipped"], report["leftOut"]) == (2, 0, 2)
        assert report["failed"] == [
            {"title": "Broken one", "reason": "the message tree names a missing node 'missing'"}
        ]
        listed = client.get("/api/sessions").json()["sessions"]
        assert sorted(s["sessionId"] for s in listed) == sorted(report["sessions"])
        again = client.post(url, content=data, headers={"content-type": "application/json"})
        assert (again.json()["imported"], again.json()["skipped"]) == (0, 2)

        too_big = client.post(
            url, content=b"[" + b" " * LIMIT + b"]", headers={"content-type": "application/json"}
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"
        wrong_type = client.post(url, content=data, headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 415
        malformed = client.post(url, content=b"{", headers={"content-type": "application/json"})
        assert malformed.status_code == 400
        assert malformed.json()["error"]["message"] == "The file is not valid JSON."
        assert (
            client.post(
                url,
                content=data,
                headers={"content-type": "application/json", "X-MS-CLIENT-PRINCIPAL-NAME": ""},
            ).status_code
            == 401
        )


def test_the_import_command(sqlite_env: dict[str, str]) -> None:
    base = {"PATH": "/usr/bin:/bin", "LOG_HASH_SALT": "s", **sqlite_env}
    ran = subprocess.run(
        [sys.executable, "-m", "shared.importer", "--email", "Cal@Example.com", str(SAMPLE)],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert (report["imported"], report["skipped"], len(report["failed"])) == (2, 0, 1)
    [audit_line] = [line for line in ran.stderr.splitlines() if line.startswith("import {")]
    fields = json.loads(audit_line.removeprefix("import "))
    assert fields["imported"] == 2 and fields["by"] == "operator"
    assert "cal@example.com" not in ran.stderr.lower() and "Lisbon" not in ran.stderr

"""Answer status over HTTP (docs/http.md, "Answers as they grow"): every assistant message
carries its status, a user message none, in the turn's answer and in what is read back."""

from __future__ import annotations

import httpx

from tests.support.deployments import chat


def test_assistant_messages_carry_their_status(alice: httpx.Client) -> None:
    turn = chat(alice, "hello there")
    user, answer = turn["messages"]
    assert "status" not in user and answer["status"] == "complete"
    sid = turn["sessionId"]
    read = alice.get(f"/api/sessions/{sid}").json()["messages"]
    assert [m.get("status") for m in read] == [None, "complete"]
    page = alice.get(f"/api/sessions/{sid}/messages").json()["messages"]
    assert [m.get("status") for m in page] == [None, "complete"]
    streamed = alice.post(
        "/api/chat",
        json={"message": "and streamed?", "sessionId": sid},
        headers={"Accept": "text/event-stream"},
    )
    done = streamed.text.split("event: done\ndata: ")[1]
    assert '"status":"complete"' in done
    read = alice.get(f"/api/sessions/{sid}").json()["messages"]
    assert [m.get("status") for m in read] == [None, "complete", None, "complete"]

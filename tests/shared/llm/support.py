"""What the model suites share besides fixtures: the host's settings on the scripted model
server, and a Server-Sent Events answer read with its exact framing."""

from __future__ import annotations

from pathlib import Path

from tests.support.fake_openai import FakeOpenAI


def host_env(fake: FakeOpenAI, db: Path) -> dict[str, str]:
    return {
        "AUTH_MODE": "dev",
        "STORAGE_BACKEND": "sqlite",
        "SQLITE_PATH": str(db),
        "OPENAI_BASE_URL": fake.url + "/v1",
        "OPENAI_MODEL": "local-model",
        "LLM_MAX_RETRIES": "0",
        "LLM_TIMEOUT_S": "1",
        "SYSTEM_PROMPT": "Be brief.",
        "MAX_HISTORY_MESSAGES": "4",
        "MAX_CONTEXT_TOKENS": "100",
        # These tests are about the chat call; titles by the model have their own tests.
        "TITLE_MODE": "first-message",
    }

"""docs/deploy.md stays true to the program: every config key, the code's defaults, the commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.stack_config import (
    APP_SETTING_KEYS,
    AZURE_DEFAULTS,
    CONFIG_KEYS,
    DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY,
    OPTIONAL_APP_SETTING_KEYS,
)
from shared.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
# A row of the configuration table: | `key` | default | what it sets | accepted values |
_ROW = re.compile(r"^\| `(?P<key>[A-Za-z]+)` \| (?P<default>[^|]*) \|", re.MULTILINE)


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _documented_defaults() -> dict[str, str]:
    return {m["key"]: m["default"].strip() for m in _ROW.finditer(_text())}


def test_every_config_key_the_program_reads_is_documented() -> None:
    documented = _documented_defaults()
    assert sorted(set(CONFIG_KEYS) - set(documented)) == []
    # And the table documents no key the program does not read.
    assert sorted(set(documented) - set(CONFIG_KEYS)) == []


def _code_default(env_name: str) -> str | None:
    if env_name in AZURE_DEFAULTS:
        return AZURE_DEFAULTS[env_name]
    (info,) = [i for i in Settings.model_fields.values() if i.alias == env_name]
    return None if info.default is None else str(info.default)


@pytest.mark.parametrize("key", sorted(set(APP_SETTING_KEYS) - {"systemPrompt"}))
def test_documented_app_setting_defaults_are_the_code_s(key: str) -> None:
    documented = _documented_defaults()[key]
    expected = _code_default(APP_SETTING_KEYS[key])
    if key in OPTIONAL_APP_SETTING_KEYS:
        assert expected is None and documented == "unset"
        return
    assert expected is not None
    value = documented.strip("`")
    try:
        assert float(value) == float(expected)
    except ValueError:
        assert value == expected


def test_documented_http_concurrency_default_is_the_program_s() -> None:
    assert _documented_defaults()["httpPerInstanceConcurrency"] == (
        f"`{DEFAULT_HTTP_PER_INSTANCE_CONCURRENCY}`"
    )


def test_the_model_keys_are_documented_as_required() -> None:
    documented = _documented_defaults()
    for key in ("openAiModel", "openAiModelVersion", "openAiApiVersion"):
        assert documented[key].startswith("required"), key
    assert "az cognitiveservices model list --location" in _text()


def test_the_core_tools_publish_names_the_language() -> None:
    # The repository has no local.settings.json: without --python, Core Tools cannot tell the
    # worker runtime and the publish stops.
    publishes = [line for line in _text().splitlines() if "func azure functionapp publish" in line]
    assert publishes
    assert all("--python" in line for line in publishes)


def test_the_last_step_is_the_smoke_test() -> None:
    steps = re.findall(r"^## (\d+)\. (.+)$", _text(), re.MULTILINE)
    assert steps[-1][1] == "Smoke test"
    assert [int(n) for n, _ in steps] == list(range(1, len(steps) + 1))
    text = _text()
    assert ".venv/bin/python -m tools.smoke --base-url" in text
    assert "az account get-access-token --resource" in text and "PARLEY_SMOKE_TOKEN" in text
    assert "(smoke-test.md)" in text


SMOKE_DOC = DOC.parent / "smoke-test.md"


def _smoke_commands(text: str) -> list[str]:
    """Lines of fenced code blocks that run the smoke command."""
    commands: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced and "tools.smoke" in line:
            commands.append(line.strip())
    return commands


@pytest.mark.parametrize("doc", [DOC, SMOKE_DOC], ids=lambda p: p.name)
def test_the_smoke_step_runs_in_the_project_s_virtualenv(doc: Path) -> None:
    # The virtualenv holds the pinned versions the tests ran with; a system python may have
    # other versions of the smoke command's dependencies, or none.
    commands = _smoke_commands(doc.read_text(encoding="utf-8"))
    assert commands, f"{doc.name} shows no smoke command"
    for command in commands:
        assert command.startswith(".venv/bin/python -m tools.smoke "), command


def test_the_smoke_command_check_catches_a_system_python() -> None:
    planted = "```bash\npython -m tools.smoke --base-url x\n```\n"
    (command,) = _smoke_commands(planted)
    assert not command.startswith(".venv/bin/python -m tools.smoke ")

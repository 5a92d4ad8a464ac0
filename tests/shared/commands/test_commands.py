"""The operators' commands stand apart from the rules (shared/commands): the service and the
function app load no command-line code, every documented ``python -m shared.X`` still hands over
to its command, and every command shares one setup (exit 2 for bad settings, before anything
is touched)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Each documented command line, and the module in shared/commands/ that runs it.
COMMANDS = {
    "shared.export": "export",
    "shared.erase": "erase",
    "shared.archive": "archive",
    "shared.identity": "identity",
    "shared.usage": "usage",
    "shared.importer": "importer",
    "shared.report": "report",
}


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_the_rules_load_no_command_line_code() -> None:
    loaded = json.loads(
        _python(
            "import json, sys; import shared.service, function_app;"
            " print(json.dumps(sorted(m for m in sys.modules"
            " if m in ('argparse', 'shared.cli') or m.startswith('shared.commands'))))"
        )
    )
    assert loaded == []


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_every_documented_command_line_still_runs_its_command(module: str) -> None:
    ran = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert f"python -m {module}" in ran.stdout  # the command's own parser answered


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("shared.export", ["--email", "kate@example.com"]),
        ("shared.erase", ["--email", "kate@example.com", "--dry-run"]),
        ("shared.archive", ["--dry-run"]),
        ("shared.identity", ["show", "--email", "kate@example.com"]),
        ("shared.usage", ["--email", "kate@example.com"]),
        ("shared.report", ["--json"]),
    ],
)
def test_bad_settings_exit_2_with_one_line_naming_the_command(
    module: str, args: list[str], tmp_path: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "STORAGE_BACKEND": "cosmos"}  # cosmos without an endpoint
    ran = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    assert ran.stdout == ""
    command = COMMANDS[module].replace("importer", "import")
    assert ran.stderr.splitlines() == [
        f"{command}{' show' if module == 'shared.identity' else ''}: invalid configuration: "
        "settings: Value error, STORAGE_BACKEND=cosmos needs COSMOS_ENDPOINT"
    ]

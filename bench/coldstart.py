"""Measurement 3: cold start, as the import time of ``function_app`` in a fresh process,
against what any function app streaming over HTTP must import first: ``azure.functions`` and
the HTTP streaming extension (SSE on Azure needs it). ``azure.functions`` alone is shown too."""

from __future__ import annotations

import re
import statistics
import subprocess
from typing import Any

from bench.common import ROOT, python_exe

# function_app over azure.functions + the streaming extension: what Parley itself adds.
BUDGET_RATIO = 1.1
# What the HTTP-streaming functions must import before any Parley code: the budget's baseline,
# and what shows how much of the cold start is the extension's (FastAPI, Starlette, uvicorn).
EXTENSION = "azure.functions, azurefunctions.extensions.http.fastapi"
_PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def _import_time(module: str) -> float:
    out = subprocess.run(
        [python_exe(), "-c", _PROBE.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "AUTH_MODE": "dev"},
    )
    return float(out.stdout.strip().splitlines()[-1])


# Where the time goes: the third-party packages and our own modules worth deferring.
WATCH = (
    "azure.functions",
    "azurefunctions.extensions.http.fastapi",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "werkzeug",
    "functions.chat",
    "functions.sessions",
    "functions.http",
    "functions.archive_timer",
    "shared.archive",
    "shared.service",
    "shared.models",
    "shared.config",
    "shared.auth",
)


def heaviest_imports(module: str = "function_app") -> list[dict[str, Any]]:
    """Cumulative import time of the WATCH modules (``python -X importtime``); a module
    is charged to whoever imports it first."""
    out = subprocess.run(
        [python_exe(), "-X", "importtime", "-c", f"import {module}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "AUTH_MODE": "dev"},
    )
    pattern = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)")
    found = {}
    for line in out.stderr.splitlines():
        match = pattern.match(line)
        if match and match.group(2) in WATCH:
            found[match.group(2)] = int(match.group(1)) / 1000
    rows = [{"module": name, "cumulative_ms": round(ms, 1)} for name, ms in found.items()]
    return sorted(rows, key=lambda r: r["cumulative_ms"], reverse=True)


def run(runs: int, *, detail: bool = True) -> dict[str, Any]:
    # Interleaved, so a slow moment of the machine hits every side alike.
    app: list[float] = []
    base: list[float] = []
    ext: list[float] = []
    for _ in range(runs):
        base.append(_import_time("azure.functions"))
        ext.append(_import_time(EXTENSION))
        app.append(_import_time("function_app"))
    app_ms, base_ms, ext_ms = (statistics.median(t) * 1000 for t in (app, base, ext))
    ratio = app_ms / ext_ms
    result: dict[str, Any] = {
        "runs": runs,
        "function_app_median_ms": round(app_ms, 1),
        "azure_functions_median_ms": round(base_ms, 1),
        "with_fastapi_extension_median_ms": round(ext_ms, 1),
        "ratio": round(ratio, 2),
        "ratio_to_azure_functions": round(app_ms / base_ms, 2),
        "extension_ratio": round(ext_ms / base_ms, 2),
        "budget_ratio": BUDGET_RATIO,
        "budget_met": ratio <= BUDGET_RATIO,
    }
    if detail and ratio > BUDGET_RATIO:
        result["heaviest_imports"] = heaviest_imports()
    return result

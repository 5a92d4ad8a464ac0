"""What runs in Azure is what was tested: every package the published code imports is pinned.

Azure's remote build installs ``requirements.txt`` and nothing else; a package reached only
through another's loose requirement (the HTTP streaming extension asks for ``fastapi>=0.115``,
``uvicorn>=0.32``) would arrive at whatever version is newest on the day of the publish. So every
third-party module the published code imports, and every package the streaming extension loads
into the app's process, must be an exact pin in ``requirements.txt``, at the version the tests
ran with (the one installed in the project's virtualenv).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# The extension that brings FastAPI, Starlette and Uvicorn into the Functions worker.
STREAMING_EXTENSION = "azurefunctions-extensions-http-fastapi"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(?P<version>[^\s;#]+)$")


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by normalised name; other lines fail."""
    found: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        match = _PIN.match(line)
        assert match, f"{path.name}: {raw!r} is not an exact pin (name==version)"
        found[_normalise(match["name"])] = match["version"]
    return found


def published_sources() -> list[Path]:
    """The Python files a publish packages: the repository minus what .funcignore leaves out."""
    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    # A pattern without a slash matches a name at the top; one with a slash, a path from the root.
    def left_out(path: Path) -> bool:
        relative = path.relative_to(REPO_ROOT).as_posix()
        return any(
            fnmatch.fnmatch(relative if "/" in pattern else path.name, pattern)
            for pattern in ignored
        )

    files: list[Path] = []
    for entry in sorted(REPO_ROOT.iterdir()):
        if left_out(entry):
            continue
        if entry.is_dir():
            files.extend(
                p
                for p in sorted(entry.rglob("*.py"))
                if "__pycache__" not in p.parts and not left_out(p)
            )
        elif entry.suffix == ".py":
            files.append(entry)
    return files


def imported_modules(sources: Iterable[tuple[str, str]]) -> set[str]:
    """Every absolute module name imported by the sources (name, text), at any depth."""
    modules: set[str] = set()
    for name, text in sources:
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module)
    return modules


def distributions_of(module: str, index: Mapping[str, list[str]]) -> set[str]:
    """The installed distributions that provide ``module`` (normalised names).

    ``index`` is ``importlib.metadata.packages_distributions()``. A namespace package (``azure``,
    ``azurefunctions``) is shared by several distributions: the one whose files hold the module
    is the one that counts.
    """
    candidates = index.get(module.split(".")[0], [])
    if len(candidates) <= 1:
        return {_normalise(d) for d in candidates}
    path = module.replace(".", "/")
    providers = set()
    for dist in candidates:
        files = importlib.metadata.distribution(dist).files or []
        if any(str(f).startswith(f"{path}/") or str(f) == f"{path}.py" for f in files):
            providers.add(_normalise(dist))
    return providers


def third_party(modules: Iterable[str], first_party: set[str]) -> set[str]:
    return {
        m
        for m in modules
        if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] not in first_party
    }


def unpinned(
    modules: Iterable[str], pinned: Mapping[str, str], index: Mapping[str, list[str]]
) -> list[str]:
    """The modules no pinned distribution provides, with what provides them (or 'not installed')."""
    problems = []
    for module in sorted(modules):
        providers = distributions_of(module, index)
        if not providers:
            problems.append(f"{module}: not installed")
        elif not providers & set(pinned):
            problems.append(f"{module}: from {sorted(providers)}, not pinned")
    return problems


def _first_party() -> set[str]:
    return {p.stem if p.suffix == ".py" else p.name for p in REPO_ROOT.iterdir()}


def test_the_published_code_is_found() -> None:
    names = {p.relative_to(REPO_ROOT).as_posix() for p in published_sources()}
    assert "function_app.py" in names
    assert any(n.startswith("functions/") for n in names)
    assert any(n.startswith("shared/") for n in names)
    left_out = {"tests", "infra", "tools", "devhost", "bench"}
    assert not any(n.split("/")[0] in left_out for n in names)
    # The report's charts need matplotlib, a development requirement: never published.
    assert "shared/report/__init__.py" in names
    assert "shared/report/charts.py" not in names


def test_every_module_the_app_imports_is_pinned() -> None:
    sources = [(str(p), p.read_text(encoding="utf-8")) for p in published_sources()]
    modules = third_party(imported_modules(sources), _first_party())
    # What the code imports today, so that a scan that finds nothing cannot pass.
    assert {"starlette.requests", "azurefunctions.extensions.http.fastapi", "jwt"} <= modules
    index = importlib.metadata.packages_distributions()
    assert unpinned(modules, pins(REPO_ROOT / "requirements.txt"), index) == []


def test_the_streaming_extension_s_own_requirements_are_pinned() -> None:
    # FastAPI, Starlette (FastAPI's), Uvicorn: loaded into the app's process by the extension.
    required = {
        _normalise(re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0])
        for requirement in importlib.metadata.requires(STREAMING_EXTENSION) or []
        if "extra ==" not in requirement
    }
    assert {"fastapi", "uvicorn"} <= required
    pinned = pins(REPO_ROOT / "requirements.txt")
    assert sorted(required - set(pinned)) == []
    assert {"fastapi", "starlette", "uvicorn"} <= set(pinned)


def test_the_pins_are_the_versions_the_tests_ran_with() -> None:
    for path in ("requirements.txt", "requirements-dev.txt"):
        for name, version in pins(REPO_ROOT / path).items():
            installed = importlib.metadata.version(name)
            assert installed == version, f"{path}: {name}=={version}, but {installed} is installed"


def test_development_requirements_include_and_never_repeat_the_app_s() -> None:
    dev_text = (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert "-r requirements.txt" in dev_text.splitlines()
    repeated = set(pins(REPO_ROOT / "requirements.txt")) & set(
        pins(REPO_ROOT / "requirements-dev.txt")
    )
    assert sorted(repeated) == [], "pinned in both files: keep the one in requirements.txt"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import httpx", ["httpx: from ['httpx'], not pinned"]),
        ("from starlette.requests import Request", []),
        ("from azure.cosmos import exceptions", []),
        ("import azure.storage.blob", ["azure.storage.blob: not installed"]),
        ("def f():\n    import yarl\n", ["yarl: from ['yarl'], not pinned"]),
        ("from . import sibling\nimport json", []),
    ],
)
def test_the_scan_catches_an_unpinned_import(source: str, expected: list[str]) -> None:
    # The checks above must be able to fail: an import of a package requirements.txt does not
    # pin (nested in a function too) is named, with what provides it.
    pinned = pins(REPO_ROOT / "requirements.txt")
    modules = third_party(imported_modules([("planted.py", source)]), _first_party())
    index = importlib.metadata.packages_distributions()
    assert unpinned(modules, pinned, index) == expected

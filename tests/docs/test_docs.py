"""Every document the code and the docs cite is in the repository, and every setting is documented.

A newcomer follows references: a comment that says "see docs/x.md" or a page that links to
another must lead somewhere. These tests read every source and documentation file of the
repository and fail on:

- a cited path (``docs/http.md``, ``tools/cosmos/README.md``, ``openapi.yaml``,
  ``shared/service.py``) that does not exist, from the root or from the citing file's folder;
- a relative Markdown link, or an ``href``/``src`` of a page, whose target does not exist, and
  a link to a heading (``http.md#export``) that the page does not have;
- a section named after a cited page (``docs/http.md``, "Export") that the page does not have;
- any mention of documents that were never part of this repository (the brief the project
  started from, ``FORBIDDEN`` below; the deploy guide included);
- a setting the code reads (``shared/config.py: SETTINGS``) missing from
  ``docs/configuration.md``, or documented there with another default or range.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from annotated_types import Ge, Gt, Le, Lt

from shared.config import SETTINGS, Settings

THIS = Path(__file__).resolve()
ROOT = THIS.parents[2]

# Pages other engineers are writing on their own branches: cited already, merged later. Remove
# an entry once its page is in the repository.
EXPECTED: frozenset[str] = frozenset()
# Files the tooling makes outside the repository: a stack's configuration (``pulumi stack init``).
GENERATED = re.compile(r"^Pulumi\.[\w-]+\.yaml$")

# Documents that were never part of this repository; citing them sends a reader nowhere. Built
# from pieces so that this file does not cite them itself.
FORBIDDEN = ("API" + ".md", "DESIGN" + ".md", "../" + "shared/")

SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "node_modules",
        "__pycache__",
        ".data",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "artifacts",
    }
)
SCANNED_SUFFIXES = frozenset(
    {".py", ".js", ".mjs", ".yaml", ".yml", ".md", ".html", ".css", ".toml"}
)
SCANNED_NAMES = frozenset({"Makefile", "package.json", ".funcignore", "run"})

# A path cited in text: folders and a file name with an extension we keep in the repository.
# Not part of a longer word, URL or path (the lookbehind), and not a glob or a placeholder.
CITED_PATH = re.compile(
    r"(?<![\w./@:<>*{$-])"
    r"((?:\.\./|\./)?(?:[\w.-]+/)*[\w-][\w.-]*\."
    r"(?:md|yaml|yml|py|js|mjs|json|toml|html|css|png))"
    r"(?![\w/*>}-])"
)
# Bare file names (no folder) are checked only for documents, and any file of that name will do:
# ``summary.md`` in a sentence about ``bench/results/`` is a name, not a path from here.
BARE_CHECKED = (".md", ".yaml", ".yml")
URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s)\"'`>\]]+", re.IGNORECASE)
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
# ``docs/x.md``, "Section" (and "Other section"): a section a comment sends the reader to.
CITED_SECTION = re.compile(
    r"(docs/[\w-]+\.md|README\.md)`{0,2},?\s+"
    r"((?:\"[^\"]+\"(?:,?\s+(?:and\s+)?)?)+)"
)
QUOTED = re.compile(r"\"([^\"]+)\"")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _all_files() -> Iterator[Path]:
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_DIRS and not (Path(folder) / d).is_symlink()
        )
        for name in sorted(names):
            yield Path(folder) / name


def _scanned(path: Path) -> bool:
    if path.relative_to(ROOT).as_posix().startswith("bench/results/"):
        return False  # written by the benchmark
    return path.suffix in SCANNED_SUFFIXES or path.name in SCANNED_NAMES


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


FILES = sorted(path for path in _all_files() if _scanned(path))
NAMES = frozenset(path.name for path in _all_files()) | {Path(page).name for page in EXPECTED}


@cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _exists(target: str, citing: Path) -> bool:
    """``target`` names a file or folder of the repository, read from the root or from the
    citing file's folder (or is a page another branch brings)."""
    target = target.split("#", 1)[0].split("?", 1)[0]
    if not target:
        return True
    for base in (ROOT, citing.parent):
        candidate = (base / target).resolve()
        if candidate.is_relative_to(ROOT) and candidate.exists():
            return True
        if candidate.is_relative_to(ROOT) and candidate.relative_to(ROOT).as_posix() in EXPECTED:
            return True
    return False


def _without_urls(text: str) -> str:
    return URL.sub(" ", text)


def cited_paths(path: Path) -> list[str]:
    text = _without_urls(_text(path))
    found = []
    for match in CITED_PATH.finditer(text):
        cited = match.group(1).rstrip(".")
        if "/" not in cited and not cited.endswith(BARE_CHECKED):
            continue
        if GENERATED.match(cited) or any(word in cited for word in FORBIDDEN):
            continue  # made by the tooling; or the next test's finding
        found.append(cited)
    return found


def test_every_cited_path_exists() -> None:
    missing = [
        f"{_rel(path)}: {cited}"
        for path in FILES
        if path != THIS
        for cited in cited_paths(path)
        if not (_exists(cited, path) or ("/" not in cited and cited in NAMES))
    ]
    assert not missing, "\n".join(missing)


def test_nothing_cites_documents_that_were_never_here() -> None:
    found = [
        f"{_rel(path)}: {word}"
        for path in FILES
        if path != THIS
        for word in FORBIDDEN
        if word in _text(path)
    ]
    assert not found, "\n".join(found)


def _links(path: Path) -> list[str]:
    text = _text(path)
    if path.suffix == ".md":
        return MD_LINK.findall(FENCE.sub("", text))
    if path.suffix == ".html":
        return HTML_LINK.findall(text)
    return []


def _is_local(target: str) -> bool:
    return not (URL.match(target) or target.startswith(("mailto:", "data:", "//")))


def test_every_relative_link_leads_to_a_file() -> None:
    broken = [
        f"{_rel(path)}: {target}"
        for path in FILES
        for target in _links(path)
        if _is_local(target) and not target.startswith("#") and not _exists(target, path)
    ]
    assert not broken, "\n".join(broken)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(page: Path) -> list[str]:
    return [h.replace("`", "") for h in HEADING.findall(FENCE.sub("", _text(page)))]


def anchors(page: Path) -> set[str]:
    """The page's heading anchors; a repeated one gets ``-1``, ``-2``... as GitHub numbers them."""
    found: set[str] = set()
    for heading in headings(page):
        base = slug(heading)
        anchor, n = base, 0
        while anchor in found:
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


def test_every_link_to_a_heading_finds_it() -> None:
    broken = []
    for path in FILES:
        for target in _links(path):
            if not _is_local(target) or "#" not in target:
                continue
            page_part, anchor = target.split("#", 1)
            page = (path.parent / page_part).resolve() if page_part else path
            if page.suffix != ".md" or not page.exists():
                continue  # a missing page is the other test's finding
            if anchor not in anchors(page):
                broken.append(f"{_rel(path)}: {target}")
    assert not broken, "\n".join(broken)


def test_every_cited_section_exists() -> None:
    missing = []
    for path in FILES:
        if path == THIS:
            continue  # its docstring shows the form
        for match in CITED_SECTION.finditer(_text(path)):
            page = ROOT / match.group(1)
            if not page.exists():
                continue  # a missing page is the other test's finding
            titles = set(headings(page))
            for raw in QUOTED.findall(match.group(2)):
                # A quote broken over two comment or docstring lines.
                name = re.sub(r"\s*\n\s*(?:#|//|\*)?\s*", " ", raw).strip()
                if name not in titles:
                    missing.append(f"{_rel(path)}: {match.group(1)}, {name!r}")
    assert not missing, "\n".join(missing)


# ---- the configuration page ---------------------------------------------------------------------

CONFIGURATION = ROOT / "docs" / "configuration.md"
# A row of a settings table: | `NAME` | default | accepted values | meaning |
SETTING_ROW = re.compile(
    r"^\| `(?P<name>[A-Z][A-Z0-9_]*)` \| (?P<default>[^|]*) \| (?P<range>[^|]*) \|", re.MULTILINE
)


def _rows() -> dict[str, tuple[str, str]]:
    return {
        m["name"]: (m["default"].strip(), m["range"].strip())
        for m in SETTING_ROW.finditer(_text(CONFIGURATION))
    }


def test_every_setting_the_code_reads_is_on_the_configuration_page() -> None:
    rows = _rows()
    assert sorted(set(SETTINGS) - set(rows)) == []
    # And the page's settings tables name nothing the code does not read.
    assert sorted(set(rows) - set(SETTINGS)) == []


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


@pytest.mark.parametrize("name", sorted(set(SETTINGS) - {"SYSTEM_PROMPT"}))
def test_documented_defaults_are_the_code_s(name: str) -> None:
    (field,) = [f for f in Settings.model_fields.values() if f.alias == name]
    documented = _rows()[name][0]
    default = field.default
    if default is None or default == ():
        # No value: the page says what happens instead (unset, derived from others...).
        assert not documented.startswith("`"), documented
        return
    quoted = re.match(r"`([^`]*)`", documented)
    value = quoted.group(1) if quoted else documented.split(" ")[0]
    if isinstance(default, bool):
        assert value == str(default).lower()
    elif isinstance(default, int | float):
        assert _number(value) == float(default), documented
    else:
        assert value == str(default), documented


def _bound(value: object) -> str:
    number = float(str(value))
    return str(int(number)) if number.is_integer() else str(number)


@pytest.mark.parametrize("name", SETTINGS)
def test_documented_ranges_are_the_code_s(name: str) -> None:
    (field,) = [f for f in Settings.model_fields.values() if f.alias == name]
    documented = _rows()[name][1]
    bounds = [m for m in field.metadata if isinstance(m, Ge | Gt | Le | Lt)]
    numbers = {_bound(n) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", documented.replace(",", ""))}
    for bound in bounds:
        limit = next(getattr(bound, a) for a in ("ge", "gt", "le", "lt") if hasattr(bound, a))
        assert _bound(limit) in numbers, (documented, bound)


# ---- the README's layout is the tree ----------------------------------------------------------


def layout_block() -> list[str]:
    """The lines of the README's "Layout" picture (its fenced block)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].splitlines()


def layout_entries(lines: list[str]) -> dict[str, list[str]]:
    """Each top-level entry of the picture (``shared/``, ``function_app.py``) and the lines
    drawn under it (its children and their descriptions)."""
    entries: dict[str, list[str]] = {}
    current = ""
    for line in lines:
        if line and not line[0].isspace():
            current = line.split()[0]
            entries[current] = []
        elif current:
            entries[current].append(line)
    return entries


def tracked_top_level() -> set[str]:
    """What a newcomer sees at the root: folders as ``name/``, Python files, nothing hidden."""
    names = set()
    for entry in ROOT.iterdir():
        if entry.name.startswith((".", "__")) or entry.name in {"node_modules"}:
            continue
        if entry.is_dir() and any(entry.rglob("*.*")):
            names.add(f"{entry.name}/")
        elif entry.suffix == ".py":
            names.add(entry.name)
    return names


def shared_children() -> set[str]:
    """Each module and package of ``shared/``, as the picture names them."""
    return {
        f"{p.name}/" if p.is_dir() else p.name
        for p in (ROOT / "shared").iterdir()
        if not p.name.startswith("__")
        and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    }


def test_the_layout_draws_every_top_level_folder_and_nothing_else() -> None:
    drawn = set(layout_entries(layout_block()))
    # Virtual environments and caches a checkout makes are not the project's.
    made_here = {".venv/", "node_modules/"}
    assert drawn == tracked_top_level() - made_here


def test_the_layout_names_every_module_of_shared_and_only_those() -> None:
    under_shared = " ".join(layout_entries(layout_block())["shared/"])
    named = set(re.findall(r"(?<![\w/.])([a-z_]+(?:\.py|/))", under_shared))
    named = {n for n in named if (ROOT / "shared" / n.rstrip("/")).exists() or n.endswith(".py")}
    missing = shared_children() - named
    assert not missing, f"README's layout does not name: {sorted(missing)}"
    gone = {n for n in named if n.endswith(".py") and not (ROOT / "shared" / n).exists()}
    nested = {
        n for n in gone if any((ROOT / "shared").rglob(n))
    }  # a file of a subpackage, named in its line
    assert gone - nested == set(), f"README's layout names what shared/ lacks: {sorted(gone)}"

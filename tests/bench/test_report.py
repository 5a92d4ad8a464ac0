"""Where the benchmark writes the README's figures (bench/report.py): only a full run into the
committed results folder rewrites the README; ``make bench-quick``'s smaller figures never do."""

from __future__ import annotations

from pathlib import Path

from bench.report import README, RESULTS, headline_path


def test_a_full_run_into_the_committed_results_rewrites_the_readme() -> None:
    assert headline_path({"mode": "full"}, RESULTS) == README


def test_a_quick_run_into_the_committed_results_leaves_the_readme() -> None:
    assert headline_path({"mode": "quick"}, RESULTS) is None


def test_a_run_elsewhere_writes_the_figures_beside_its_results(tmp_path: Path) -> None:
    assert headline_path({"mode": "full"}, tmp_path) == tmp_path / "README.md"
    assert headline_path({"mode": "quick"}, tmp_path) == tmp_path / "README.md"

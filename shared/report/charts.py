"""The report's charts (``python -m shared.report``): matplotlib, a development requirement,
kept out of the deployed package (.funcignore leaves this file out)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.report import Report


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: without the XML prologue


def charts(report: Report) -> list[tuple[str, str]]:
    """(title, inline SVG) per chart, drawn with matplotlib's Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dates = [d.date[5:] for d in report.days]
    out: list[tuple[str, str]] = []

    def daily(title: str, series: dict[str, list[int]]) -> None:
        figure, axes = plt.subplots(figsize=(8, 2.6))
        for label, values in series.items():
            axes.plot(dates, values, marker="o", markersize=3, label=label)
        axes.set_title(title)
        axes.tick_params(axis="x", labelrotation=60, labelsize=7)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
        out.append((title, _svg(figure)))
        plt.close(figure)

    daily("Daily active users", {"users": [d.active_users for d in report.days]})
    daily("Turns per day", {"turns": [d.turns for d in report.days]})
    daily(
        "Tokens per day",
        {
            "prompt": [d.prompt_tokens for d in report.days],
            "cached": [d.cached_tokens for d in report.days],
            "completion": [d.completion_tokens for d in report.days],
        },
    )
    daily(
        "Archival: sessions moved and failed per day",
        {
            "moved": [d.moved for d in report.archival],
            "failed": [d.failed for d in report.archival],
        },
    )
    models = sorted(report.models.values(), key=lambda m: m.model)
    names = [m.model for m in models] or ["(none)"]
    for title, series in (
        (
            "Tokens per model",
            {
                "prompt": [m.prompt_tokens for m in models],
                "completion": [m.completion_tokens for m in models],
            },
        ),
        (
            "Answers rated up and down per model",
            {"up": [m.up for m in models], "down": [m.down for m in models]},
        ),
    ):
        figure, axes = plt.subplots(figsize=(8, 2.6))
        width = 0.8 / len(series)
        for n, (label, values) in enumerate(series.items()):
            axes.bar([i + n * width for i in range(len(models))], values, width, label=label)
        axes.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))], names)
        axes.set_title(title)
        axes.legend(fontsize=8)
        out.append((title, _svg(figure)))
        plt.close(figure)
    return out

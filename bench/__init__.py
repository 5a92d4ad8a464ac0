"""Parley's benchmark: ``python -m bench`` (full) and ``python -m bench --quick`` (under a minute).

Results go to ``bench/results/``: ``latest.json``, ``summary.md`` and PNG plots.
"""

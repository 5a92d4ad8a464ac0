"""``python -m tools.smoke``: prove a deployment works end to end, leaving nothing behind.

See docs/smoke-test.md; the checks are in ``checks.py``, the command line in ``__main__.py``.
"""

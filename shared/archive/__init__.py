"""Archival: stale conversations move to the archive container, unattended.

- ``sweep``: the pass the timer function runs (and the CLI);
- ``__main__``: ``python -m shared.archive``, the operator's command;
- the restore on the request path is the store's ``restore`` (``shared/storage/``), called by
  the service when a message arrives for an archived session.
"""

from shared.archive.sweep import (
    RUN_LOG_PREFIX,
    ArchivePolicy,
    ArchiveSummary,
    run_archive,
)

__all__ = ["RUN_LOG_PREFIX", "ArchivePolicy", "ArchiveSummary", "run_archive"]

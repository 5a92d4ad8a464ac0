"""The archival timer: one archival pass on ``ARCHIVE_SCHEDULE`` (an NCRONTAB app setting)."""

import logging

import azure.functions as func

from shared.runtime import get_runtime

log = logging.getLogger("parley.archive")

bp = func.Blueprint()


# ``%ARCHIVE_SCHEDULE%`` makes the host read the schedule from that app setting. use_monitor
# keeps the schedule's state in storage, so a run missed during a restart or scale-in is
# caught up (and reported past due) instead of silently skipped; run_on_startup stays off so
# that every cold start does not start a pass.
@bp.timer_trigger(
    schedule="%ARCHIVE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def archive_timer(timer: func.TimerRequest) -> None:
    # Imported here, not at module level: the pass is needed once a day, and the app's
    # import time is every cold start's.
    from shared.archive import ArchivePolicy, run_archive

    if timer.past_due:
        log.warning("archive_timer_past_due")
    runtime = get_runtime()
    policy = ArchivePolicy.from_settings(runtime.settings)
    # The pass logs its own one-line summary; the process's store is shared with the HTTP
    # functions (one client per process).
    await run_archive(runtime.store, policy, clock=runtime.clock)

"""Timer: every CHECK_SCHEDULE, ask for a check of every due window of every monitor."""
import logging

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger("mlops.schedule")


@bp.timer_trigger(arg_name="timer", schedule="%CHECK_SCHEDULE%", run_on_startup=False, use_monitor=True)
def schedule_checks(timer: func.TimerRequest) -> None:
    import bootstrap

    tick = bootstrap.container().schedule_checks()
    behind = "; ".join(f"{m} up to {n} window(s) behind" for m, n in sorted(tick.behind.items()))
    log.info("schedule_checks: %d check(s) requested%s%s", len(tick), " (past due)" if timer.past_due else "",
             f"; catching up: {behind}" if behind else "")

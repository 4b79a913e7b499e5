"""Alerts: a message per incident opened or resolved and per outcome of the retraining loop; a daily
digest of incident updates for the monitors that ask for one."""
import logging

import azure.functions as func

from core.routing import TOPIC
from functions._bus import consume

bp = func.Blueprint()
log = logging.getLogger("mlops.alerts")


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="alerts",
                              connection="ServiceBusConnection")
def send_alerts(msg: func.ServiceBusMessage) -> None:
    consume(msg, "alerts", lambda envelope, box: box.notify(envelope))


@bp.timer_trigger(arg_name="timer", schedule="0 0 7 * * *", run_on_startup=False, use_monitor=True)
def send_digest(timer: func.TimerRequest) -> None:
    """07:00 UTC: yesterday's (and any older unsent) incident updates, one message per day."""
    import bootstrap

    log.info("send_digest: %d update(s) sent", bootstrap.container().send_digest())

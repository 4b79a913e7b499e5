"""Alerts: one notification per incident change (opened, updated, resolved)."""
import azure.functions as func

from core.routing import TOPIC
from functions._bus import consume

bp = func.Blueprint()


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="alerts",
                              connection="ServiceBusConnection")
def send_alerts(msg: func.ServiceBusMessage) -> None:
    consume(msg, "alerts", lambda envelope, box: box.notify(envelope))

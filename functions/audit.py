"""Audit: every event on the topic kept as one record (state kind "audit"), so the trail is readable in order and
the audit subscription is drained rather than filling up."""
import azure.functions as func

from core.routing import TOPIC
from functions._bus import consume

bp = func.Blueprint()


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="audit",
                              connection="ServiceBusConnection")
def audit_events(msg: func.ServiceBusMessage) -> None:
    consume(msg, "audit", lambda envelope, box: box.audit(envelope))

"""A check's results where other tools look: Azure Monitor custom metrics on the endpoint (MLOPS_METRICS_REGION)."""
import azure.functions as func

from core.routing import TOPIC
from functions._bus import consume

bp = func.Blueprint()


@bp.service_bus_topic_trigger(arg_name="msg", topic_name=TOPIC, subscription_name="results",
                              connection="ServiceBusConnection")
def publish_results(msg: func.ServiceBusMessage) -> None:
    consume(msg, "results", lambda envelope, box: box.publish_results(envelope))

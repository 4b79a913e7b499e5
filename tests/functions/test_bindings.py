"""The whole app loads, declares the triggers the platform will bind, and imports fast."""
import json
import subprocess
import sys
import time
from pathlib import Path

import azure.functions as func
import pytest

from core.routing import SUBSCRIPTIONS, TOPIC

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def functions(app_functions):
    return app_functions


def trigger(fn):
    return fn.get_trigger().get_dict_repr()


def test_timers_use_app_settings_for_their_schedules(functions):
    assert trigger(functions["schedule_checks"])["schedule"] == "%CHECK_SCHEDULE%"
    assert trigger(functions["track_retrains"])["schedule"] == "%TRACK_SCHEDULE%"
    assert trigger(functions["schedule_checks"])["type"] == "timerTrigger"


@pytest.mark.parametrize("name, subscription", [
    ("run_check", "run-check"), ("send_alerts", "alerts"), ("start_retrain", "retrain"), ("gate_and_deploy", "deploy"),
    ("rebaseline_monitors", "rebaseline"),
    ("publish_results", "results"), ("audit_events", "audit"),
])
def test_service_bus_consumers_listen_on_their_subscription(functions, name, subscription):
    binding = trigger(functions[name])
    assert binding["type"] == "serviceBusTrigger"
    assert (binding["topicName"], binding["subscriptionName"]) == (TOPIC, subscription)
    # identity-based connection: the app setting is ServiceBusConnection__fullyQualifiedNamespace
    assert binding["connection"] == "ServiceBusConnection"
    assert subscription in SUBSCRIPTIONS


@pytest.mark.parametrize("name, route, method, auth", [
    ("request_check", "checks", "POST", "FUNCTION"),
    ("get_check", "checks/{id}", "GET", "FUNCTION"),
    ("get_check_report", "checks/{id}/report", "GET", "FUNCTION"),
    ("request_retrain", "retrain", "POST", "FUNCTION"),
    ("get_run", "runs/{id}", "GET", "FUNCTION"),
    ("health", "health", "GET", "ANONYMOUS"),
    ("list_monitors", "monitors", "GET", "FUNCTION"),
    ("monitor_timeline", "monitors/{name}/timeline", "GET", "FUNCTION"),
    ("list_checks", "checks", "GET", "FUNCTION"),
    ("list_incidents", "incidents", "GET", "FUNCTION"),
    ("list_runs", "runs", "GET", "FUNCTION"),
    ("list_deployments", "deployments", "GET", "FUNCTION"),
    ("dashboard", "dashboard", "GET", "FUNCTION"),
    ("dashboard_asset", "dashboard/assets/{name}", "GET", "FUNCTION"),
])
def test_http_routes_and_auth_levels(functions, name, route, method, auth):
    binding = trigger(functions[name])
    assert binding["route"] == route
    assert [m.value for m in binding["methods"]] == [method]
    assert binding["authLevel"].name == auth


def test_health_answers_without_touching_any_adapter(functions):
    res = functions["health"].get_user_function()(func.HttpRequest("GET", "/api/health", body=b""))
    assert res.status_code == 200 and json.loads(res.get_body()) == {"status": "ok"}


def test_host_json_declares_bundle_service_bus_and_timeout():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["functionTimeout"]
    bus = host["extensions"]["serviceBus"]
    assert bus["maxDeliveryCount"] >= 1 and bus["maxAutoLockRenewalDuration"]


def test_importing_the_app_is_fast_and_pulls_no_heavy_library():
    heavy_modules = ('pandas', 'numpy', 'evidently', 'sklearn', 'azure.ai.ml', 'scipy', 'pydantic', 'plotly',
                     'azure.storage.blob', 'azure.monitor.opentelemetry', 'opentelemetry.sdk',
                     'torch', 'onnxruntime', 'tokenizers', 'transformers', 'azure.ai.evaluation')  # the text stack too
    code = ("import sys, time; t = time.perf_counter(); import function_app; d = time.perf_counter() - t; "
            f"heavy = [m for m in {heavy_modules!r} if m in sys.modules]; print(d, heavy)")
    samples = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        seconds, heavy = out.stdout.split(" ", 1)
        samples.append(float(seconds))
        assert heavy.strip() == "[]"
    started = time.perf_counter()
    assert sorted(samples)[1] < 1.0, samples  # median of three; the budget is 1 s
    assert time.perf_counter() - started < 60

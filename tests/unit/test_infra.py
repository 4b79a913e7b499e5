"""The Azure deployment (infra/) agrees with the code: routing, host.json, settings, triggers, telemetry tables.

The Bicep compiler is not available offline, so the Bicep is checked structurally (infra/check.py, a
tree-sitter parse) and by reading the settings and data it declares.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from core import routing
from core.errors import ConfigurationError
from core.events import REGISTRY
from core.servicebus import host_settings, parse_timespan
from core.settings import Settings
from infra import check, generate

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
MODULES = INFRA / "modules"
PLATFORM_SETTINGS = {"WEBSITE_INSTANCE_ID"}  # set by App Service on every instance; an app setting would clash
HOST_ONLY_SETTINGS = {"AzureWebJobsStorage__accountName"}  # read by the Functions host, not by core.settings
LOCAL_ONLY_SETTINGS = {"MLOPS_LOCAL_DEPLOYMENT"}  # the local endpoint's deployment: Azure ML's are the team's own
# set by modules/functionapp.bicep from the Application Insights resource it is given
APP_INSIGHTS_SETTINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}


def load(name: str) -> dict:
    return json.loads((INFRA / name).read_text())


def app_settings() -> dict[str, str]:
    """The `appSettings` object of main.bicep: setting name -> the Bicep expression of its value."""
    bicep = check.parse(MAIN)
    for node in check._walk(bicep.root):
        if node.type == "variable_declaration" and check._text(check._named(node)[0]) == "appSettings":
            obj = check._named(node)[1]
            pairs = [check._named(p) for p in obj.children if p.type == "object_property"]
            return {check._text(k).strip("'"): check._text(v) for k, v in pairs}
    raise AssertionError("main.bicep declares no `appSettings` variable")


def aliases() -> set[str]:
    return {f.alias for f in Settings.model_fields.values() if f.alias}


# --- generated data files -----------------------------------------------------------------------------
def test_committed_data_files_equal_what_the_generator_produces_now():
    for path, text in generate.outputs().items():
        assert path.read_text() == text, f"{path.name} is stale: run `python -m infra.generate`"
    assert generate.main(["--check"]) == 0


def test_every_routing_subscription_is_provisioned_with_its_subject_filter():
    subs = {s["name"]: s for s in load("servicebus.subscriptions.json")["subscriptions"]}
    assert list(subs) == list(routing.SUBSCRIPTIONS)
    for name, subjects in routing.SUBSCRIPTIONS.items():
        assert subs[name]["subjects"] == list(subjects)
        if subjects:
            quoted = ", ".join(f"'{s}'" for s in subjects)
            assert subs[name]["sqlFilter"] == f"sys.Label IN ({quoted})"
        else:
            assert subs[name]["sqlFilter"] == "", "an empty filter must keep the catch-all rule"


def _azure_targets(subject: str) -> set[str]:
    """Which subscriptions a message with this Subject reaches, evaluating the generated SQL filters."""
    out = set()
    for sub in load("servicebus.subscriptions.json")["subscriptions"]:
        match = re.fullmatch(r"sys\.Label IN \((.*)\)", sub["sqlFilter"])
        assert sub["sqlFilter"] == "" or match, f"unexpected filter shape {sub['sqlFilter']!r}"
        if not match or subject in re.findall(r"'([^']*)'", match.group(1)):
            out.add(sub["name"])
    return out


def test_azure_filters_route_every_event_type_like_the_local_bus(tmp_path):
    from core.bus import BusMessage
    from core.localbus import SqliteBus, provision

    bus = SqliteBus(tmp_path / "bus.sqlite")
    provision(bus)
    for number, event_type in enumerate(sorted(REGISTRY)):
        before = {n: bus.counts(f"{routing.TOPIC}/subscriptions/{n}")["active"] for n in routing.SUBSCRIPTIONS}
        bus.send(routing.TOPIC, BusMessage(message_id=f"m{number}", body=b"{}", subject=event_type))
        local = {n for n in routing.SUBSCRIPTIONS
                 if bus.counts(f"{routing.TOPIC}/subscriptions/{n}")["active"] > before[n]}
        assert _azure_targets(event_type) == local, event_type


def test_topic_delivery_settings_follow_host_json():
    topic = load("servicebus.subscriptions.json")["topic"]
    host = host_settings(ROOT / "host.json")
    assert topic["name"] == routing.TOPIC
    assert topic["maxDeliveryCount"] == host["max_delivery_count"] == 5
    assert topic["lockDuration"] == "PT1M" and host["lock_duration"].total_seconds() == 60
    assert topic["duplicateDetectionHistoryTimeWindow"] == "PT10M"
    assert topic["duplicateDetectionSeconds"] == host["duplicate_window"].total_seconds() == 600
    assert topic["duplicateDetectionSeconds"] == Settings().duplicate_window_s


def test_generator_reads_host_json_rather_than_fixed_values(tmp_path):
    doc = json.loads((ROOT / "host.json").read_text())
    doc["extensions"]["serviceBus"].update(maxDeliveryCount=9, lockDuration="00:02:30",
                                           duplicateDetectionHistoryTimeWindow="1.00:00:00")
    (tmp_path / "host.json").write_text(json.dumps(doc))
    topic = generate.subscriptions_document(tmp_path / "host.json")["topic"]
    assert (topic["maxDeliveryCount"], topic["lockDuration"]) == (9, "PT2M30S")
    assert (topic["duplicateDetectionHistoryTimeWindow"], topic["duplicateDetectionSeconds"]) == ("P1D", 86_400)


@pytest.mark.parametrize(("change", "subscriptions", "message"), [
    ({"lockDuration": "00:10:00"}, None, "lockDuration"),
    ({"duplicateDetectionHistoryTimeWindow": "00:00:05"}, None, "duplicateDetectionHistoryTimeWindow"),
    ({}, {"bad/name": ("mlops.x.v1",)}, "bad/name"),
    ({}, {"alerts": ("x') OR (1=1",)}, "alerts"),
])
def test_generator_refuses_what_service_bus_would_reject(tmp_path, change, subscriptions, message):
    doc = json.loads((ROOT / "host.json").read_text())
    doc["extensions"]["serviceBus"].update(change)
    (tmp_path / "host.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        generate.subscriptions_document(tmp_path / "host.json", subscriptions)


def test_iso_durations_round_trip_the_host_json_timespans():
    for text, iso in [("00:01:00", "PT1M"), ("00:10:00", "PT10M"), ("01:00:30", "PT1H30S"), ("2.00:00:00", "P2D"),
                      ("00:00:00.80", "PT0.8S")]:
        assert generate.iso_duration(parse_timespan(text)) == iso


def test_telemetry_tables_have_the_columns_scoring_scripts_send():
    doc = load("loganalytics.tables.json")
    expected = {
        "MLRequests_CL": [("TimeGenerated", "datetime"), ("RequestId", "string"), ("Endpoint", "string"),
                          ("Deployment", "string"), ("ModelVersion", "string"), ("Inputs", "dynamic"),
                          ("Prediction", "dynamic"), ("Score", "real"), ("LatencyMs", "real"),
                          ("StatusCode", "int"), ("Generation", "dynamic")],
        "MLLabels_CL": [("TimeGenerated", "datetime"), ("RequestId", "string"), ("Label", "dynamic")],
    }
    streams = {name.removeprefix("Custom-"): [(c["name"], c["type"]) for c in decl["columns"]]
               for name, decl in doc["streamDeclarations"].items()}
    assert streams == expected
    # The tables API writes the datetime type as dateTime; everything else is the same.
    tables = {t["name"]: [(c["name"], c["type"]) for c in t["columns"]] for t in doc["tables"]}
    assert tables == {name: [(n, "dateTime" if k == "datetime" else k) for n, k in cols]
                      for name, cols in expected.items()}
    assert {t["stream"] for t in doc["tables"]} == set(doc["streamDeclarations"])


def test_every_key_the_bicep_reads_from_a_generated_file_exists():
    bus, tables = load("servicebus.subscriptions.json"), load("loganalytics.tables.json")
    servicebus = (MODULES / "servicebus.bicep").read_text() + MAIN.read_text()
    monitoring = (MODULES / "monitoring.bicep").read_text()
    reads = [(set(re.findall(r"\bbus\.(\w+)", servicebus)), bus),
             (set(re.findall(r"\bbus\.topic\.(\w+)", servicebus)), bus["topic"]),
             (set(re.findall(r"\bsub\.(\w+)", servicebus)), bus["subscriptions"][0]),
             (set(re.findall(r"\btelemetry\.(\w+)", monitoring)), tables),
             (set(re.findall(r"\bt\.(\w+)", monitoring)), tables["tables"][0])]
    for keys, doc in reads:
        assert keys, "the pattern found no reads: the test no longer sees the Bicep"
        assert keys <= set(doc), f"Bicep reads {sorted(keys - set(doc))} that the generated file lacks"


# --- app settings and triggers ------------------------------------------------------------------------
def test_bicep_sets_every_setting_core_settings_reads():
    settings = app_settings()
    missing = aliases() - PLATFORM_SETTINGS - APP_INSIGHTS_SETTINGS - LOCAL_ONLY_SETTINGS - set(settings)
    function_app = (MODULES / "functionapp.bicep").read_text()
    assert all(f"{name}:" in function_app for name in APP_INSIGHTS_SETTINGS)
    assert not missing, f"main.bicep appSettings lacks {sorted(missing)}"
    unknown = set(settings) - aliases() - HOST_ONLY_SETTINGS
    assert not unknown, f"main.bicep sets {sorted(unknown)}, which nothing reads (a typo?)"
    assert not PLATFORM_SETTINGS & set(settings)


def test_azure_adapter_settings_are_wired_to_the_provisioned_resources():
    settings = app_settings()
    wired = {"ServiceBusConnection__fullyQualifiedNamespace": "serviceBus.outputs.fullyQualifiedNamespace",
             "MLOPS_TABLES_ENDPOINT": "storage.outputs.tableEndpoint",
             "MLOPS_BLOB_ENDPOINT": "storage.outputs.blobEndpoint",
             "LOG_ANALYTICS_WORKSPACE_ID": "monitoring.outputs.workspaceCustomerId",
             "AzureWebJobsStorage__accountName": "storage.outputs.accountName",
             "AZUREML_SUBSCRIPTION_ID": "aml[2]", "AZUREML_RESOURCE_GROUP": "aml[4]", "AZUREML_WORKSPACE": "aml[8]"}
    assert {name: settings[name] for name in wired} == wired
    # Embedded files (profile cache, ...) must go somewhere writable: the package mount is read-only.
    assert settings["MLOPS_DATA_DIR"] == "'/tmp/mlops'"


def test_the_azure_ml_workspace_id_splits_into_the_three_settings():
    workspace_id = ("/subscriptions/0000-1111/resourceGroups/ml-rg/providers/"
                    "Microsoft.MachineLearningServices/workspaces/ml-ws")
    parts = workspace_id.split("/")  # what Bicep's split() does with the same separator
    settings = Settings(AZUREML_SUBSCRIPTION_ID=parts[2], AZUREML_RESOURCE_GROUP=parts[4], AZUREML_WORKSPACE=parts[8])
    assert (settings.azureml_subscription_id, settings.azureml_resource_group, settings.azureml_workspace) == (
        "0000-1111", "ml-rg", "ml-ws")


def test_schedule_defaults_are_the_same_in_azure_as_locally():
    text = MAIN.read_text()
    assert f"param checkSchedule string = '{Settings().check_schedule}'" in text
    assert f"param trackSchedule string = '{Settings().track_schedule}'" in text
    assert f"param monitorsDir string = '{Settings.model_fields['monitors_dir'].default.as_posix()}'" in text


def test_every_trigger_binding_resolves_against_the_deployment(app_functions):
    settings = app_settings()
    names = {s["name"] for s in load("servicebus.subscriptions.json")["subscriptions"]}
    seen_bus = 0
    for fn in app_functions.values():
        trigger = fn.get_trigger()
        binding = trigger.get_dict_repr()
        if binding["type"] == "serviceBusTrigger":
            seen_bus += 1
            assert trigger.topic_name == routing.TOPIC
            assert trigger.subscription_name in names
            assert f"{binding['connection']}__fullyQualifiedNamespace" in settings
        for value in binding.values():
            for setting in re.findall(r"%(\w+)%", str(value)):
                assert setting in settings, f"{fn.get_function_name()} binds %{setting}% which is not set"
    assert seen_bus >= 4


# --- security -----------------------------------------------------------------------------------------
SECRET_PATTERNS = [r"AccountKey\s*=", r"SharedAccessKey", r"SharedAccessSignature", r"DefaultEndpointsProtocol\s*=",
                   r"Endpoint\s*=\s*sb://", r"InstrumentationKey\s*=", r"UseDevelopmentStorage",
                   r"\blist(Keys|ConnectionStrings|AccountSas)\s*\(", r"sig=[A-Za-z0-9%]{20,}",
                   r"AzureWebJobsStorage\s*['\"]?\s*:"]


def secret_findings(root: Path) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        if path.name == "test_infra.py":
            continue
        text = path.read_text(errors="replace")
        found += [f"{path.name}: {p}" for p in SECRET_PATTERNS if re.search(p, text)]
    return found


def test_no_key_or_connection_string_anywhere_under_infra():
    assert secret_findings(INFRA) == []


def test_the_secret_scan_finds_planted_secrets(tmp_path):
    (tmp_path / "a.bicep").write_text("var c = 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc'\n")
    (tmp_path / "b.bicep").write_text("var k = sa.listKeys().keys[0].value\n")
    (tmp_path / "c.bicep").write_text("var settings = { AzureWebJobsStorage: 'x' }\n")
    assert len(secret_findings(tmp_path)) == 4


def test_local_auth_is_off_on_every_service():
    text = {p.name: p.read_text() for p in MODULES.glob("*.bicep")}
    assert "allowSharedKeyAccess: false" in text["storage.bicep"]
    assert "disableLocalAuth: true" in text["servicebus.bicep"]
    assert "disableLocalAuth: true" in text["monitoring.bicep"]  # Log Analytics
    assert "DisableLocalAuth: true" in text["monitoring.bicep"]  # Application Insights
    assert "type: 'SystemAssignedIdentity'" in text["functionapp.bicep"]  # deployment package
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'" in text["functionapp.bicep"]
    assert "@secure()\nparam appSettings object" in text["functionapp.bicep"]  # the webhook URL stays out of logs
    assert text["functionapp.bicep"].count("allow: false") == 2  # no FTP / SCM publishing passwords


def test_the_app_identity_gets_each_role_an_adapter_needs():
    roles = (MODULES / "roles.bicep").read_text()
    needed = {"Service Bus Data Sender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
              "Service Bus Data Receiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
              "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
              "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
              "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
              "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
              "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
              "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
              "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb"}
    assert {name for name, guid in needed.items() if guid not in roles} == set()
    for scope in ("scope: storage", "scope: topic", "scope: workspace", "scope: collectionRule", "scope: appInsights"):
        assert scope in roles
    assert "f6c7c914-8db3-469d-8ca1-694a8f32e121" in (MODULES / "azureml-role.bicep").read_text()


# --- Bicep structure ----------------------------------------------------------------------------------
def test_bicep_files_pass_the_structural_check():
    assert check.problems(MAIN) == []


@pytest.mark.parametrize(("file", "old", "new", "expected"), [
    ("main.bicep", "accountName: names.storage", "accountName: name.storage", "'name' is not declared"),
    ("main.bicep", "bus: bus\n", "buss: bus\n", "has no parameter 'buss'"),
    ("main.bicep", "serviceBus.outputs.fullyQualifiedNamespace\n", "serviceBus.outputs.fqdn\n", "no output 'fqdn'"),
    ("main.bicep", "'loganalytics.tables.json'", "'tables.json'", "missing file 'tables.json'"),
    ("modules/roles.bicep", "guid(topic.id,", "guidd(topic.id,", "unknown function 'guidd'"),
    ("modules/servicebus.bicep", "parent: subscriptions[i]", "parent: subscription[i]", "'subscription' is not"),
    ("modules/storage.bicep", "name: 'default'\n}", "name: 'default'\n", "syntax error"),
])
def test_the_structural_check_catches_typical_mistakes(tmp_path, file, old, new, expected):
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    target = copy / file
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new, 1))
    found = check.problems(copy / "main.bicep")
    assert any(expected in line for line in found), found


def test_docs_name_every_setting_the_deployment_sets():
    docs = (ROOT / "docs" / "azure.md").read_text()
    missing = [name for name in app_settings() if name not in docs]
    assert not missing, f"docs/azure.md does not explain {missing}"


# --- alert rules ----------------------------------------------------------------------------------------
def test_alert_rules_watch_dead_letters_and_failed_checks_by_names_the_app_emits(app_functions):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from core.observability import Observability
    from core.routing import SUBSCRIPTIONS

    alerts = (MODULES / "alerts.bicep").read_text()
    assert "module alerts 'modules/alerts.bicep'" in MAIN.read_text()
    assert "metricName: 'DeadletteredMessages'" in alerts and "threshold: 0" in alerts
    query = re.search(r"query: '(.+)'", alerts).group(1)
    # every metric, consumer, outcome and function the query names is one the app really emits
    reader = InMemoryMetricReader()
    observe = Observability(TracerProvider(), MeterProvider(metric_readers=[reader]))
    observe.deadletter("run-check", "ValidationFailed")
    observe.delivery("run-check", "retried")
    emitted = {m.name for r in reader.get_metrics_data().resource_metrics for sc in r.scope_metrics
               for m in sc.metrics}
    assert set(re.findall(r'name == "([\w.]+)"', query)) == {"mlops.deadletters", "mlops.deliveries"} <= emitted
    assert "run-check" in SUBSCRIPTIONS and "run_check" in app_functions
    assert '"retried"' in (ROOT / "functions" / "_bus.py").read_text()
    assert query.count("(") == query.count(")")

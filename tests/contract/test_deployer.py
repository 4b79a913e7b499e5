"""Deployer contract, run against the local deployer and the Azure ML deployer (fake MLClient operations).

Invariants: traffic always sums to 100; a canary takes its share beside the champion; promote leaves
only the candidate; rollback leaves only the champion; repeating an operation changes nothing.
"""
from __future__ import annotations

import json

import pytest

from core.errors import NotFound, PermanentError, ValidationFailed
from core.types import EndpointRef, ModelVersion, TrafficSplit
from retrain.deploy import AzureMLDeployer, LocalDeployer

EP = EndpointRef("flights-ep")
V1, V2, V3 = (ModelVersion("flights", str(v)) for v in (1, 2, 3))


class Poller:
    def __init__(self, value=None):
        self.value = value

    def result(self):
        return self.value


class FakeOnlineEndpoints:
    def __init__(self, deployments):
        self.deployments, self.updates, self.stored = deployments, [], {}

    def get(self, name):
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        if name not in self.stored:
            from azure.core.exceptions import ResourceNotFoundError

            raise ResourceNotFoundError(f"endpoint {name} not found")
        stored = self.stored[name]
        return ManagedOnlineEndpoint(name=stored.name, traffic=dict(stored.traffic or {}), tags=dict(stored.tags or {}))

    def begin_create_or_update(self, endpoint):
        from azure.core.exceptions import HttpResponseError

        traffic = endpoint.traffic or {}
        unknown = [d for d in traffic if d not in self.deployments.stored.get(endpoint.name, {})]
        if unknown or (traffic and sum(traffic.values()) != 100):
            raise HttpResponseError(f"invalid traffic {traffic}")  # as the service answers
        self.updates.append(endpoint)
        self.stored[endpoint.name] = endpoint
        return Poller(endpoint)


ARM = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


class FakeDataOperations:
    """`ml_client.data` at the edge: data versions are immutable, a second create says so, as the service does."""

    def __init__(self):
        self.assets = {}

    def create_or_update(self, data):
        key = (data.name, str(data.version))
        if key in self.assets:
            raise Exception(f"data asset {key} already exists")  # the message the SDK's caller looks for
        self.assets[key] = data
        return data

    def get(self, name, version):
        return self.assets[(name, str(version))]


class SdkScope:
    """The attributes the SDK's OnlineDeploymentOperations reads in the step it runs before its PUT."""

    def __init__(self, data_operations):
        from azure.ai.ml.constants._common import AzureMLResourceType

        self._all_operations = type("Ops", (), {"_all_operations": {AzureMLResourceType.DATA: data_operations}})()
        self._subscription_id, self._resource_group_name, self._workspace_name = "sub", "rg", "ws"


def arm_id(reference, kind):
    if isinstance(reference, str) and reference.startswith("azureml:"):
        name, version = reference.removeprefix("azureml:").split(":")
        return f"{ARM}/{kind}/{name}/versions/{version}"
    return reference


class FakeOnlineDeployments:
    """The service's deployments at the REST level: what `begin_create_or_update` would PUT is the entity through
    the SDK's own pre-PUT step (data collector assets) and `_to_rest_object`; `get` and `list` answer entities
    rebuilt with `_from_rest_object` from what was stored, as the service's GET does."""

    def __init__(self):
        self.stored, self.created, self.deleted, self.bodies = {}, [], [], []
        self.endpoints, self.data = None, FakeDataOperations()

    def begin_create_or_update(self, deployment):
        from azure.ai.ml.operations._online_deployment_operations import OnlineDeploymentOperations

        self.created.append(deployment)
        if deployment.data_collector:
            OnlineDeploymentOperations._register_collection_data_assets(SdkScope(self.data), deployment)
        deployment.model = arm_id(deployment.model, "models")  # upload_dependencies' part, offline
        deployment.environment = arm_id(deployment.environment, "environments")
        body = deployment._to_rest_object(location="westeurope").as_dict()
        self.bodies.append(body)
        self.store(deployment.endpoint_name, deployment.name, body)
        return Poller(self.get(deployment.name, deployment.endpoint_name))

    def store(self, endpoint_name, name, body):
        resource = json.loads(json.dumps(body))
        resource.update(id=f"{ARM}/onlineEndpoints/{endpoint_name}/deployments/{name}", name=name)
        resource["properties"]["provisioningState"] = "Succeeded"
        resource["properties"].setdefault("scaleSettings", {"scaleType": "Default"})  # the service's default
        self.stored.setdefault(endpoint_name, {})[name] = resource

    def get(self, name, endpoint_name):
        from azure.ai.ml._restclient.arm_ml_service.models import OnlineDeployment as RestOnlineDeployment
        from azure.ai.ml.entities import OnlineDeployment
        from azure.core.exceptions import ResourceNotFoundError

        if name not in self.stored.get(endpoint_name, {}):
            raise ResourceNotFoundError(f"deployment {name} not found")
        return OnlineDeployment._from_rest_object(RestOnlineDeployment(self.stored[endpoint_name][name]))

    def list(self, endpoint_name):
        return [self.get(name, endpoint_name) for name in self.stored.get(endpoint_name, {})]

    def begin_delete(self, name, endpoint_name):
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        if name not in self.stored.get(endpoint_name, {}):
            raise ResourceNotFoundError(f"deployment {name} not found")
        if (self.endpoints.stored[endpoint_name].traffic or {}).get(name, 0):
            raise HttpResponseError(f"deployment {name} still has traffic")
        self.deleted.append(name)
        del self.stored[endpoint_name][name]
        return Poller()


class FakeMLClient:
    def __init__(self):
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        self.online_deployments = FakeOnlineDeployments()
        self.online_endpoints = FakeOnlineEndpoints(self.online_deployments)
        self.online_deployments.endpoints = self.online_endpoints
        self.online_endpoints.stored[EP.name] = ManagedOnlineEndpoint(name=EP.name, auth_mode="key")


@pytest.fixture(params=["local", "azureml"])
def deployer(request, tmp_path):
    if request.param == "local":
        return LocalDeployer(tmp_path / "endpoints.json")
    return AzureMLDeployer(FakeMLClient(), instance_type="Standard_DS2_v2")


def test_first_model_takes_all_traffic_then_a_canary_takes_its_share(deployer):
    assert deployer.current(EP) == TrafficSplit({})
    first = deployer.start_canary(EP, V1, 10)
    assert first == TrafficSplit({"blue": 100})
    split = deployer.start_canary(EP, V2, 10)
    assert split == TrafficSplit({"blue": 90, "green": 10})
    assert deployer.start_canary(EP, V2, 10) == split  # a repeated call changes nothing
    assert deployer.current(EP) == split
    assert deployer.models(EP) == {"blue": V1, "green": V2}


def test_promote_leaves_only_the_candidate(deployer):
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 20)
    assert deployer.promote(EP, V2) == TrafficSplit({"green": 100})
    assert deployer.promote(EP, V2) == TrafficSplit({"green": 100})
    assert deployer.models(EP) == {"green": V2}
    assert deployer.start_canary(EP, V3, 10) == TrafficSplit({"green": 90, "blue": 10})  # names alternate


def test_rollback_returns_traffic_to_the_champion_and_removes_the_canary(deployer):
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 10)
    assert deployer.rollback(EP) == TrafficSplit({"blue": 100})
    assert deployer.rollback(EP) == TrafficSplit({"blue": 100})  # nothing left to roll back
    assert deployer.models(EP) == {"blue": V1}


def test_a_second_canary_beside_a_running_one_is_refused(deployer):
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 10)
    with pytest.raises(PermanentError, match="canary"):
        deployer.start_canary(EP, V3, 10)
    with pytest.raises(NotFound):
        deployer.promote(EP, V3)
    with pytest.raises(ValidationFailed, match="percent"):
        deployer.start_canary(EP, V3, 100)


def test_local_canary_clones_the_champion_deployment_and_changes_only_the_model(tmp_path):
    from retrain.serving import DeploymentSpec

    template = DeploymentSpec(model="", code="/srv/code", scoring_script="score.py", environment_variables={"A": "1"},
                              data_collector={"collections": {"model_inputs": {"enabled": "true"}}},
                              request_timeout_ms=3000)
    deployer = LocalDeployer(tmp_path / "endpoints.json", template=template)
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 10)
    specs = deployer.deployments(EP)
    assert specs["blue"] == template.with_model("flights:1")
    assert specs["green"] == specs["blue"].with_model("flights:2")
    deployer.promote(EP, V2)
    deployer.start_canary(EP, V3, 10)
    assert deployer.deployments(EP)["blue"] == template.with_model("flights:3")


def test_local_deployer_finishes_an_operation_interrupted_by_a_crash(tmp_path):
    path = tmp_path / "endpoints.json"
    deployer = LocalDeployer(path)
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 10)
    # The process died after promote's first step (traffic moved) but before the old deployment was removed.
    state = json.loads(path.read_text())
    ep = state["endpoints"][EP.name]
    ep["traffic"] = {"green": 100, "blue": 0}
    ep["pending"] = {"steps": [["traffic", {"green": 100, "blue": 0}], ["remove", "blue"], ["mark", None]],
                     "next": 1}
    path.write_text(json.dumps(state))
    assert LocalDeployer(path).current(EP) == TrafficSplit({"green": 100})
    assert deployer.models(EP) == {"green": V2}
    assert json.loads(path.read_text())["endpoints"][EP.name]["pending"] is None


def test_azureml_deployer_sends_real_entities_and_removes_the_old_deployment():
    from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint

    client = FakeMLClient()
    deployer = AzureMLDeployer(client, instance_type="Standard_DS2_v2", instance_count=2)
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 25)
    created = client.online_deployments.created
    assert all(isinstance(d, ManagedOnlineDeployment) for d in created)
    assert [(d.name, d.model, d.instance_type, d.instance_count) for d in created] == [  # ids as the SDK sends
        ("blue", f"{ARM}/models/flights/versions/1", "Standard_DS2_v2", 2),
        ("green", f"{ARM}/models/flights/versions/2", "Standard_DS2_v2", 2)]
    update = client.online_endpoints.updates[-1]
    assert isinstance(update, ManagedOnlineEndpoint) and update.traffic == {"blue": 75, "green": 25}
    assert update.tags["mlops-canary"] == "green"
    deployer.promote(EP, V2)
    assert client.online_deployments.deleted == ["blue"]
    assert client.online_endpoints.stored[EP.name].traffic == {"green": 100}
    assert "mlops-canary" not in client.online_endpoints.stored[EP.name].tags


CHAMPION = {  # GET .../onlineEndpoints/flights-ep/deployments/blue, as a team deployed it (recorded shape)
    "id": f"{ARM}/onlineEndpoints/flights-ep/deployments/blue", "name": "blue", "location": "westeurope",
    "tags": {"team": "delays", "cost-center": "42"}, "sku": {"name": "Default", "capacity": 3},
    "systemData": {"createdBy": "someone@example.com", "createdAt": "2024-05-01T10:00:00Z"},
    "properties": {
        "endpointComputeType": "Managed", "provisioningState": "Succeeded", "instanceType": "Standard_F4s_v2",
        "model": f"{ARM}/models/flights/versions/1", "environmentId": f"{ARM}/environments/flights-env/versions/7",
        "codeConfiguration": {"codeId": f"{ARM}/codes/0f3c/versions/1", "scoringScript": "onlinescoring/score.py"},
        "environmentVariables": {"MLOPS_TELEMETRY_DCE": "https://dce.example.ingest.monitor.azure.com",
                                 "MLOPS_TELEMETRY_DCR_ID": "dcr-0123", "WORKER_COUNT": "2"},
        "appInsightsEnabled": True, "egressPublicNetworkAccess": "Disabled",
        "requestSettings": {"requestTimeout": "PT3S", "maxConcurrentRequestsPerInstance": 4,
                            "maxQueueWait": "PT0.5S"},
        "livenessProbe": {"initialDelay": "PT30S", "period": "PT10S", "timeout": "PT2S", "failureThreshold": 30,
                          "successThreshold": 1},
        "readinessProbe": {"initialDelay": "PT10S", "period": "PT10S", "timeout": "PT2S", "failureThreshold": 3,
                           "successThreshold": 1},
        "scaleSettings": {"scaleType": "Default"},
        "dataCollector": {"collections": {
            "model_inputs": {"dataCollectionMode": "Enabled", "samplingRate": 0.5,
                             "dataId": f"{ARM}/data/flights-ep-blue-model_inputs/versions/1"},
            "model_outputs": {"dataCollectionMode": "Enabled", "samplingRate": 0.5,
                              "dataId": f"{ARM}/data/delays-outputs/versions/2"}}},
        "properties": {"owner": "delays-team"}}}


def differences(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in differences(a.get(key), b.get(key), f"{path}.{key}")]
    return [] if a == b else [path.lstrip(".")]


def test_the_canary_is_the_champion_deployment_with_only_the_model_changed():
    """The REST body azure-ai-ml would PUT for the canary equals the champion's, but for the model and what
    names the deployment (its own data collector asset); everything the team configured is carried over."""
    from azure.ai.ml._restclient.arm_ml_service.models import OnlineDeployment as RestOnlineDeployment
    from azure.ai.ml.entities import OnlineDeployment

    client = FakeMLClient()
    client.online_deployments.stored[EP.name] = {"blue": json.loads(json.dumps(CHAMPION))}
    client.online_endpoints.stored[EP.name].traffic = {"blue": 100}
    deployer = AzureMLDeployer(client, instance_type="Standard_DS2_v2", instance_count=1)
    deployer.start_canary(EP, V2, 20)
    champion = OnlineDeployment._from_rest_object(RestOnlineDeployment(json.loads(json.dumps(CHAMPION))))
    champion_body = champion._to_rest_object(location="westeurope").as_dict()
    canary_body = client.online_deployments.bodies[-1]
    assert differences(champion_body, canary_body) == [
        "properties.dataCollector.collections.model_inputs.dataId", "properties.model"]
    assert canary_body["properties"]["model"] == f"{ARM}/models/flights/versions/2"
    inputs = canary_body["properties"]["dataCollector"]["collections"]["model_inputs"]
    assert inputs["dataId"] == f"{ARM}/data/flights-ep-green-model_inputs/versions/1"  # the canary's own asset
    assert client.online_deployments.data.assets[("flights-ep-green-model_inputs", "1")].path.endswith(
        "modelDataCollector/flights-ep/green/model_inputs")
    assert canary_body["properties"]["instanceType"] == "Standard_F4s_v2" and canary_body["sku"]["capacity"] == 3
    assert client.online_deployments.created[-1].name == "green"
    assert client.online_endpoints.stored[EP.name].traffic == {"blue": 80, "green": 20}
    assert champion.name == "blue" and champion.model == f"{ARM}/models/flights/versions/1"  # not touched


def test_azureml_rollback_interrupted_after_the_traffic_change_is_finished_by_a_retry():
    client = FakeMLClient()
    deployer = AzureMLDeployer(client)
    deployer.start_canary(EP, V1, 10)
    deployer.start_canary(EP, V2, 10)
    real_delete = client.online_deployments.begin_delete

    def crash(name, endpoint_name):
        raise ConnectionError("host died")

    client.online_deployments.begin_delete = crash
    with pytest.raises(ConnectionError):
        deployer.rollback(EP)
    assert client.online_endpoints.stored[EP.name].traffic == {"blue": 100, "green": 0}
    client.online_deployments.begin_delete = real_delete
    assert deployer.rollback(EP) == TrafficSplit({"blue": 100})
    assert client.online_deployments.deleted == ["green"]


@pytest.mark.parametrize("kind", ["local", "azureml"])
def test_any_sequence_of_operations_keeps_traffic_whole(kind, tmp_path_factory):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ops = st.lists(st.tuples(st.sampled_from(["canary", "promote", "rollback"]), st.integers(1, 99),
                             st.integers(1, 4)), max_size=12)

    @settings(max_examples=40, deadline=None)
    @given(ops)
    def run(sequence):
        deployer = (LocalDeployer(tmp_path_factory.mktemp("d") / "e.json") if kind == "local"
                    else AzureMLDeployer(FakeMLClient()))
        for op, percent, version in sequence:
            candidate = ModelVersion("flights", str(version))
            try:
                if op == "canary":
                    deployer.start_canary(EP, candidate, percent)
                elif op == "promote":
                    deployer.promote(EP, candidate)
                else:
                    deployer.rollback(EP)
            except (PermanentError, NotFound):
                pass  # refused operations are part of the sequence; the invariant must still hold
            shares = deployer.current(EP).shares  # TrafficSplit itself refuses anything not summing to 100
            assert set(shares) == set(deployer.models(EP)) and len(shares) <= 2
            assert not shares or sum(shares.values()) == 100

    run()

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


class FakeOnlineDeployments:
    def __init__(self):
        self.stored, self.created, self.deleted = {}, [], []
        self.endpoints = None

    def begin_create_or_update(self, deployment):
        self.created.append(deployment)
        self.stored.setdefault(deployment.endpoint_name, {})[deployment.name] = deployment
        return Poller(deployment)

    def list(self, endpoint_name):
        return list(self.stored.get(endpoint_name, {}).values())

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
    assert [(d.name, d.model, d.instance_type, d.instance_count) for d in created] == [
        ("blue", "azureml:flights:1", "Standard_DS2_v2", 2), ("green", "azureml:flights:2", "Standard_DS2_v2", 2)]
    update = client.online_endpoints.updates[-1]
    assert isinstance(update, ManagedOnlineEndpoint) and update.traffic == {"blue": 75, "green": 25}
    assert update.tags["mlops-canary"] == "green"
    deployer.promote(EP, V2)
    assert client.online_deployments.deleted == ["blue"]
    assert client.online_endpoints.stored[EP.name].traffic == {"green": 100}
    assert "mlops-canary" not in client.online_endpoints.stored[EP.name].tags


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

"""Deployer for an Azure ML managed online endpoint: blue/green deployments and endpoint traffic.

A canary is the champion's deployment cloned, with only the model changed: instance type and count, environment,
code configuration and scoring script, data collector, probes, environment variables, request and scale settings
and tags are the team's, as they deployed them (an MLflow model deployed without code stays no-code). Only an
endpoint with no deployment yet gets one built from this deployer's settings.

The canary's deployment name is kept in the endpoint's tags until its operation is complete, so an
interrupted promote or rollback, repeated, finds where it was and finishes (every step is idempotent).
"""
from __future__ import annotations

import contextlib
import copy
import re
from typing import Any

from core.azure_errors import translated
from core.errors import NotFound, PermanentError
from core.types import EndpointRef, ModelVersion, TrafficSplit
from retrain.deploy import canary_name, champion_of, check_percent, parse_model

CANARY_TAG = "mlops-canary"


class AzureMLDeployer:
    backend = "azureml"

    def __init__(self, ml_client: Any, *, instance_type: str = "Standard_DS3_v2", instance_count: int = 1,
                 environment: Any = None, code_path: str | None = None, scoring_script: str = "score.py",
                 environment_variables: dict[str, str] | None = None) -> None:
        self.ml_client = ml_client
        self.instance_type, self.instance_count = instance_type, instance_count
        self.environment, self.code_path, self.scoring_script = environment, code_path, scoring_script
        self.environment_variables = environment_variables or {}

    @translated("Azure ML")
    def current(self, endpoint: EndpointRef) -> TrafficSplit:
        return TrafficSplit(self._traffic(self._endpoint(endpoint)))

    @translated("Azure ML")
    def models(self, endpoint: EndpointRef) -> dict[str, ModelVersion]:
        deployments = self.ml_client.online_deployments.list(endpoint_name=endpoint.name)
        return {d.name: parse_model(str(d.model)) for d in deployments if d.model}

    @translated("Azure ML")
    def start_canary(self, endpoint: EndpointRef, candidate: ModelVersion, percent: int) -> TrafficSplit:
        check_percent(percent)
        ep = self._endpoint(endpoint)
        serving = self.models(endpoint)
        traffic = self._traffic(ep)
        existing = [name for name, model in serving.items() if model == candidate]
        tagged = (ep.tags or {}).get(CANARY_TAG)
        if tagged and tagged in serving and serving[tagged] != candidate:
            raise PermanentError(f"{endpoint.name} already has canary {tagged} ({serving[tagged]})")
        champion = champion_of({k: v for k, v in traffic.items() if k in serving}, tagged)
        name = existing[0] if existing else canary_name([n for n in serving if traffic.get(n, 0) > 0])
        if not existing:
            self._create_deployment(endpoint, name, candidate, champion)
        if champion is None or champion == name:
            ep.traffic = {name: 100}
        else:
            ep.traffic = {champion: 100 - percent, name: percent}
            ep.tags = {**(ep.tags or {}), CANARY_TAG: name}
        self.ml_client.online_endpoints.begin_create_or_update(ep).result()
        return TrafficSplit(dict(ep.traffic))

    @translated("Azure ML")
    def promote(self, endpoint: EndpointRef, candidate: ModelVersion) -> TrafficSplit:
        ep = self._endpoint(endpoint)
        serving = self.models(endpoint)
        target = [name for name, model in serving.items() if model == candidate]
        if not target:
            raise NotFound(f"{candidate} is not deployed on {endpoint.name}")
        others = [n for n in serving if n != target[0]]
        ep.traffic = {target[0]: 100, **{o: 0 for o in others}}
        self.ml_client.online_endpoints.begin_create_or_update(ep).result()
        for other in others:
            self._delete(endpoint, other)
        return self._clear_tag(endpoint, {target[0]: 100})

    @translated("Azure ML")
    def rollback(self, endpoint: EndpointRef) -> TrafficSplit:
        ep = self._endpoint(endpoint)
        canary = (ep.tags or {}).get(CANARY_TAG)
        traffic = self._traffic(ep)
        champion = champion_of(traffic, canary)
        if not canary or champion is None:
            return TrafficSplit(traffic)
        ep.traffic = {champion: 100, canary: 0}
        self.ml_client.online_endpoints.begin_create_or_update(ep).result()
        self._delete(endpoint, canary)
        return self._clear_tag(endpoint, {champion: 100})

    def _create_deployment(self, endpoint: EndpointRef, name: str, candidate: ModelVersion,
                           champion: str | None) -> None:
        model = f"azureml:{candidate.name}:{candidate.version}"
        if champion is not None and champion != name:
            source = self.ml_client.online_deployments.get(name=champion, endpoint_name=endpoint.name)
            deployment = clone_deployment(source, name=name, model=model)
        else:
            deployment = self._first_deployment(endpoint, name, model)
        self.ml_client.online_deployments.begin_create_or_update(deployment).result()

    def _first_deployment(self, endpoint: EndpointRef, name: str, model: str) -> Any:
        """An empty endpoint's first deployment: no code configuration means MLflow no-code deployment."""
        from azure.ai.ml.entities import CodeConfiguration, ManagedOnlineDeployment

        code = (CodeConfiguration(code=self.code_path, scoring_script=self.scoring_script)
                if self.code_path else None)
        return ManagedOnlineDeployment(
            name=name, endpoint_name=endpoint.name, model=model, instance_type=self.instance_type,
            instance_count=self.instance_count, environment=self.environment, code_configuration=code,
            environment_variables=self.environment_variables)

    def _delete(self, endpoint: EndpointRef, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        # Already gone means an earlier, interrupted attempt deleted it.
        with contextlib.suppress(ResourceNotFoundError):
            self.ml_client.online_deployments.begin_delete(name=name, endpoint_name=endpoint.name).result()

    def _clear_tag(self, endpoint: EndpointRef, traffic: dict[str, int]) -> TrafficSplit:
        ep = self._endpoint(endpoint)
        ep.tags = {k: v for k, v in (ep.tags or {}).items() if k != CANARY_TAG}
        ep.traffic = traffic
        self.ml_client.online_endpoints.begin_create_or_update(ep).result()
        return TrafficSplit(traffic)

    def _endpoint(self, endpoint: EndpointRef) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.ml_client.online_endpoints.get(name=endpoint.name)
        except ResourceNotFoundError as exc:
            raise NotFound(f"no online endpoint {endpoint.name}") from exc

    @staticmethod
    def _traffic(ep: Any) -> dict[str, int]:
        return {k: int(v) for k, v in (ep.traffic or {}).items() if int(v) > 0}


_DATA_ID = re.compile(r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")


def clone_deployment(champion: Any, *, name: str, model: str) -> Any:
    """The champion's deployment entity (as `online_deployments.get` returns it) under a new name and model.

    Everything else is copied as is, except what names the champion itself: data collector collections bound
    to the champion's own data asset (`<endpoint>-<champion>-<collection>`,
    which Azure ML creates per deployment): unbound, they get the canary's own asset, as for a new deployment.
    A collection bound to a data asset the team named keeps it (as a name and version, the form
    `begin_create_or_update` registers)."""
    from azure.ai.ml.entities._deployment.data_asset import DataAsset

    clone = copy.deepcopy(champion)
    clone.name, clone.model = name, model  # the service's id and state are read-only: never sent
    collections = clone.data_collector.collections if clone.data_collector else {}
    for collection_name, collection in collections.items():
        match = _DATA_ID.search(collection.data) if isinstance(collection.data, str) else None
        if match is None:
            continue
        if match["name"] == f"{champion.endpoint_name}-{champion.name}-{collection_name}":
            collection.data = None
        else:
            collection.data = DataAsset(name=match["name"], version=match["version"])
    return clone

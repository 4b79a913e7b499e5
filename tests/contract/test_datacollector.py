"""Azure ML's data collector files as a telemetry source: the real azure-storage-blob SDK against Azurite, and a
local folder with the same layout; then a whole check reading them through the monitor spec's `telemetry`."""
from __future__ import annotations

import io
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import TelemetryUnavailable
from core.types import EndpointRef, Window
from monitors.telemetry.blobfiles import BlobFiles, FolderFiles
from monitors.telemetry.datacollector import DataCollectorTelemetrySource, Layout
from monitors.telemetry.labels import LabelTable
from tests.azurite import unique_name
from tests.collector_files import Writer, blob_name, line
from tests.e2e.world import flights

ROOT = Path(__file__).parents[2]
DAY = datetime(2013, 4, 1, tzinfo=timezone.utc)
WINDOW = Window(DAY, DAY + timedelta(days=1))
KINDS = {"carrier": "categorical", "origin": "categorical", "dest": "categorical", "sched_hour": "numeric",
         "distance": "numeric", "temp": "numeric", "dewp": "numeric", "humid": "numeric", "wind_speed": "numeric",
         "precip": "numeric", "pressure": "numeric", "visib": "numeric"}


def collector_day(writer: Writer, rng: np.random.Generator, day: datetime, *, per_hour: int = 10,
                  temp_shift: float = 0.0, deployment: str = "blue") -> list[str]:
    """A day of single-row requests, one inputs and one outputs line each; returns the correlation ids."""
    ids = []
    for hour in range(24):
        at = day + timedelta(hours=hour)
        inputs, outputs = [], []
        frame = flights(rng, per_hour, temp_shift)
        for i in range(per_hour):
            cid = f"{deployment}-{day:%m%d}-{hour:02d}-{i:02d}"
            moment = at + timedelta(seconds=3600 * i // per_hour)
            score = float(rng.random())
            inputs.append(line("model_inputs", frame.iloc[[i]], cid, moment, deployment=deployment))
            outputs.append(line("model_outputs", pd.DataFrame({"score": [score], "prediction": [int(score > .5)]}),
                                cid, moment, deployment=deployment))
            ids.append(cid)
        writer.add(blob_name("model_inputs", at, deployment=deployment), inputs)
        writer.add(blob_name("model_outputs", at, deployment=deployment), outputs)
    return ids


def labels_parquet(ids: list[str], rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    pd.DataFrame({"correlationid": ids, "label": rng.integers(0, 2, len(ids))}).to_parquet(out, index=False)
    return out.getvalue()


@pytest.fixture()
def files_of(request, tmp_path):
    """A function (writer -> Files) for each place collector files lie: Azurite through the SDK, a local folder."""
    def make(writer: Writer):
        if request.param == "folder":
            writer.to_folder(tmp_path / "collected")
            return FolderFiles(tmp_path / "collected")
        az = request.getfixturevalue("azurite")
        from azure.storage.blob import ContainerClient

        name = unique_name("mdc")
        container = ContainerClient(az.blob_endpoint, name, credential=az.credential)
        container.create_container()
        writer.to_container(container)
        return BlobFiles(az.blob_endpoint, name, credential=az.credential)
    return make


both = pytest.mark.parametrize("files_of", ["blob", "folder"], indirect=True)


@both
def test_a_day_joins_inputs_outputs_and_labels_by_correlation_id(files_of):
    rng = np.random.default_rng(3)
    writer = Writer()
    ids = collector_day(writer, rng, DAY)
    collector_day(writer, rng, DAY - timedelta(days=1))  # the day before and after: other folders, not read
    collector_day(writer, rng, DAY + timedelta(days=1))
    writer.put("labels/flights.parquet", labels_parquet(ids, rng))
    # an answer collected a second after midnight lies in the next day's 00 folder and still joins
    late = DAY + timedelta(days=1, seconds=1)
    writer.add(blob_name("model_inputs", DAY + timedelta(hours=23)),
               [line("model_inputs", flights(rng, 1), "late-one", late - timedelta(seconds=2))])
    writer.add(blob_name("model_outputs", late, instance="instance-1"),
               [line("model_outputs", pd.DataFrame({"score": [0.9], "prediction": [1]}), "late-one", late)])
    source = DataCollectorTelemetrySource(files_of(writer), labels=LabelTable("labels/"), features=KINDS)

    batch = source.fetch(EndpointRef("flights"), WINDOW)

    frame = batch.frame.set_index("request_id")
    assert len(frame) == 241 and batch.rejected == {}
    assert set(frame.index) == {*ids, "late-one"}
    assert frame["time"].min() >= pd.Timestamp(DAY) and frame["time"].max() < pd.Timestamp(DAY + timedelta(days=1))
    assert frame.loc["late-one", "score"] == 0.9 and frame.loc["late-one", "prediction"] == 1
    assert frame.loc[ids, "label"].notna().all() and np.isnan(frame.loc["late-one", "label"])
    assert set(frame["deployment"]) == {"blue"} and set(frame["model_version"]) == {"1"}
    assert frame["temp"].dtype == np.float64 and frame["carrier"].dtype == object
    assert ((frame["score"] > 0.5) == (frame["prediction"] == 1)).all()


@both
def test_batched_lines_custom_ids_and_bad_rows(files_of):
    rng = np.random.default_rng(4)
    writer = Writer()
    at = DAY + timedelta(hours=3)
    batched = flights(rng, 3)
    batched["flight_id"] = ["UA1", "UA2", None]  # the team logs its own id (the third row forgot it)
    bad = flights(rng, 1)
    bad["temp"] = "hot"  # a type error in one row: counted, not raised
    writer.add(blob_name("model_inputs", at), [
        line("model_inputs", batched, "batch-1", at),
        line("model_inputs", bad, "bad-1", at),
        "this is not json",
        '{"time": "2013-04-01T03:00:00Z", "data": "https://example.invalid/raw-payload", "correlationid": "x"}',
    ])
    writer.add(blob_name("model_outputs", at), [
        line("model_outputs", pd.DataFrame({"score": [0.1, 0.2, 0.3], "prediction": [0, 0, 0]}), "batch-1", at)])
    source = DataCollectorTelemetrySource(files_of(writer), Layout(id_column="flight_id"), features=KINDS)

    batch = source.fetch(EndpointRef("flights", "blue"), WINDOW)

    assert list(batch.frame["request_id"]) == ["UA1", "UA2", "batch-1/2"]
    assert list(batch.frame["score"]) == [0.1, 0.2, 0.3]  # outputs of a batched line match row by row
    assert batch.rejected == {"bad_collector_line": 2, "wrong_type": 1, "outputs_unmatched": 1}
    assert batch.rejected_examples[0]["request_id"] == "bad-1"


@both
def test_every_deployment_when_the_monitor_watches_the_whole_endpoint(files_of):
    rng = np.random.default_rng(5)
    writer = Writer()
    blue = collector_day(writer, rng, DAY, per_hour=2)
    green = collector_day(writer, rng, DAY, per_hour=1, deployment="green")
    files = files_of(writer)
    batch = DataCollectorTelemetrySource(files, features=KINDS).fetch(EndpointRef("flights"), WINDOW)
    assert batch.rows == len(blue) + len(green) == 72
    assert batch.frame.groupby("deployment").size().to_dict() == {"blue": 48, "green": 24}
    only = DataCollectorTelemetrySource(files, features=KINDS).fetch(EndpointRef("flights", "green"), WINDOW)
    assert only.rows == 24
    empty = DataCollectorTelemetrySource(files).fetch(EndpointRef("flights"), Window(DAY - timedelta(days=9),
                                                                                    DAY - timedelta(days=8)))
    assert empty.rows == 0


def test_storage_down_is_retryable():
    from azure.storage.blob import ContainerClient

    from tests.azurite import _free_ports

    port = _free_ports(1)[0]  # nothing listens there
    files = BlobFiles("http://127.0.0.1", "mdc", client_factory=lambda: ContainerClient(
        f"http://127.0.0.1:{port}/devstoreaccount1", "mdc", retry_total=0))
    with pytest.raises(TelemetryUnavailable):
        DataCollectorTelemetrySource(files).fetch(EndpointRef("flights"), WINDOW)


@both
def test_a_check_reads_collector_files_named_by_the_spec(files_of, tmp_path, request):
    """The whole check handler: spec `telemetry: azureml_data_collector` -> router -> files -> findings."""
    import yaml

    from core.clock import ManualClock
    from core.localbus import SqliteBus, SqliteBusPublisher, provision
    from core.reports import FileReportStore
    from core.state_sqlite import SqliteStateStore
    from monitors.check import CheckDeps, run_check
    from monitors.drift.profile import ProfileCache
    from monitors.schedule import check_requested
    from monitors.spec import SpecRepository
    from monitors.telemetry.router import SpecTelemetrySource

    rng = np.random.default_rng(6)
    writer = Writer()
    today = collector_day(writer, rng, DAY, per_hour=40, temp_shift=30.0)  # a hot day against a cold reference
    yesterday = collector_day(writer, rng, DAY - timedelta(days=1), per_hour=40)
    writer.put("labels/2013-03-31.parquet", labels_parquet(yesterday, rng))
    writer.put("labels/2013-04-01.parquet", labels_parquet(today, rng))
    files = files_of(writer)

    monitors = tmp_path / "monitors"
    (monitors / "reference").mkdir(parents=True)
    spec = yaml.safe_load((ROOT / "monitors/examples/flights-delay.yaml").read_text())
    if isinstance(files, FolderFiles):
        spec["telemetry"] = {"kind": "azureml_data_collector", "folder": str(files.root),
                             "labels": {"path": "labels"}}
        credential = None
    else:
        spec["telemetry"] = {"kind": "azureml_data_collector", "account_url": files.account_url,
                             "container": files.container, "labels": {"path": "labels/"}}
        credential = request.getfixturevalue("azurite").credential
    (monitors / "flights-delay.yaml").write_text(yaml.safe_dump(spec))
    ref = flights(rng, 3000)
    ref["label"], ref["score"] = rng.integers(0, 2, 3000), rng.random(3000)
    ref.to_parquet(monitors / "reference/flights-delay.parquet")

    clock = ManualClock(DAY + timedelta(days=1, hours=2))
    bus = SqliteBus(tmp_path / "bus.sqlite", clock=clock)
    provision(bus)
    specs = SpecRepository(monitors)
    store = SqliteStateStore(tmp_path / "state.sqlite")
    deps = CheckDeps(store=store, publisher=SqliteBusPublisher(bus),
                     telemetry=SpecTelemetrySource(specs, default=None, blob_credential=credential), specs=specs,
                     profiles=ProfileCache(tmp_path / "profiles"), reports=FileReportStore(tmp_path / "reports"),
                     clock=clock, base_dir=monitors)
    record = run_check(check_requested("flights-delay", WINDOW, clock.now(), reason="test"), deps)

    assert record["rows"] == 960 and record["rejected"] == {}
    assert "temp" in [f["name"] for f in record["summary"]["features"] if f["drifted"]]
    auc = next(f for f in record["findings"] if f["signal"] == "performance")
    # labels of the day before, joined on the correlation id
    assert auc["details"]["labels"] == 960 and auc["statistic"] is not None
    health = [f for f in record["findings"] if f["signal"] == "health"]
    assert health and all(f["details"].get("insufficient") for f in health if f["name"] == "p95_latency_ms")
    shutil.rmtree(tmp_path / "reports")


@pytest.mark.parametrize("files_of", ["folder"], indirect=True)
def test_a_generative_deployment_collects_its_prompt_with_the_inputs_and_response_with_the_outputs(files_of):
    writer = Writer()
    at = DAY + timedelta(hours=9)
    asked = [("c1", "Where is my parcel?", "It left the depot today.", 14), ("c2", "Cancel my order", "Done.", 3)]
    writer.add(blob_name("model_inputs", at), [line("model_inputs", pd.DataFrame({"prompt": [q], "channel": ["app"]}),
                                                    cid, at) for cid, q, _, _ in asked])
    writer.add(blob_name("model_outputs", at), [line("model_outputs", pd.DataFrame(
        {"response": [a], "tokens_out": [n], "finish_reason": ["stop"]}), cid, at) for cid, _, a, n in asked])
    source = DataCollectorTelemetrySource(files_of(writer), features={
        "prompt": "text", "response": "text", "tokens_out": "numeric", "channel": "categorical"})
    batch = source.fetch(EndpointRef("flights"), WINDOW)
    frame = batch.frame.set_index("request_id")
    assert batch.rejected == {}
    assert frame.loc["c1", "prompt"] == "Where is my parcel?" and frame.loc["c2", "response"] == "Done."
    assert frame.loc["c1", "tokens_out"] == 14 and frame.loc["c2", "finish_reason"] == "stop"
    assert list(frame["channel"]) == ["app", "app"]


def test_what_the_local_agent_files_from_collector_posts_reads_back(tmp_path):
    """The serving side's agent (retrain.datacollector) receives what azureml-ai-monitoring's Collector POSTs
    (its MdcSender's ce-* headers, the DataFrame as JSON records) and files it; this source reads that folder."""
    import urllib.request

    from core.clock import ManualClock
    from retrain.datacollector import LocalDataCollector

    clock = ManualClock(DAY + timedelta(hours=5, minutes=7))
    agent = LocalDataCollector(tmp_path / "data", "flights", "blue", clock).start()
    rng = np.random.default_rng(8)
    try:
        for i in range(3):
            cid = f"req-{i}"
            for collection, frame in (("model_inputs", flights(rng, 1)),
                                      ("model_outputs", pd.DataFrame({"score": [0.25 * i], "prediction": [0]}))):
                headers = {"Content-Type": "application/json", "trace-id": f"{collection}-{i}",
                           "ce-time": str(int(clock.now().timestamp())), "ce-type": f"azureml.inference.{collection}",
                           "ce-collect-data-type": "pandas.core.frame.DataFrame",
                           "ce-agent": "azureml-ai-monitoring/1.0.0", "ce-x-request-id": cid,
                           "ce-model-version": "3"}
                request = urllib.request.Request(f"http://127.0.0.1:{agent.port}/modeldata/log", method="POST",
                                                 data=frame.to_json(orient="records").encode(), headers=headers)
                with urllib.request.urlopen(request, timeout=10) as res:
                    assert res.status == 200
    finally:
        agent.stop()
    batch = DataCollectorTelemetrySource(FolderFiles(tmp_path / "data"), features=KINDS).fetch(
        EndpointRef("flights"), WINDOW)
    assert list(batch.frame["request_id"]) == ["req-0", "req-1", "req-2"] and batch.rejected == {}
    assert list(batch.frame["score"]) == [0.0, 0.25, 0.5] and set(batch.frame["model_version"]) == {"3"}

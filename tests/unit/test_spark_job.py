"""The Azure ML serverless Spark job that summarises a window: built and validated offline (no workspace)."""
from __future__ import annotations

from monitors.drift.spark_job import ENTRY, ROOT, summary_job

WINDOW = "azureml://datastores/workspaceblobstore/paths/telemetry/flights-delay/2024/03/01/"
SPEC = "azureml://datastores/workspaceblobstore/paths/summaries/flights-delay/spec.json"


def test_the_summary_job_validates_offline_and_runs_our_entry_script():
    job = summary_job(WINDOW, SPEC, data_format="delta", instance_type="standard_e8s_v3")
    result = job._validate()
    assert result.passed, result
    standalone = job._to_job()
    doc = standalone._to_dict()
    assert doc["type"] == "spark" and doc["entry"] == {"file": ENTRY} and (ROOT / ENTRY).is_file()
    assert doc["inputs"]["window"]["path"] == WINDOW and doc["inputs"]["window"]["mode"] == "direct"
    assert doc["inputs"]["spec"]["type"] == "uri_file" and doc["outputs"]["summary"]["type"] == "uri_folder"
    assert doc["resources"] == {"instance_type": "standard_e8s_v3", "runtime_version": "3.4"}
    assert doc["args"] == ("--window ${{inputs.window}} --spec ${{inputs.spec}} --out ${{outputs.summary}} "
                           "--format delta")
    standalone._to_rest_object()  # what MLClient.jobs.create_or_update would send

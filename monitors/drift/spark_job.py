"""The Azure ML serverless Spark job that summarises a window where its telemetry lies (monitors.drift.spark).

Azure ML's data collector writes an endpoint's requests as files in the workspace's storage; a window of
tens of millions of them is summarised by Spark next to the data and only the summary (per-bin counts, a
few hundred kilobytes) comes back. The job is built and validated here without a network call; submit it
with `MLClient.jobs.create_or_update(job)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "monitors/drift/spark_entry.py"


def summary_job(window: str, spec: str, *, out: str | None = None, data_format: str = "parquet",
                instance_type: str = "standard_e4s_v3", runtime_version: str = "3.4",
                executor_instances: int = 2, code: Path = ROOT) -> Any:
    """A serverless Spark job reading the window (`window`: a folder URI of Parquet or Delta files) and the
    SummarySpec JSON (`spec`: a file URI), writing the summary to its `summary` output folder."""
    from azure.ai.ml import Input, Output, spark

    return spark(
        display_name="window summary", experiment_name="mlops-window-summaries", code=str(code),
        entry={"file": ENTRY}, driver_cores=1, driver_memory="2g", executor_cores=2, executor_memory="2g",
        executor_instances=executor_instances,
        resources={"instance_type": instance_type, "runtime_version": runtime_version},
        inputs={"window": Input(type="uri_folder", path=window, mode="direct"),
                "spec": Input(type="uri_file", path=spec, mode="direct")},
        outputs={"summary": Output(type="uri_folder", path=out, mode="direct")},
        args=f"--window ${{{{inputs.window}}}} --spec ${{{{inputs.spec}}}} --out ${{{{outputs.summary}}}} "
             f"--format {data_format}")

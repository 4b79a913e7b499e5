"""register: package the MLflow model with its metrics and lineage; with --registry, register it locally.

In Azure ML the package (the `registered` output) is registered by the runner through the model
registry (type mlflow_model), because a pipeline step has no workspace credentials of its own.

With --registry (a local run), lineage["reference"] is the absolute path of evaluate's reference file (the
model's monitoring reference). In Azure ML a step sees its inputs at a mount path that means nothing after
the job, so it records none; the reference stays the pipeline job's `reference` output.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _lib import REFERENCE_FILE, SCHEMA_FILE, SUMMARY_FILE, InputError, fail, read_json, write_json
from _models import mlflow_problem


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("model", "metrics", "name", "lineage", "registered"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--train", help="prep's training folder (schema.json, summary.json) for the lineage")
    parser.add_argument("--registry", help="folder of a local model registry")
    parser.add_argument("--reference", help="evaluate's reference_out folder")
    args = parser.parse_args(argv)
    try:
        lineage = json.loads(args.lineage)
        if not isinstance(lineage, dict) or not lineage.get("run_id"):
            raise InputError("--lineage must be a JSON object with a run_id")
        problem = mlflow_problem(args.model)
        if problem:
            raise InputError(f"--model: {problem}")
        metrics = json.loads((Path(args.metrics) / "metrics.json").read_text())
    except (InputError, json.JSONDecodeError, FileNotFoundError) as exc:
        fail(exc)
    schema = read_json(Path(args.train) / SCHEMA_FILE) if args.train else {}
    summary = read_json(Path(args.train) / SUMMARY_FILE) if args.train else {}
    lineage = {**lineage, "training_window": summary.get("window"), "training_rows": summary.get("rows"),
               "rule": summary.get("rule"), "holdout_window": metrics.get("holdout_window"),
               "task": schema.get("task") or metrics.get("task"), "features": schema.get("features"),
               "target": schema.get("target"), "time_column": schema.get("time_column"),
               "classes": schema.get("classes")}
    reference = Path(args.reference) / REFERENCE_FILE if args.reference else None
    if args.registry and reference is not None and reference.exists():
        lineage["reference"] = str(reference.resolve())
    package = Path(args.registered)
    shutil.copytree(args.model, package / "model", dirs_exist_ok=True)
    write_json(package / "lineage.json", lineage)
    write_json(package / "metrics.json", metrics["flat"])
    result = {"name": args.name, "version": None}
    if args.registry:
        from retrain.registry import LocalModelRegistry  # the local runner puts the repo on PYTHONPATH

        version = LocalModelRegistry(args.registry).register(
            args.name, package / "model", metrics=metrics["flat"], lineage=lineage)
        result["version"] = version.version
    write_json(package / "registered.json", result)
    print(f"register: {args.name} version {result['version']}")


if __name__ == "__main__":
    main()

"""Entry script of the Azure ML serverless Spark job (monitors.drift.spark_job): the job's code folder is the
repository, whose root goes on sys.path before monitors.drift.spark.main runs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from monitors.drift.spark import main  # noqa: E402 - after the path it needs

if __name__ == "__main__":
    raise SystemExit(main())

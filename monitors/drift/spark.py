"""Window summaries on Spark: the bins of monitors.drift.summary, computed where a big window lies.

Azure ML's own model monitoring runs on serverless Spark; a window of tens of millions of requests is
summarised there and only the counts travel back. `summarize` takes any Spark DataFrame with one row per
request and the features as columns (read from Parquet, or Delta with delta-spark); every numeric feature
is binned in one pass (`stack` into (feature, value) rows, one groupBy), categorical ones are counted.
`main` is the entry script of the Azure ML serverless Spark job that monitors.drift.spark_job builds.
"""
from __future__ import annotations

import argparse
import json
import math
from typing import Any

from monitors.drift.summary import EXACT_VALUES, SummarySpec, WindowSummary, summary_from_json, summary_to_json

MISSING_BIN = -1


def _t(y: Any) -> Any:
    """asinh as sign(y) ln(|y| + sqrt(y^2 + 1)): the same operations in numpy, Spark and Kusto."""
    from pyspark.sql import functions as F

    return F.signum(y) * F.log(F.abs(y) + F.sqrt(y * y + F.lit(1.0)))


def summarize(df: Any, spec: SummarySpec) -> WindowSummary:
    """The summary of every row of `df` (a pyspark DataFrame), as WindowSummary."""
    from pyspark.sql import functions as F

    summary = spec.empty()
    summary.rows = df.count()
    names = [n for n in spec.grids if n in df.columns]
    if names:
        parts = []
        for name in names:
            grid = spec.grids[name]
            v = F.col(f"`{name}`").cast("double")
            finite = v.isNotNull() & ~F.isnan(v) & (F.abs(v) < F.lit(math.inf))
            index = F.floor((_t((v - F.lit(grid.centre)) / F.lit(grid.scale)) - F.lit(grid.low)) / F.lit(grid.step))
            index = F.least(F.greatest(index + 1, F.lit(0)), F.lit(grid.bins + 1))
            parts.append(F.struct(F.lit(name).alias("f"), F.when(finite, index).otherwise(MISSING_BIN)
                                  .cast("long").alias("b"), F.when(finite, v).alias("v")))
        rows = df.select(F.explode(F.array(*parts)).alias("x")).select("x.*")
        for f, b, n, lo, hi in rows.groupBy("f", "b").agg(F.count(F.lit(1)), F.min("v"), F.max("v")).collect():
            part = summary.columns[f]
            if b == MISSING_BIN:
                part.missing += int(n)
                continue
            part.counts[int(b)] += int(n)
            part.low, part.high = min(part.low, float(lo)), max(part.high, float(hi))
        for name in names:
            if name in spec.exact:
                _exact_values(df, name, summary)
    for name in spec.categorical:
        if name in df.columns:
            part = summary.columns[name]
            for key, n in df.groupBy(F.col(f"`{name}`").alias("k")).count().collect():
                if key is None:
                    part.missing += int(n)
                else:
                    part.counts[key] = part.counts.get(key, 0) + int(n)
    return summary


def _exact_values(df: Any, name: str, summary: WindowSummary) -> None:
    from pyspark.sql import functions as F

    v = F.col(f"`{name}`").cast("double")
    rows = (df.select(v.alias("v")).where(v.isNotNull() & ~F.isnan(v) & (F.abs(v) < F.lit(math.inf)))
            .groupBy("v").count().limit(EXACT_VALUES + 1).collect())
    part = summary.columns[name]
    part.values = None if len(rows) > EXACT_VALUES else {float(k): int(n) for k, n in rows}


def main(argv: list[str] | None = None) -> int:
    """The Spark job: --window (a Parquet or Delta dataset) --spec (SummarySpec JSON) --out (a folder that
    receives the summary as one JSON line). Paths are whatever Spark reads: local, abfss://, azureml://."""
    from pyspark.sql import SparkSession

    cli = argparse.ArgumentParser(prog="monitors.drift.spark")
    cli.add_argument("--window", required=True)
    cli.add_argument("--spec", required=True)
    cli.add_argument("--out", required=True)
    cli.add_argument("--format", default="parquet", help="parquet or delta")
    args = cli.parse_args(argv)
    spark = SparkSession.builder.appName("mlops-window-summary").getOrCreate()
    spec_text = "\n".join(row.value for row in spark.read.text(args.spec).collect())
    summary = summarize(spark.read.format(args.format).load(args.window), SummarySpec.from_json(json.loads(spec_text)))
    text = json.dumps(summary_to_json(summary))
    spark.createDataFrame([(text,)], ["value"]).coalesce(1).write.mode("overwrite").text(args.out)
    return 0


def read_summary(folder: str) -> WindowSummary:
    """The summary a job wrote to a local (or mounted) output folder."""
    from pathlib import Path

    [part] = [p for p in Path(folder).glob("part-*") if p.stat().st_size]
    return summary_from_json(json.loads(part.read_text()))


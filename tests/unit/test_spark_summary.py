"""Window summaries on Spark (local mode): from a Parquet dataset, the same bins as numpy, within the bounds."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from monitors.drift.engine import compare
from monitors.drift.profile import build_profile
from monitors.drift.summary import SummarySpec, add_frame, drift, summary_from_json, summary_to_json

pytest.importorskip("pyspark", reason="pip install -r requirements-dev.txt (pyspark)")


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("mlops-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .config("spark.driver.memory", "1g").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def data():
    rng = np.random.default_rng(21)
    ref = pd.DataFrame({"delay": rng.gamma(0.7, 20, 20_000), "temp": rng.normal(40, 8, 20_000),
                        "hour": rng.integers(5, 23, 20_000) * 1.0, "origin": rng.choice(["EWR", "JFK", "LGA"], 20_000)})
    cur = pd.DataFrame({"delay": rng.gamma(0.7, 26, 30_000), "temp": rng.normal(45, 8, 30_000),
                        "hour": rng.integers(5, 24, 30_000) * 1.0,
                        "origin": rng.choice(["EWR", "JFK", "LGA", "SWF"], 30_000, p=[.3, .3, .3, .1])})
    cur.loc[::101, "temp"] = np.nan
    return ref, cur


def test_spark_summary_of_a_parquet_dataset_matches_numpy_and_the_exact_engine(spark, tmp_path):
    from monitors.drift.spark import main, read_summary, summarize

    ref, cur = data()
    kinds = {"delay": "numeric", "temp": "numeric", "hour": "numeric", "origin": "categorical"}
    profile = build_profile(ref, kinds)
    spec = SummarySpec.of(profile)
    dataset = tmp_path / "window"
    dataset.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(cur)), 3)):  # a dataset of three files
        cur.iloc[part].to_parquet(dataset / f"part-{i}.parquet")
    remote = summarize(spark.read.parquet(str(dataset)), spec)
    here = add_frame(spec, spec.empty(), cur)
    assert remote.rows == here.rows == len(cur)
    for name in ("delay", "temp", "hour"):
        a, b = remote.columns[name], here.columns[name]
        # the JVM's log may differ from numpy's in the last bit: a value on a bin edge may fall either side
        assert np.abs(a.counts - b.counts).sum() <= 2 and (a.low, a.high, a.missing) == (b.low, b.high, b.missing)
    assert remote.columns["hour"].values == here.columns["hour"].values  # few distinct values: exact
    assert remote.columns["origin"].counts == here.columns["origin"].counts
    exact = {f.name: f for f in compare(profile, cur)}
    features, bounds = drift(profile, spec, remote)
    for f in features:
        assert abs(f.statistic - exact[f.name].statistic) <= bounds[f.name] + 1e-12, f.name

    (tmp_path / "spec.json").write_text(json.dumps(spec.to_json()))  # the Azure ML job's entry script
    assert main(["--window", str(dataset), "--spec", str(tmp_path / "spec.json"),
                 "--out", str(tmp_path / "summary")]) == 0
    written = read_summary(str(tmp_path / "summary"))
    assert written.rows == len(cur) and (written.columns["temp"].counts == remote.columns["temp"].counts).all()
    again = summary_from_json(json.loads(json.dumps(summary_to_json(remote))))
    assert (again.columns["delay"].counts == remote.columns["delay"].counts).all()

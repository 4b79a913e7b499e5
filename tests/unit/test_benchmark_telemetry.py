"""`make bench` runs benchmarks.telemetry on a million rows; this runs it on a few thousand (untimed), so a
change of the telemetry schema that breaks the benchmark's payload or store is caught before a bench run."""
from __future__ import annotations

from benchmarks import telemetry


def test_the_log_analytics_benchmark_decodes_its_payload_through_the_source_and_the_sdk():
    line = telemetry.run(rows=2000, numeric=3)
    assert line["rows"] == 2000 and line["features"] == 4
    assert line["columnar_s"] > 0 and line["sdk_rows_s"] > 0


def test_the_local_benchmark_fetches_every_row_warm_and_in_a_fresh_process():
    line = telemetry.run_local(rows=3000, numeric=3, repeat=1, cold=1)
    assert line["rows"] == 3000 and line["segments"] >= 1
    assert len(line["fetch_runs_s"]) == len(line["read_runs_s"]) == 1
    assert len(line["fetch_cold_runs_s"]) == len(line["read_cold_runs_s"]) == 1

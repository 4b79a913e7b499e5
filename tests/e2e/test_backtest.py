"""`python -m retrain backtest` on a history it has never seen: a regression model (arrival delay in minutes)
trained by the delay example's own command, through the whole loop, and bad histories refused with exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[2]


def backtest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retrain", "backtest", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_regression_history_is_backtested_with_the_teams_command(tmp_path):
    from demo.data import flights_history

    history = flights_history("arr_delay")
    history = history[history["time"] < pd.Timestamp("2013-05-01", tz="UTC")]
    history.to_parquet(tmp_path / "delays.parquet", index=False)
    run = backtest("--history", str(tmp_path / "delays.parquet"), "--time-column", "time", "--target", "arr_delay",
                   "--task", "regression", "--train", "python examples/delay/train.py", "--train-until",
                   "2013-03-01", "--sample", "0.25", "--fast", "--no-progress", "--out", str(tmp_path / "out"),
                   timeout=1450)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["task"] == "regression" and summary["metric"] == {"name": "mae", "higher_is_better": False}
    for field in ("checks", "incidents", "alerts", "retrains", "promoted", "rejected", "rolled_back", "wall_s"):
        assert isinstance(summary[field], (int, float)), field
    assert summary["checks"] >= 45  # a daily window over two months
    assert set(summary["strategies"]) == {"never", "scheduled", "managed"}
    for name, strategy in summary["strategies"].items():
        assert set(strategy["monthly_metric"]) == {"2013-03", "2013-04"}, name
        assert 5 < strategy["mean_metric"] < 60, (name, strategy)  # minutes of absolute error
    assert summary["strategies"]["scheduled"]["retrains"] == 1
    assert (tmp_path / "out" / "report.html").stat().st_size > 1000
    assert "mae by month" in run.stdout


@pytest.mark.parametrize(("rows", "column", "words"), [
    ({"time": ["2013-01-02", "2013-01-01"], "y": [0, 1], "x": [1.0, 2.0]}, "time", "not in time order"),
    ({"time": ["2013-01-01", "soon"], "y": [0, 1], "x": [1.0, 2.0]}, "time", "not a time"),
    ({"time": ["2013-01-01", "2013-01-02"], "y": [1, 1], "x": [1.0, 2.0]}, "y", "single class"),
    ({"time": ["2013-01-01", "2013-01-02"], "z": [0, 1], "x": [1.0, 2.0]}, "y", "no column 'y'"),
])
def test_a_bad_history_exits_2_naming_the_file_and_the_column(tmp_path, rows, column, words):
    path = tmp_path / "bad.parquet"
    pd.DataFrame(rows).to_parquet(path)
    run = backtest("--history", str(path), "--time-column", "time", "--target", "y", "--task", "binary",
                   "--train", "python train.py", "--out", str(tmp_path / "out"))
    assert run.returncode == 2, run.stderr
    assert str(path) in run.stderr and f"'{column}'" in run.stderr and words in run.stderr
    assert not (tmp_path / "out").exists()

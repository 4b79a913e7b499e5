"""`python -m demo --text --fast` end to end: the backtest on real tweets with the text classifier example (MiniLM
under a trained head, served as ONNX) through the real endpoint, devhost, the bus, checks, incidents, a
drift-triggered fine-tune, the gate and a canary; never / scheduled / managed compared."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the text stack is not installed (pip install -r requirements-text.txt)")

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fast_text_demo_detects_prompt_drift_and_fine_tunes(tmp_path):
    out = tmp_path / "demo-text"
    run = subprocess.run([sys.executable, "-m", "demo", "--text", "--fast", "--no-progress", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1480)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"].startswith("trump_tweets") and summary["task"] == "multiclass"
    assert summary["metric"] == {"name": "macro_f1", "higher_is_better": True}
    assert summary["drifted_windows"]["text"] >= 1  # the prompts' embeddings moved
    assert summary["incidents"] >= 1 and summary["alerts"] >= 1
    assert summary["retrains"] >= 1 and summary["strategies"]["managed"]["retrains"] >= 1
    assert summary["promoted"] + summary["rejected"] >= 1  # a fine-tuned challenger went through the gate
    assert summary["canaries"] >= 1
    for name in ("never", "scheduled", "managed"):
        strategy = summary["strategies"][name]
        assert len(strategy["monthly_metric"]) >= 2
        assert 0.2 < strategy["mean_metric"] < 1.0  # macro F1 of three authors
    assert summary["strategies"]["never"]["retrains"] == 0
    for name in ("report.html", "timeline.png"):
        assert (out / name).stat().st_size > 1000, name
    assert "macro_f1 by month" in run.stdout and "retrains" in run.stdout

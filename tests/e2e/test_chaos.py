"""The crash test, short and seeded (the long one is `make chaos`): the service under devhost on a simulated
clock, killed with SIGKILL and restarted a few times while it checks, retrains and deploys, then drained; the
invariants are read from the stores by chaos/invariants.py."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(600)
def test_a_short_seeded_kill_run_leaves_no_violation(tmp_path):
    run = subprocess.run([sys.executable, "-m", "chaos", "--seed", "3", "--kills", "6", "--min-windows", "12",
                          "--any-moment", "--workdir", str(tmp_path / "chaos"), "--drain-s", "240"],
                         cwd=ROOT, capture_output=True, text=True, timeout=580)
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout + run.stderr  # exactly one JSON line
    result = json.loads(lines[0])
    assert result["violations"] == [], result
    assert run.returncode == 0
    # --min-windows makes the run long enough on any machine: a fast one gets through six kills in fewer windows
    assert result["kills"] >= 6 and result["windows_due"] == result["windows_checked"] >= 12
    assert result["runs"] == result["runs_terminal"]
    assert set(result) >= {"kills", "violations", "windows_due", "windows_checked", "runs", "runs_terminal",
                           "dead_lettered", "wall_s"}

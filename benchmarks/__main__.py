"""`make bench`: every benchmark, each size in its own process; one JSON line per run."""
from __future__ import annotations

import subprocess
import sys

COMMANDS: list[list[str]] = [
    [sys.executable, "-m", "benchmarks.drift", "--rows", "10000"],
    [sys.executable, "-m", "benchmarks.drift", "--rows", "100000"],
    [sys.executable, "-m", "benchmarks.drift", "--rows", "1000000"],
    [sys.executable, "-m", "benchmarks.telemetry", "--rows", "1000000"],
    [sys.executable, "-m", "benchmarks.telemetry", "--local", "--rows", "1000000"],
    [sys.executable, "-m", "benchmarks.service", "--rows", "1000000"],  # request event -> completed event
    [sys.executable, "-m", "benchmarks.summaries", "--rows", "20000000"],  # Spark local mode needs Java
    [sys.executable, "-m", "benchmarks.calibration", "--checks", "1000"],  # false alarms, detection power
    [sys.executable, "-m", "benchmarks.datacollector", "--rows", "200000"],  # needs Azurite (npm ci)
    [sys.executable, "-m", "benchmarks.serving", "--rows", "200", "--requests", "40"],  # needs .venv-serve
]


def main() -> int:
    failed = 0
    for command in COMMANDS:
        done = subprocess.run(command, check=False)
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

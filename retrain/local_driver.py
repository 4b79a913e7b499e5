"""One local pipeline run: import the heavy libraries once, then fork a child process per step.

`python -m retrain.local_driver <run folder> --step-timeout S --threads N`, the step arguments as JSON
on stdin. Started by LocalPipelineRunner (isolation "fork"). Each child runs the unchanged component
script as `__main__` with the same argv as `python <script> ...` would get, its stdout and stderr in
<step>.log; the driver records progress in status.json exactly as the per-process runner does.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import signal
import sys
import time
import traceback
from functools import partial
from pathlib import Path

# What the component scripts import (directly or through pandas.read_parquet and joblib.load). A child
# imports anything else itself, so this list is about speed, not correctness.
PRELOAD = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "joblib", "sklearn.compose", "sklearn.ensemble",
           "sklearn.pipeline", "sklearn.preprocessing", "sklearn.metrics", "retrain.registry")
POLL_S = 0.02


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--step-timeout", type=float, default=1800.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    # Before numpy/sklearn are imported: OpenMP and BLAS size their thread pools when loaded.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    arguments = json.loads(sys.stdin.read())
    from retrain.local_runner import execute, load_status, save_status

    doc = load_status(args.folder)
    save_status(args.folder, {**doc, "pid": os.getpid()})  # from now on status() watches this process
    for name in PRELOAD:
        importlib.import_module(name)
    execute(args.folder, arguments, partial(run_forked, timeout=args.step_timeout))
    return 0


def run_forked(argv: list[str], log_path: Path, timeout: float) -> int:
    """Run the script argv[0] in a forked child with its output in `log_path`; its exit code, -9 on timeout."""
    log_path.write_text(" ".join([sys.executable, *argv]) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(argv, log_path, parent)
    return _wait(pid, timeout, log_path)


def _child(argv: list[str], log_path: Path, parent: int) -> None:
    """Never returns: the process exits with the script's exit code."""
    code = 1
    try:
        _die_with(parent)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # Fresh streams on fds 1 and 2, as a new interpreter would have: the inherited ones may not be on them.
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives until os._exit
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        script = Path(argv[0])
        os.chdir(script.parent)
        sys.argv = list(argv)
        sys.path.insert(0, str(script.parent))  # as `python <script>`: the scripts import their `_lib`
        code = run_script(str(script))
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def run_script(script: str) -> int:
    """Run a script as `__main__` the way the interpreter would; its exit code."""
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:  # the interpreter prints any uncaught exception and exits with 1
        traceback.print_exc()
        return 1
    return 0


def _die_with(parent: int) -> None:
    """On Linux, have the kernel kill this step if the driver dies, so no step outlives its run."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent:  # the driver died before the line above took effect
        os._exit(1)


def _wait(pid: int, timeout: float, log_path: Path) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            with log_path.open("a") as log:
                log.write(f"\ntimed out after {timeout}s\n")
            return -9
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())

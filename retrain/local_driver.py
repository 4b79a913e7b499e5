"""Local pipeline runs: import the heavy libraries once, then fork a child process per step.

`python -m retrain.local_driver --serve --step-timeout S --threads N` is the runner's fork server: it
imports pandas, scikit-learn and mlflow once, then reads one JSON line per run ({"folder", "arguments"})
on stdin, forks a driver for it, and answers the driver's pid on stdout (a new interpreter per run spent
5-8 s importing them, on every run). It exits when stdin closes, that is when its runner's process ends.
`python -m retrain.local_driver <run folder> ...`, the step arguments as JSON on stdin, drives one run
the same way. Started by LocalPipelineRunner (isolation "fork"). A step whose command is `python <script>`
or `python -m <module>` (the product's steps, and a team's Python training command) runs in a forked
child as `__main__`, with the argv, working folder, stdout (<step>.log) and stderr (<step>.err) that the
command would have had; any other command runs as a subprocess. The driver records progress in
status.json exactly as the per-process runner does.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import shlex
import signal
import sys
import time
import traceback
from functools import partial
from pathlib import Path

# What the component scripts import (directly or through pandas.read_parquet and joblib.load). A child
# imports anything else itself, so this list is about speed, not correctness.
PRELOAD = ("numpy", "pandas", "pyarrow", "pyarrow.parquet", "scipy.stats", "sklearn.compose", "sklearn.ensemble",
           "sklearn.pipeline", "sklearn.preprocessing", "sklearn.metrics", "mlflow.pyfunc", "mlflow.sklearn",
           "skops.io", "retrain.registry", "retrain.components._models")
POLL_S = 0.02


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--step-timeout", type=float, default=1800.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    # Before numpy/sklearn are imported: OpenMP and BLAS size their thread pools when loaded.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.serve:
        return serve(args.step_timeout)
    arguments = json.loads(sys.stdin.read())
    _preload()
    drive(args.folder, arguments, args.step_timeout)
    return 0


def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    _warm_mlflow()


def drive(folder: Path, arguments: dict, step_timeout: float) -> None:
    from retrain.local_runner import execute, load_status, save_status

    doc = load_status(folder)
    save_status(folder, {**doc, "pid": os.getpid()})  # from now on status() watches this process
    execute(folder, arguments, partial(run_forked, timeout=step_timeout))


def serve(step_timeout: float) -> int:
    """The fork server's loop: a forked driver per request line, its pid answered; exits at end of input."""
    _preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # drivers are reaped by the kernel: a dead one is gone
    answers = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        answers.flush()
        pid = os.fork()
        if pid == 0:
            _driver_child(Path(request["folder"]), request["arguments"], step_timeout)
        answers.write(f"{pid}\n")
        answers.flush()
    return 0


def _driver_child(folder: Path, arguments: dict, step_timeout: float) -> None:
    """Never returns. Output to the run's driver.log; its steps are its own children again (SIGCHLD default)."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # not in the server's process group: a signal to one run reaches no other
        fd = os.open(folder / "driver.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives until os._exit
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        drive(folder, arguments, step_timeout)
        code = 0
    except BaseException:  # the run's status says what failed; this is the driver's own crash
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def _warm_mlflow() -> None:
    """mlflow maps installed packages to modules on every save_model (1-2 s here): build the map once, so
    each forked training command inherits it. Only speed depends on this; it is skipped if mlflow changes."""
    from mlflow.utils import requirements_utils

    warm = getattr(requirements_utils, "_init_packages_to_modules_map", None)
    if callable(warm):
        warm()


def run_forked(argv: list[str], log_path: Path, cwd: Path, timeout: float) -> int:
    """Run argv in a forked child (a Python script or module) or a subprocess (anything else), its stdout in
    `log_path` and its stderr beside it; its exit code, -9 on timeout."""
    from retrain.local_runner import err_path, run_subprocess

    target = python_target(argv)
    if target is None:
        return run_subprocess(argv, log_path, cwd, timeout)
    log_path.write_text(shlex.join(argv) + "\n")
    err_path(log_path).write_text("")
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(target, argv, log_path, cwd, parent)
    return _wait(pid, timeout, err_path(log_path))


def python_target(argv: list[str]) -> tuple[str, str] | None:
    """("script", path) for `<this python> path.py ...`, ("module", name) for `<this python> -m name ...`."""
    if len(argv) < 2 or argv[0] != sys.executable:
        return None
    if argv[1] == "-m" and len(argv) > 2:
        return "module", argv[2]
    if argv[1].endswith(".py") and not argv[1].startswith("-"):
        return "script", argv[1]
    return None


def _child(target: tuple[str, str], argv: list[str], log_path: Path, cwd: Path, parent: int) -> None:
    """Never returns: the process exits with the script's exit code."""
    from retrain.local_runner import err_path

    code = 1
    try:
        _die_with(parent)
        for fd_number, path in ((1, log_path), (2, err_path(log_path))):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            os.dup2(fd, fd_number)
            os.close(fd)
        # Fresh streams on fds 1 and 2, as a new interpreter would have: the inherited ones may not be on them.
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives until os._exit
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        os.chdir(cwd)
        kind, name = target
        if kind == "script":
            script = (Path(cwd) / name).resolve()
            sys.argv = [str(script), *argv[2:]]
            sys.path.insert(0, str(script.parent))  # as `python <script>`: its folder is importable
        else:
            sys.argv = [name, *argv[3:]]
            sys.path.insert(0, str(cwd))  # as `python -m`: the working folder is importable
        code = run_script(kind, str(script) if kind == "script" else name)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def run_script(kind: str, name: str) -> int:
    """Run a script (or a module) as `__main__` the way the interpreter would; its exit code."""
    try:
        if kind == "module":
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(name, run_name="__main__")
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

"""Starts deployments' inference servers as forks of one process that imported the serving libraries once.

`python zygote.py` imports what every deployment's server imports (Flask, gunicorn, pandas, scikit-learn,
MLflow), then reads requests from stdin, one JSON line each: {"args": [...], "env": {...}, "cwd": ..., "log": ...}.
For each it forks a child that becomes `azmlinfsrv <args>` (Azure ML's inference server, unchanged) with that
environment, in its own session, bound to 127.0.0.1 (azmlinfsrv binds 0.0.0.0, which a laptop must not),
writing to the log; it answers {"pid": ...}. When a child exits it says {"exited": pid, "code": ...}.
A deployment so starts in about the time its init() takes, and its libraries' pages are shared.

Nothing that reads a deployment's settings at import time is imported here (the server's own app and config are
imported by each child's worker). The zygote exits when its parent (the endpoint) goes away, and each child stops
(SIGTERM: gunicorn's graceful stop) when the zygote does. Runs in the serving environment; imports nothing of
this product.
"""
import json
import os
import signal
import sys
import threading
import time
import traceback

PRELOAD = ("flask", "gunicorn.app.wsgiapp", "werkzeug", "pydantic_settings", "inference_schema.schema_decorators",
           "numpy", "pandas", "pyarrow", "scipy.stats", "sklearn.ensemble", "sklearn.linear_model",
           "sklearn.pipeline", "sklearn.compose", "sklearn.preprocessing", "mlflow.pyfunc", "mlflow.sklearn",
           "skops.io", "azureml.ai.monitoring", "azureml_inference_server_http.amlserver")  # skops: 3 s to import
_write = threading.Lock()


def preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an environment without one of them still serves what it has
            print(f"zygote: not preloaded: {name}: {exc}", file=sys.stderr, flush=True)


def say(doc: dict) -> None:
    with _write:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()


def watch_parent(parent: int, action) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    action()


def reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.2)
            continue
        say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def child(request: dict) -> None:
    """Becomes the deployment's server; never returns."""
    code = 1
    try:
        os.setsid()
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(handled, signal.SIG_DFL)
        threading.Thread(target=watch_parent, args=(os.getppid(), lambda: os.kill(os.getpid(), signal.SIGTERM)),
                         daemon=True).start()
        from azureml_inference_server_http import amlserver

        amlserver.DEFAULT_HOST = "127.0.0.1"
        sys.argv = ["azmlinfsrv", *request["args"]]
        amlserver.run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child must never return into the zygote's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    preload()
    threading.Thread(target=watch_parent, args=(os.getppid(), lambda: os._exit(0)), daemon=True).start()
    threading.Thread(target=reap, daemon=True).start()
    say({"ready": os.getpid()})
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(request)
        say({"pid": pid, "id": request.get("id")})


if __name__ == "__main__":
    main()

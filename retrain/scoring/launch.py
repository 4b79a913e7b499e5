"""Starts Azure ML's inference server (`azmlinfsrv`) bound to loopback, stopping it when its parent goes away.

`python launch.py --entry_script score.py --port N` is `azmlinfsrv --entry_script score.py --port N`, except
that the server listens on 127.0.0.1 (azmlinfsrv binds 0.0.0.0, which a laptop must not) and a watcher thread
stops it (SIGTERM: gunicorn's graceful stop) if the process that started it dies without stopping it.
Runs in the serving environment; imports nothing of this product.
"""
import os
import signal
import sys
import threading
import time


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    from azureml_inference_server_http import amlserver

    amlserver.DEFAULT_HOST = "127.0.0.1"
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    sys.argv[0] = "azmlinfsrv"
    amlserver.run()

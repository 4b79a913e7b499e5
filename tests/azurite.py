"""Start and stop the Azurite storage emulator (npm `azurite`, from package.json) for tests.

    with running_azurite() as az:
        TableStateStore(az.table_endpoint, credential=az.credential)

Azurite listens on free loopback ports and keeps everything in memory (`--inMemoryPersistence` refuses
`--location`, so the temporary folder only holds its stderr and is its working directory). Its account and key are the
public, well-known development ones that every Azure Storage emulator accepts; never use them elsewhere.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteUnavailable(RuntimeError):
    """Azurite is not installed or did not start; the message says how to fix it."""


@dataclass(frozen=True)
class AzuriteEndpoints:
    blob_endpoint: str
    queue_endpoint: str
    table_endpoint: str
    process: subprocess.Popen

    @property
    def credential(self) -> Any:
        from azure.core.credentials import AzureNamedKeyCredential

        return AzureNamedKeyCredential(DEV_ACCOUNT, DEV_KEY)


def unique_name(prefix: str) -> str:
    """A fresh table/container name, so tests sharing one Azurite never see each other's data."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _wait_listening(process: subprocess.Popen, ports: list[int], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            err = log.read_text(errors="replace")
            raise AzuriteUnavailable(f"azurite exited with code {process.returncode}: {err.strip()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.2):
                pending.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise AzuriteUnavailable(f"azurite did not listen on port {pending[0]} within {timeout_s}s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def running_azurite(timeout_s: float = 30.0) -> Iterator[AzuriteEndpoints]:
    if not AZURITE_BIN.exists():
        raise AzuriteUnavailable(f"{AZURITE_BIN} not found: run `npm install --no-audit --no-fund` in {REPO_ROOT} "
                                 "(needs Node 20) to install the Azurite storage emulator from package.json")
    blob, queue, table = _free_ports(3)
    with tempfile.TemporaryDirectory(prefix="azurite-") as location:
        args = [str(AZURITE_BIN), "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--inMemoryPersistence",
                "--silent",
                "--blobHost", "127.0.0.1", "--blobPort", str(blob),
                "--queueHost", "127.0.0.1", "--queuePort", str(queue),
                "--tableHost", "127.0.0.1", "--tablePort", str(table)]
        log = Path(location) / "stderr.log"
        try:
            with log.open("wb") as err:  # a file, not a pipe: a full pipe would stall the emulator
                process = subprocess.Popen(args, cwd=location, stdout=subprocess.DEVNULL, stderr=err)
        except OSError as exc:
            raise AzuriteUnavailable(f"cannot run {AZURITE_BIN} (is Node 20 on PATH?): {exc}") from exc
        try:
            _wait_listening(process, [table, blob, queue], log, timeout_s)
            yield AzuriteEndpoints(
                blob_endpoint=f"http://127.0.0.1:{blob}/{DEV_ACCOUNT}",
                queue_endpoint=f"http://127.0.0.1:{queue}/{DEV_ACCOUNT}",
                table_endpoint=f"http://127.0.0.1:{table}/{DEV_ACCOUNT}",
                process=process,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

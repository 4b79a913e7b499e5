"""Where files of another producer lie (Azure ML's data collector, a label table): a Blob container, identity-based,
or a local folder with the same layout. The Azure SDK is imported when a container is first used."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from core.errors import ConfigurationError, NotFound, RetryableError, TelemetryUnavailable

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient


@dataclass(frozen=True)
class Entry:
    name: str
    tag: str  # changes when the file's content does (etag, or size and mtime)


class Files(Protocol):
    """Where the collector's files lie: Blob Storage, or a local folder with the same layout."""

    def folders(self, prefix: str) -> list[str]: ...  # names of the sub-folders directly under prefix
    def files(self, prefix: str) -> list[Entry]: ...  # every file under prefix, recursively
    def read(self, name: str) -> bytes: ...


class BlobFiles:
    """Conforms to monitors.telemetry.datacollector.Files over one container (`azure-storage-blob`).

    `credential` None means DefaultAzureCredential (managed identity in Azure), which needs https; tests pass
    Azurite's development key. A container that does not exist is a configuration error; anything the service
    may answer later (timeouts, throttling, 5xx, a token not yet available) is TelemetryUnavailable."""

    def __init__(self, account_url: str, container: str, *, credential: Any = None,
                 client_factory: Callable[[], ContainerClient] | None = None) -> None:
        if credential is None and client_factory is None and not account_url.lower().startswith("https://"):
            raise ConfigurationError(f"blob account {account_url!r} must be https:// for identity-based access")
        self.account_url, self.container = account_url.rstrip("/"), container
        self._credential, self._factory = credential, client_factory
        self._client: ContainerClient | None = None
        self._lock = threading.Lock()

    def _container(self) -> ContainerClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory() if self._factory else self._open()
            return self._client

    def _open(self) -> ContainerClient:
        from azure.storage.blob import ContainerClient

        credential = self._credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return ContainerClient(self.account_url, self.container, credential=credential)

    def folders(self, prefix: str) -> list[str]:
        return self._call(f"list folders under {prefix}", lambda: sorted(
            item.name[len(prefix):].rstrip("/") for item in self._container().walk_blobs(name_starts_with=prefix,
                                                                                      delimiter="/")
            if item.name.endswith("/")))

    def files(self, prefix: str) -> list[Entry]:
        return self._call(f"list {prefix}", lambda: [
            Entry(b.name, str(b.etag)) for b in self._container().list_blobs(name_starts_with=prefix)])

    def read(self, name: str) -> bytes:
        return self._call(f"read {name}", lambda: self._container().download_blob(name).readall())

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from azure.core.exceptions import AzureError

        from core.state_tables import translate_azure_error

        try:
            return fn()
        except AzureError as exc:
            error = translate_azure_error(exc, f"{self.container}: {what}")
            if isinstance(error, NotFound):
                raise ConfigurationError(f"{self.account_url}/{self.container}: {what}: not found "
                                         "(is the container name right?)") from exc
            if isinstance(error, RetryableError):
                raise TelemetryUnavailable(str(error)) from exc
            raise error from exc


class FolderFiles:
    """The same layout in a local folder (a downloaded copy, or the local endpoint's collector output)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folders(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def files(self, prefix: str) -> list[Entry]:
        base = self.root / prefix
        if base.is_file():
            found = [base]
        elif base.is_dir():
            found = [p for p in base.rglob("*") if p.is_file()]
        else:
            return []
        out = []
        for path in sorted(found):
            stat = path.stat()
            out.append(Entry(path.relative_to(self.root).as_posix(), f"{stat.st_size}:{stat.st_mtime_ns}"))
        return out

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError as exc:
            raise TelemetryUnavailable(f"{name} vanished while reading {self.root}") from exc

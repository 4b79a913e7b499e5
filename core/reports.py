"""ReportStore adapters: files under a local folder, or blobs in one Blob Storage container.

Report names are relative, slash-separated paths of plain segments (letters, digits, `.`, `_`, `-`,
not starting with `.`), so a name can never escape the folder or container it is stored in.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ConfigurationError, NotFound, ValidationFailed
from core.files import write_atomic
from core.state_tables import translate_azure_error

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_MAX_NAME = 1024
_META_DIR = ".meta"  # segments may not start with ".", so no report can collide with it


def check_report_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValidationFailed(f"report name must be a non-empty string, got {name!r}", field="name")
    if len(name) > _MAX_NAME:
        raise ValidationFailed(f"report name is longer than {_MAX_NAME} characters", field="name")
    if name.startswith("/") or "\\" in name or ":" in name:
        raise ValidationFailed(f"report name {name!r} must be a relative path with '/' separators", field="name")
    for segment in name.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise ValidationFailed(f"report name {name!r}: segment {segment!r} must be letters, digits, '.', '_' "
                                   "or '-', not empty and not starting with '.'", field="name")
    return name


def _check_content(content: bytes, content_type: str) -> None:
    if not isinstance(content, bytes | bytearray | memoryview):
        raise ValidationFailed(f"report content must be bytes, got {type(content).__name__}", field="content")
    if not isinstance(content_type, str) or "/" not in content_type:
        raise ValidationFailed(f"content type {content_type!r} is not a media type like 'text/html'",
                               field="content_type")


class FileReportStore:
    """Reports as files under `root`; each one's content type in `root/.meta/<name>.json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def put(self, name: str, content: bytes, content_type: str) -> str:
        path = self.root / check_report_name(name)
        _check_content(content, content_type)
        write_atomic(path, bytes(content))
        write_atomic(self._meta(name), json.dumps({"content_type": content_type}).encode())
        return path.as_uri()

    def get(self, name: str) -> bytes:
        path = self.root / check_report_name(name)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(f"no report {name!r}") from exc

    def content_type(self, name: str) -> str:
        try:
            return json.loads(self._meta(check_report_name(name)).read_text())["content_type"]
        except FileNotFoundError as exc:
            raise NotFound(f"no report {name!r}") from exc

    def _meta(self, name: str) -> Path:
        return self.root / _META_DIR / f"{name}.json"


class BlobReportStore:
    """Reports as block blobs in `container` (created on first use), identity-based by default."""

    def __init__(self, account_url: str, container: str = "reports", *, credential: Any = None) -> None:
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", container):
            raise ValidationFailed(f"container name {container!r} must be 3-63 lowercase letters, digits, '-'",
                                   field="container")
        if credential is None and not account_url.lower().startswith("https://"):
            raise ConfigurationError(f"blob endpoint {account_url!r} must be https:// for identity-based access "
                                     "(MLOPS_BLOB_ENDPOINT)")
        self.account_url, self.container = account_url.rstrip("/"), container
        self._credential = credential
        self._client: ContainerClient | None = None
        self._lock = threading.Lock()

    def _container(self) -> ContainerClient:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is None:
                self._client = self._open()
        return self._client

    def _open(self) -> ContainerClient:
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.blob import ContainerClient

        credential = self._credential
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        client = ContainerClient(self.account_url, self.container, credential=credential)
        try:
            client.create_container()
        except ResourceExistsError:
            pass  # the usual case after the first run
        except AzureError as exc:
            raise translate_azure_error(exc, f"create container {self.container}") from exc
        return client

    def put(self, name: str, content: bytes, content_type: str) -> str:
        from azure.core.exceptions import AzureError
        from azure.storage.blob import ContentSettings

        check_report_name(name)
        _check_content(content, content_type)
        blob = self._container().get_blob_client(name)
        try:
            blob.upload_blob(bytes(content), overwrite=True,
                             content_settings=ContentSettings(content_type=content_type))
        except AzureError as exc:
            raise translate_azure_error(exc, f"put report {name!r}") from exc
        return blob.url

    def get(self, name: str) -> bytes:
        from azure.core.exceptions import AzureError

        check_report_name(name)
        try:
            return self._container().get_blob_client(name).download_blob().readall()
        except AzureError as exc:
            raise translate_azure_error(exc, f"get report {name!r}") from exc

    def content_type(self, name: str) -> str:
        from azure.core.exceptions import AzureError

        check_report_name(name)
        try:
            return self._container().get_blob_client(name).get_blob_properties().content_settings.content_type
        except AzureError as exc:
            raise translate_azure_error(exc, f"get report {name!r}") from exc

"""Reference data: a file (or folder) path, or an Azure ML data asset, each with a fingerprint of its content.

The fingerprint keys the cached reference profile: it changes when the content does and is cheap to ask
for on every check (a file's bytes are hashed again only when its size or mtime changed; an Azure ML data
asset version is immutable, so its identity is its fingerprint and nothing is downloaded to compute it).
"""
from __future__ import annotations

import hashlib
import re
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from core.azure_errors import translated
from core.errors import ConfigurationError, NotFound, ValidationFailed

if TYPE_CHECKING:
    import pandas as pd

SUFFIXES = (".parquet", ".pq", ".csv", ".jsonl", ".json")
_AZUREML = re.compile(r"^azureml:(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[^:@/]+)|@(?P<label>[a-z]+))$")
_DATASTORE_PATH = re.compile(r"^azureml://(?:.*/)?datastores/(?P<store>[^/]+)/paths/(?P<path>.+)$")
_JOB_OUTPUT = re.compile(r"^azureml://jobs/(?P<job>[^/]+)/outputs/(?P<output>[^/]+)/?$")
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of the bytes
_lock = threading.Lock()


def read_frame(path: Path) -> "pd.DataFrame":
    import pandas as pd

    if path.is_dir():
        parts = [read_frame(p) for p in _data_files(path)]
        if not parts:
            raise ValidationFailed(f"reference folder {path} holds no {'/'.join(SUFFIXES)} file", field="reference.uri")
        return pd.concat(parts, ignore_index=True)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise ValidationFailed(f"reference {path.name}: unsupported format (use {', '.join(SUFFIXES)})",
                           field="reference.uri")


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _digests:
            return _digests[key]
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    with _lock:
        _digests[key] = sha.hexdigest()
    return _digests[key]


class FileReference:
    """A reference file, or a folder of them (read in name order). `frame()` is cached per fingerprint."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ValidationFailed(f"reference {self.path} does not exist", field="reference.uri")
        self._frame: tuple[str, Any] | None = None

    @property
    def fingerprint(self) -> str:
        files = _data_files(self.path) if self.path.is_dir() else [self.path]
        parts = [f"{p.relative_to(self.path) if self.path.is_dir() else p.name}:{file_digest(p)}" for p in files]
        return "sha256:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def frame(self) -> "pd.DataFrame":
        fingerprint = self.fingerprint
        if self._frame is None or self._frame[0] != fingerprint:
            self._frame = (fingerprint, read_frame(self.path))
        return self._frame[1]


class AzureMLDataReference:
    """`azureml:name:version` (or `azureml:name@latest`): a data asset read through the workspace's datastore.

    `ml_client` is an azure.ai.ml.MLClient (or anything with the same `data`/`datastores` operations).
    """

    def __init__(self, uri: str, ml_client: Any, *, cache_dir: Path, credential: Any = None,
                 blob_account_url: str | None = None) -> None:
        match = _AZUREML.match(uri)
        if not match:
            raise ValidationFailed(f"{uri!r} is not azureml:<name>:<version> or azureml:<name>@latest",
                                   field="reference.uri")
        self.uri, self.name = uri, match["name"]
        self.version, self.label = match["version"], match["label"]
        self._client, self._cache_dir, self._credential = ml_client, Path(cache_dir), credential
        self._account_url = blob_account_url  # default: from the datastore (an emulator or private link: given)
        self._frame: tuple[str, Any] | None = None

    @translated("Azure ML")
    def asset(self) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._client.data.get(name=self.name, version=self.version, label=self.label)
        except ResourceNotFoundError as exc:
            raise NotFound(f"Azure ML data asset {self.uri} does not exist") from exc

    @property
    def fingerprint(self) -> str:
        return _asset_fingerprint(self.asset())

    @translated("Azure ML")
    def frame(self) -> "pd.DataFrame":
        asset = self.asset()
        fingerprint = _asset_fingerprint(asset)
        if self._frame is None or self._frame[0] != fingerprint:
            self._frame = (fingerprint, read_frame(self._local_copy(asset, fingerprint)))
        return self._frame[1]

    def _local_copy(self, asset: Any, fingerprint: str) -> Path:
        path = str(asset.path)
        if "://" not in path or path.startswith("file://"):
            return Path(path.removeprefix("file://"))
        target = self._cache_dir / fingerprint.replace(":", "-")
        if not target.exists():
            self._download(path, target)
        return target

    def _download(self, path: str, target: Path) -> None:
        """Blobs under the asset's path, into `target` (written to a temp folder first, then renamed). An asset
        registered from a pipeline job's output (azureml://jobs/<job>/outputs/<output>) is the job's download."""
        from azure.storage.blob import ContainerClient

        job_output = _JOB_OUTPUT.match(path)
        if job_output:
            staging = target.with_suffix(".partial")
            shutil.rmtree(staging, ignore_errors=True)  # what an interrupted download left
            self._client.jobs.download(name=job_output["job"], output_name=job_output["output"],
                                       download_path=str(staging))
            staging.rename(target)
            return
        match = _DATASTORE_PATH.match(path)
        if not match:
            raise ValidationFailed(f"data asset {self.uri}: cannot read path {path}", field="reference.uri")
        store = self._client.datastores.get(match["store"])
        account_url = self._account_url or f"{store.protocol}://{store.account_name}.blob.{store.endpoint}"
        container = ContainerClient(account_url, store.container_name, credential=self._credential or _default())
        prefix, staging = match["path"].rstrip("/"), target.with_suffix(".partial")
        for blob in container.list_blobs(name_starts_with=prefix):
            relative = blob.name[len(prefix):].lstrip("/") or Path(blob.name).name
            local = staging / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(container.download_blob(blob.name).readall())
        staging.rename(target)


def _asset_fingerprint(asset: Any) -> str:
    """A version's content never changes; @latest resolves to whichever version is newest."""
    identity = f"{asset.id}|{asset.version}|{asset.path}"
    return "azureml:" + hashlib.sha256(identity.encode()).hexdigest()


def _default() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class ReferenceLoader:
    """Opens a spec's reference: a path (relative to the spec's folder) or an `azureml:` data asset, read through
    the process's one MLClient and credential (the composition root's, built on first need) and cached under
    the data folder (MLOPS_DATA_DIR/references: a deployed package is read-only, the data folder is not)."""

    def __init__(self, cache_dir: str | Path, *, ml_client: Callable[[], Any] | None = None,
                 credential: Callable[[], Any] | None = None, blob_account_url: str | None = None) -> None:
        self.cache_dir, self._ml_client, self._credential = Path(cache_dir), ml_client, credential
        self.blob_account_url = blob_account_url

    def load(self, uri: str, base_dir: Path) -> "FileReference | AzureMLDataReference":
        if not uri.startswith("azureml:"):
            return load_reference(uri, base_dir=base_dir)
        if self._ml_client is None:
            raise ConfigurationError(f"reference {uri}: an azureml: reference needs Azure ML settings "
                                     "(AZUREML_SUBSCRIPTION_ID, AZUREML_RESOURCE_GROUP, AZUREML_WORKSPACE)")
        return AzureMLDataReference(uri, self._ml_client(), cache_dir=self.cache_dir,
                                    credential=self._credential() if self._credential else None,
                                    blob_account_url=self.blob_account_url)


def load_reference(uri: str, *, base_dir: Path, ml_client: Any = None,
                   cache_dir: Path | None = None) -> FileReference | AzureMLDataReference:
    """A path (relative to `base_dir`, usually the spec's folder) or an `azureml:` data asset (which needs the
    client and the cache folder: see ReferenceLoader)."""
    if uri.startswith("azureml:"):
        if ml_client is None or cache_dir is None:
            raise ConfigurationError(f"reference {uri}: an azureml: reference needs an Azure ML client and a "
                                     "cache folder (ReferenceLoader)")
        return AzureMLDataReference(uri, ml_client, cache_dir=cache_dir)
    path = Path(uri)
    return FileReference(path if path.is_absolute() else Path(base_dir) / path)

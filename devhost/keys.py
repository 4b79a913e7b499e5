"""Function keys for the local HTTP routes: a JSON file generated on first run, readable only by its owner.

The file holds one function key (accepted on FUNCTION routes) and a master key (accepted everywhere,
required on ADMIN routes), as the Functions host does with its default keys.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigurationError

DEFAULT_KEYS_FILE = "devhost-keys.json"


@dataclass(frozen=True)
class FunctionKeys:
    function_key: str
    master_key: str
    path: Path
    created: bool = False

    def allows(self, presented: str | None, *, admin: bool) -> bool:
        if not presented:
            return False
        accepted = (self.master_key,) if admin else (self.function_key, self.master_key)
        # compare_digest on every candidate: no early exit that would leak which key nearly matched.
        return any([hmac.compare_digest(presented.encode(), key.encode()) for key in accepted])


def default_keys_path(data_dir: Path | None = None) -> Path:
    base = data_dir or Path(os.environ.get("MLOPS_DATA_DIR", ".local"))
    return base / DEFAULT_KEYS_FILE


def load_or_create(path: Path) -> FunctionKeys:
    """Read the keys file, or create it (mode 0600) with fresh random keys if it does not exist."""
    path = Path(path)
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"functionKeys": {"default": secrets.token_urlsafe(32)}, "masterKey": secrets.token_urlsafe(32)}
    try:
        # O_EXCL: if two hosts start at once, one creates the file and the other reads it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=2)
    return FunctionKeys(doc["functionKeys"]["default"], doc["masterKey"], path, created=True)


def _read(path: Path) -> FunctionKeys:
    try:
        doc = json.loads(path.read_text())
        function_key, master_key = doc["functionKeys"]["default"], doc["masterKey"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"keys file {path} is unreadable or lacks functionKeys.default/masterKey: "
                                 f"{exc!r}; delete it to generate new keys") from exc
    if not (isinstance(function_key, str) and function_key and isinstance(master_key, str) and master_key):
        raise ConfigurationError(f"keys file {path}: functionKeys.default and masterKey must be non-empty strings")
    return FunctionKeys(function_key, master_key, path)

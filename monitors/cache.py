"""The check command's cache: reference profiles, no-drift nulls and inferred kinds, keyed by content.

A CI job checks new data against the same reference again and again; everything derived from the
reference alone is kept under one folder (default: the platform's user cache folder, e.g.
~/.cache/mlops-monitors), keyed by the SHA-256 of the reference file's bytes, so a changed file is a new
key and an unchanged one is never read again, only hashed. Damaged files are rebuilt (core.files.cached).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from core.files import cached
from core.plain import dumps
from monitors.drift.profile import ProfileCache

if TYPE_CHECKING:
    import pandas as pd

ENV = "MLOPS_CACHE_DIR"


def default_cache_dir() -> Path:
    """$MLOPS_CACHE_DIR, else the platform's user cache folder (XDG on Linux, Library/Caches, LocalAppData)."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get(ENV) or user_cache_dir("mlops-monitors", appauthor=False))


class CheckCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.profiles = ProfileCache(self.root / "profiles")
        self.calibration = self.root / "calibration"

    def kinds(self, fingerprint: str, infer: Callable[[], dict[str, str]], variant: str = "") -> dict[str, str]:
        """The kinds inferred from the reference with this fingerprint (inferred once, then read); `variant`
        names what else the inference depended on."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{fingerprint}-{variant}" if variant else fingerprint)[:90]
        return cached(self.root / "kinds" / f"{safe}.json", _load_kinds, infer,
                      lambda kinds, out: out.write(dumps({"fingerprint": fingerprint, "kinds": kinds}).encode()))


def _load_kinds(path: Path) -> dict[str, str]:
    kinds = json.loads(path.read_text())["kinds"]
    if not isinstance(kinds, dict) or not all(v in ("numeric", "categorical", "text") for v in kinds.values()):
        raise ValueError(f"{path.name}: not a kinds document")
    return kinds


class LazyReference:
    """A reference table whose rows are read only when something needs them: its column names come from
    the file's schema and its fingerprint from its bytes."""

    def __init__(self, path: Path, read: Callable[[Path], pd.DataFrame]) -> None:
        from monitors.reference import file_digest

        self.path, self._read = Path(path), read
        self.fingerprint = "sha256:" + file_digest(self.path)  # the bytes alone: a renamed copy is a cache hit
        self._frame: pd.DataFrame | None = None

    @property
    def columns(self) -> list[str]:
        if self._frame is not None or self.path.suffix.lower() not in (".parquet", ".pq"):
            return [str(c) for c in self.frame().columns]
        import pyarrow.parquet as pq

        return [name for name in pq.read_schema(self.path).names if not name.startswith("__index_level_")]

    def frame(self) -> pd.DataFrame:
        if self._frame is None:
            self._frame = self._read(self.path)
        return self._frame

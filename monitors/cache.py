"""The check command's cache: reference profiles, no-drift nulls, inferred kinds and the quality digest,
keyed by content.

A CI job checks new data against the same reference again and again; everything derived from the
reference alone is kept under one folder (default: the platform's user cache folder, e.g.
~/.cache/mlops-monitors), keyed by the SHA-256 of the reference file's bytes, so a changed file is a new
key and an unchanged one is never read again. Its hash is remembered with the file's size, modification
time and inode (as git's index and make do), so an untouched reference is not even hashed again.
Damaged files are rebuilt (core.files.cached).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from core.files import cached, write_atomic
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


    def fingerprint(self, path: Path) -> str:
        """"sha256:<hex>" of the file's bytes, hashed again only when its size, mtime or inode changed."""
        import hashlib

        from monitors.reference import file_digest

        path = Path(path).resolve()
        stat = path.stat()
        seen = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        memo = self.root / "digests" / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"

        doc = _memo(memo)
        if doc.get("stat") == seen and re.fullmatch(r"[0-9a-f]{64}", str(doc.get("sha256"))):
            return "sha256:" + doc["sha256"]
        sha = file_digest(path)  # new, changed or touched: hash it (a changed file is not damage: no warning)
        write_atomic(memo, dumps({"stat": seen, "sha256": sha}))
        return "sha256:" + sha

    def quality(self, fingerprint: str, evaluator: Any, fit: Callable[[], Any], window_rows: int) -> Any:
        """The data-quality fit of the reference with this fingerprint, from its digest (ranges, categories,
        base rates) when cached: a window too big for run-based nulls never reads the reference's rows, and
        the full fit (a copy of every column) is kept only when this window's runs need it."""
        import hashlib

        from monitors.drift.calibration import grid_size
        from monitors.signals.rates import runs_fit

        kinds = hashlib.sha256(dumps(dict(evaluator.kinds), sort_keys=True).encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", fingerprint)[:80]
        built: list[Any] = []

        def build() -> dict[str, Any]:
            built.append(fit())
            return built[0].digest()

        digest = cached(self.root / "quality" / f"{safe}-{kinds}.json", _load_digest, build,
                        lambda doc, out: out.write(dumps(doc).encode()))
        if built and runs_fit(int(digest["rows"]), grid_size(window_rows)):
            return built[0]
        return evaluator.fit_digest(digest, fit)


def _memo(path: Path) -> dict[str, Any]:
    """A remembered hash, or {} when there is none to trust (missing, half-written, not ours)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):  # the memo only saves time: without it the file is hashed
        return {}
    return doc if isinstance(doc, dict) else {}


def _load_digest(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    if not isinstance(doc, dict) or not {"rows", "ranges", "categories", "base_rates"} <= set(doc):
        raise ValueError(f"{path.name}: not a quality digest")
    pairs = all(isinstance(v, list) and len(v) == 2 for v in doc["ranges"].values())
    rates = all(isinstance(v, (int, float)) for v in doc["base_rates"].values())
    if not (pairs and rates and all(isinstance(v, list) for v in doc["categories"].values())):
        raise ValueError(f"{path.name}: a damaged quality digest")
    return doc


def _load_kinds(path: Path) -> dict[str, str]:
    kinds = json.loads(path.read_text())["kinds"]
    if not isinstance(kinds, dict) or not all(v in ("numeric", "categorical", "text") for v in kinds.values()):
        raise ValueError(f"{path.name}: not a kinds document")
    return kinds


class LazyReference:
    """A reference table whose rows are read only when something needs them: its column names come from
    the file's schema and its fingerprint from its bytes."""

    def __init__(self, path: Path, read: Callable[[Path], pd.DataFrame], cache: CheckCache) -> None:
        self.path, self._read = Path(path), read
        self.fingerprint = cache.fingerprint(self.path)  # the bytes alone: a renamed copy is a cache hit
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

    def release(self) -> None:
        """Forget the rows (read again if asked for): a million-row reference is hundreds of MB."""
        self._frame = None

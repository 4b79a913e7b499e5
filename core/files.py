"""Files that survive a killed process: the one atomic write, and caches rebuilt when damaged.

A reader sees the old file or the whole new one, never half of one: content goes to a temporary file in
the same folder (unique per process and thread), then `os.replace` swaps it in. A process killed halfway
leaves at most a `.tmp-*` file, which nothing reads. (An OS crash can still lose the last write: there is
no fsync, as these are caches, reports and local state that the next run can rebuild or redo.)
"""
from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Callable, TypeVar

from core.plain import dumps

log = logging.getLogger("mlops.files")
T = TypeVar("T")

# What reading a damaged or foreign cache file raises: truncated, wrong format, bad zip, bad JSON, bad pickle.
DAMAGE = (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile)


def write_atomic(path: str | Path, content: bytes | str | Callable[[IO[bytes]], Any]) -> Path:
    """Write bytes, text (UTF-8) or whatever `content(file)` writes to `path`, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            if callable(content):
                content(out)
            else:
                out.write(content.encode() if isinstance(content, str) else bytes(content))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | Path, doc: Any, *, indent: int | None = 2,
               default: Callable[[Any], Any] | None = None) -> Path:
    """Strict JSON (core.plain) of `doc`, sorted keys, written atomically; `default` as in core.plain.plain."""
    return write_atomic(path, dumps(doc, indent=indent, sort_keys=True, default=default))


def cached(path: str | Path, load: Callable[[Path], T], build: Callable[[], T],
           save: Callable[[T, IO[bytes]], Any]) -> T:
    """`load(path)` if the cache file is there and readable; otherwise `build()` it and save it atomically.

    A damaged file (truncated by a crash, a disk error, an older format) is logged and rebuilt, never
    fatal: a cache can always be recomputed from its source.
    """
    path = Path(path)
    if path.exists():
        try:
            return load(path)
        except DAMAGE as exc:
            log.warning("cache file %s is unreadable (%s: %s); rebuilding it", path, type(exc).__name__, exc)
    value = build()
    write_atomic(path, lambda out: save(value, out))
    return value

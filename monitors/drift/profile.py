"""Reference profiles: what a drift check needs from the reference, computed once per model version.

Numeric columns keep their sorted finite values (KS, Wasserstein and binning read them directly);
categorical columns keep their categories and counts, so a check only codes the current window.
Profiles are saved as .npz without pickles: arrays plus one JSON document.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import numpy as np

from core.files import cached
from monitors.drift.methods import default_method, get_method
from monitors.drift.stattests import CATEGORICAL, NUMERIC, cdf_integral

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["NUMERIC", "CATEGORICAL", "ColumnProfile", "ReferenceProfile", "build_profile", "ProfileCache",
           "infer_kinds"]
FORMAT = 1
KINDS = (NUMERIC, CATEGORICAL)

log = logging.getLogger("mlops.drift")
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class ColumnProfile:
    name: str
    kind: str
    method: str  # evidently method id; when `auto`, resolved from the reference alone (see engine)
    auto: bool  # chosen by evidently's default rule rather than by the caller
    rows: int  # non-null, finite values in the reference
    nunique: int
    values: np.ndarray | None = None  # numeric: sorted finite float64 values
    std: float = 0.0  # numeric: population std of the reference (evidently's Wasserstein norm)
    integer: bool = False  # numeric: the reference column has an integer dtype
    categories: tuple[Any, ...] = ()  # categorical: reference categories (plain Python scalars)
    counts: np.ndarray | None = None  # categorical: count of each category, aligned with `categories`

    @cached_property
    def prefix(self) -> np.ndarray:
        """Integral of the reference CDF up to each sorted value: Wasserstein in O(m log n) per check.
        Computed when first needed (windows of the reference's own size never need it)."""
        return cdf_integral(self.values)


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    columns: dict[str, ColumnProfile]
    rows: int
    fingerprint: str

    def save(self, out: Path | IO[bytes]) -> None:
        arrays: dict[str, np.ndarray] = {}
        meta = {"format": FORMAT, "rows": self.rows, "fingerprint": self.fingerprint, "columns": []}
        for i, col in enumerate(self.columns.values()):
            if col.values is not None:
                arrays[f"values_{i}"] = col.values
            if col.counts is not None:
                arrays[f"counts_{i}"] = col.counts
            meta["columns"].append({"name": col.name, "kind": col.kind, "method": col.method, "auto": col.auto,
                                    "rows": col.rows, "nunique": col.nunique, "std": col.std,
                                    "integer": col.integer, "categories": _plain_categories(col)})
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(out, **arrays)

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        data = mapped_npz(path)
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: profile format {meta.get('format')!r}, expected {FORMAT}")
        columns = {}
        for i, doc in enumerate(meta["columns"]):
            columns[doc["name"]] = ColumnProfile(
                name=doc["name"], kind=doc["kind"], method=doc["method"], auto=doc["auto"], rows=doc["rows"],
                nunique=doc["nunique"], std=doc["std"], integer=doc["integer"],
                categories=tuple(doc["categories"]),
                values=data.get(f"values_{i}"),
                counts=data.get(f"counts_{i}"))
        return cls(columns=columns, rows=meta["rows"], fingerprint=meta["fingerprint"])


def mapped_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed .npz (np.savez) as read-only views of the file mapped in memory.

    np.load copies every array out of the zip and checksums it: 160 MB and ~0.3 s for a million-row
    profile before a check starts. Mapped, the pages come from the page cache as the statistics touch them
    and are shared by concurrent checks. A truncated file fails here (zip directory or array bounds).
    """
    import mmap
    import struct
    import zipfile

    with open(path, "rb") as handle:
        with zipfile.ZipFile(handle) as archive:
            members = archive.infolist()
        if not members:
            raise ValueError(f"{path}: no arrays")
        buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    arrays = {}
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or not member.filename.endswith(".npy"):
            raise ValueError(f"{path}: {member.filename} is not a stored .npy array")
        header = member.header_offset
        if buffer[header:header + 4] != b"PK\x03\x04":
            raise ValueError(f"{path}: {member.filename}: no local file header")
        name_length, extra_length = struct.unpack("<HH", buffer[header + 26:header + 30])
        start = header + 30 + name_length + extra_length
        arrays[member.filename[:-4]] = _npy_view(buffer, start, member.file_size)
    return arrays


def _npy_view(buffer: Any, start: int, size: int) -> np.ndarray:
    import io

    from numpy.lib import format as npy

    head = io.BytesIO(buffer[start:start + min(size, 1 << 16)])
    version = npy.read_magic(head)
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, dtype = read_header(head)
    if dtype.hasobject:
        raise ValueError("an array of Python objects")
    count = int(np.prod(shape, dtype=np.int64))
    if head.tell() + count * dtype.itemsize > size:
        raise ValueError("an array larger than its member")
    flat = np.frombuffer(buffer, dtype=dtype, count=count, offset=start + head.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _plain_categories(col: ColumnProfile) -> list[Any]:
    for value in col.categories:
        if not isinstance(value, (str, bool, int, float)):
            raise ValueError(f"column {col.name!r}: category {value!r} of type {type(value).__name__} "
                             "cannot be saved (str, int, float and bool can)")
    return list(col.categories)


def build_profile(reference: pd.DataFrame, kinds: Mapping[str, str], *, methods: Mapping[str, str] | None = None,
                  fingerprint: str = "") -> ReferenceProfile:
    """Profile the columns named in `kinds` ("numeric" | "categorical"); `methods` overrides evidently's choice."""
    methods = dict(methods or {})
    for name in methods:
        if name not in kinds:
            raise ValueError(f"column {name!r}: a method is given but the column has no kind")
    for name, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"column {name!r}: kind {kind!r} is not one of {KINDS}")
        if name not in reference.columns:
            raise ValueError(f"column {name!r} is not in the reference data")
    work = [(name, kind, reference[name], methods.get(name)) for name, kind in kinds.items()]
    columns = dict(zip(kinds, per_column(lambda args: _profile_column(*args), work), strict=True))
    profile = ReferenceProfile(columns=columns, rows=len(reference), fingerprint=fingerprint)
    if not fingerprint:
        profile = ReferenceProfile(columns=columns, rows=len(reference), fingerprint=_content_fingerprint(profile))
    return profile


def per_column(fn: Callable[[Any], T], items: list[Any]) -> list[T]:
    """`fn` over columns on a thread per core: sorts, sums and copies of big arrays release the GIL."""
    workers = min(len(items), os.cpu_count() or 1, 4)
    if workers < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def _profile_column(name: str, kind: str, series: pd.Series, method: str | None) -> ColumnProfile:
    import pandas as pd

    if kind == NUMERIC:
        if not pd.api.types.is_numeric_dtype(series.dtype):
            raise ValueError(f"column {name!r} is declared numeric but has dtype {series.dtype}")
        values = numeric_values(series)
        values.sort()
        rows, nunique = values.size, int(np.count_nonzero(values[1:] != values[:-1])) + (values.size > 0)
        extra = {"values": values, "std": float(np.std(values)) if rows else 0.0,
                 "integer": is_integer(series)}
    else:
        counts = clean(series).value_counts(sort=False, dropna=True)
        counts = counts[counts > 0]
        categories = tuple(v.item() if hasattr(v, "item") else v for v in counts.index)
        rows, nunique = int(counts.sum()), len(categories)
        extra = {"categories": categories, "counts": counts.to_numpy(dtype=np.int64)}
    if rows == 0:
        raise ValueError(f"column {name!r} has no values in the reference data")
    chosen = method or default_method(kind, rows, nunique)
    get_method(chosen, kind, name)
    return ColumnProfile(name=name, kind=kind, method=chosen, auto=method is None, rows=rows, nunique=nunique,
                         **extra)


def numeric_values(series: pd.Series) -> np.ndarray:
    """Finite float64 values of a column (a fresh array: callers may sort it in place)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:  # values of the wrong type are counted by the quality signal; drift ignores them
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(values)
    return values if finite.all() else values[finite]


def is_integer(series: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_integer_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def clean(series: pd.Series) -> pd.Series:
    """evidently drops NaN and +-inf before every test."""
    import pandas as pd

    if pd.api.types.is_float_dtype(series.dtype):
        return series[np.isfinite(series.to_numpy())]
    return series.dropna()


def _content_fingerprint(profile: ReferenceProfile) -> str:
    digest = hashlib.sha256()
    for col in profile.columns.values():
        digest.update(json.dumps([col.name, col.kind, col.method, col.rows, list(map(repr, col.categories))]).encode())
        for array in (col.values, col.counts):
            if array is not None:
                digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()[:32]


class ProfileCache:
    """Profiles on disk, keyed by (fingerprint, kinds, methods): a check never rebuilds the reference statistics."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, fingerprint: str, kinds: Mapping[str, str], methods: Mapping[str, str] | None = None) -> Path:
        if not fingerprint:
            raise ValueError("fingerprint: a cached profile needs the reference's fingerprint")
        key = json.dumps([FORMAT, fingerprint, sorted(kinds.items()), sorted((methods or {}).items())])
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", fingerprint)[:40]
        return self.root / f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"

    def get_or_build(self, fingerprint: str, load_reference: Callable[[], pd.DataFrame], kinds: Mapping[str, str],
                     methods: Mapping[str, str] | None = None) -> ReferenceProfile:
        # A damaged or older cached file is logged and rebuilt from the reference (core.files.cached).
        return cached(self.path(fingerprint, kinds, methods), ReferenceProfile.load,
                      lambda: build_profile(load_reference(), kinds, methods=methods, fingerprint=fingerprint),
                      ReferenceProfile.save)


_ID_NAME = re.compile(r"(^|_)(id|uuid|guid|key)$|^(time|timestamp|date|datetime|ts)$|_(at|time|ts|timestamp)$", re.I)
INTEGER_CARDINALITY_LIMIT = 10  # evidently's limit: integer columns with fewer distinct values are categorical


def infer_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Kinds as evidently infers column types; ids, timestamps, free text and empty columns are left out."""
    kinds = {}
    for name in frame.columns:
        kind = _infer_kind(str(name), frame[name])
        if kind:
            kinds[str(name)] = kind
    return kinds


def _infer_kind(name: str, series: pd.Series) -> str | None:
    import pandas as pd

    dtype = series.dtype
    if _ID_NAME.search(name) or pd.api.types.is_datetime64_any_dtype(dtype) or series.count() == 0:
        return None
    if pd.api.types.is_bool_dtype(dtype):
        return CATEGORICAL
    if isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_object_dtype(dtype.categories.dtype):
        return CATEGORICAL
    if pd.api.types.is_float_dtype(dtype):
        return NUMERIC
    if pd.api.types.is_integer_dtype(dtype):
        return CATEGORICAL if series.nunique() <= INTEGER_CARDINALITY_LIMIT else NUMERIC
    values = series.dropna()  # strings, as objects or as categories (the check command reads them so)
    if isinstance(values.iloc[0], str) and isinstance(values.iloc[-1], str):
        return None if series.nunique() > series.count() * 0.5 else CATEGORICAL  # free text: not supported
    return None

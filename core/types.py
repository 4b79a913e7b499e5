"""Plain domain values shared by every area. Frozen, JSON-friendly, no heavy imports."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pandas stays out of the cold-start path
    import pandas as pd


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: times are UTC and timezone-aware")
    return moment.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """ISO 8601 / RFC 3339 with a timezone ('Z' or an offset) -> aware UTC datetime; ValueError otherwise.

    A time whose conversion to UTC leaves the calendar (year 1 with a positive offset) is a ValueError too.
    """
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except OverflowError as exc:
        raise ValueError(f"{text!r} is outside the range of dates") from exc


def iso(moment: datetime) -> str:
    return utc(moment).isoformat().replace("+00:00", "Z")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: object) -> timedelta:
    """'90s', '15m', '1.5h', '1d', '2w', a number of seconds, or a timedelta -> timedelta (never negative).

    The one duration rule for specs, retrain config and settings; ValueError names what was wrong.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. '90s', '30m', '6h', '7d', '2w')")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 <= seconds <= timedelta.max.total_seconds() / 2:  # NaN fails this too
        raise ValueError(f"not a duration: {value!r} (must be between 0 and about a million years)")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact text parse_duration reads back: 90s, 15m, 6h, 7d, 2w."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class EndpointRef:
    name: str
    deployment: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, order=True)
class Window:
    """A half-open interval [start, end) of request time, UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after start {self.start}")

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def key(self) -> str:
        """Sortable, storage-safe: 20130401T000000Z-20130402T000000Z."""
        fmt = "%Y%m%dT%H%M%SZ"
        return f"{self.start.strftime(fmt)}-{self.end.strftime(fmt)}"

    def to_json(self) -> dict[str, str]:
        return {"start": iso(self.start), "end": iso(self.end)}


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Finding:
    """One evaluator's answer about one thing (a feature, a metric, the dataset)."""

    signal: str  # data_drift | prediction_drift | data_quality | performance | health
    name: str
    statistic: float | None
    threshold: float | None
    breached: bool
    severity: Severity = Severity.INFO
    method: str | None = None
    p_value: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"signal": self.signal, "name": self.name, "statistic": self.statistic,
                "threshold": self.threshold, "breached": self.breached, "severity": self.severity.value,
                "method": self.method, "p_value": self.p_value, "details": dict(self.details)}


@dataclass(frozen=True)
class TelemetryBatch:
    """The requests of one endpoint in one window, one row per request.

    Columns: request_id, time, deployment, model_version, latency_ms, status_code, one column per
    input feature, prediction, score, and label (NaN until ground truth arrived).
    `rejected` counts rows that did not fit the schema, by reason; they are never in `frame`.
    """

    endpoint: EndpointRef
    window: Window
    frame: "pd.DataFrame"
    rejected: Mapping[str, int] = field(default_factory=dict)
    rejected_examples: tuple[Mapping[str, Any], ...] = ()

    @property
    def rows(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class RunRef:
    run_id: str
    backend: str  # local | azureml
    external_id: str | None = None


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    failed_step: str | None = None
    error: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    model: ModelVersion | None = None
    steps: Mapping[str, str] = field(default_factory=dict)  # step -> state


@dataclass(frozen=True)
class TrafficSplit:
    """Deployment name -> percent; always sums to 100 (or is empty for an endpoint with none)."""

    shares: Mapping[str, int]

    def __post_init__(self) -> None:
        total = sum(self.shares.values())
        if self.shares and total != 100:
            raise ValueError(f"traffic must sum to 100, got {dict(self.shares)} = {total}")
        if any(v < 0 for v in self.shares.values()):
            raise ValueError(f"traffic shares cannot be negative: {dict(self.shares)}")

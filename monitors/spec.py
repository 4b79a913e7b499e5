"""Monitor specs: one YAML file per monitored endpoint, validated with pydantic.

Errors name the file, the field path and the line, found by composing the YAML node tree and walking it
along pydantic's error location.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.errors import NotFound, ValidationFailed
from core.types import Severity, format_duration, parse_duration  # noqa: F401 - re-exported

log = logging.getLogger("mlops.monitors")
SIGNALS = ("data_drift", "prediction_drift", "data_quality", "performance", "estimated_performance", "health",
           "generation_health", "answer_quality")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EndpointSpec(_Strict):
    name: str = Field(min_length=1)
    deployment: str | None = None


class ModelSpec(_Strict):
    name: str = Field(min_length=1)


class FeatureSpec(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["numeric", "categorical", "text"]
    method: str | None = None  # an evidently stattest id: ks, wasserstein, psi, ...; text: classifier | mmd
    threshold: float | None = None  # text: the effect floor (AUC for classifier, MMD^2 for mmd)

    @field_validator("method")
    @classmethod
    def _text_method(cls, value: str | None, info) -> str | None:
        if value is not None and info.data.get("kind") == "text" and value not in ("classifier", "mmd"):
            raise ValueError(f"a text feature's method is classifier or mmd, not {value!r}")
        return value


class TextDriftSettings(_Strict):
    """Embedding drift of text features (monitors.text): see docs/text.md."""

    method: Literal["classifier", "mmd"] = "classifier"  # domain classifier on embeddings, or MMD
    effect_floor: float | None = Field(None, ge=0)  # None: AUC 0.6 (classifier) or MMD^2 0.01
    resamples: int = Field(40, ge=10)  # no-drift windows drawn from the reference per window size
    max_rows: int = Field(1000, ge=20)  # window texts embedded per check (a seeded sample beyond)
    max_reference_rows: int = Field(3000, ge=40)
    topics: int | None = Field(None, ge=1, le=50)  # None: from the reference size
    examples: int = Field(3, ge=0, le=20)  # typical texts in the evidence; 0 keeps raw text out of reports
    descriptors: bool = True  # length, words, out-of-vocabulary and non-letter shares as numeric features


class PredictionSpec(_Strict):
    column: str = Field(min_length=1)
    kind: Literal["score", "class", "value"]


class LabelSpec(_Strict):
    column: str = Field(min_length=1)
    # "classification" (the older name) reads as binary with a score prediction, else multiclass
    task: Literal["binary", "multiclass", "regression"]
    lag: Duration = timedelta(0)  # labels arrive this long after the request; performance looks back by it


class ReferenceSpec(_Strict):
    uri: str = Field(min_length=1)  # a path relative to the spec file, or azureml:name:version


class WindowSpec(_Strict):
    size: Duration = timedelta(days=1)
    lateness: Duration = timedelta(0)  # how long after a window's end its telemetry is complete
    min_rows: int = Field(30, ge=1)  # a window with fewer rows is "insufficient data" for every signal, not a verdict
    origin: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    # above this many rows, drift is computed from summaries (monitors.big_windows); None: the app's setting
    summary_above: int | None = Field(None, ge=1)

    @field_validator("size")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("window size must be positive")
        return value

    @field_validator("origin")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DataDriftSignal(_Strict):
    enabled: bool = True
    policy: Literal["calibrated", "evidently"] = "calibrated"
    fwer: float = Field(0.01, gt=0, lt=1)  # family-wise false alarm rate across features (calibrated)
    effect_floor: float | None = Field(None, ge=0)  # one floor for every feature; None: the engine's defaults
    effect_floors: dict[str, float] = Field(default_factory=dict)  # per feature, overrides effect_floor
    share: float = Field(0.5, gt=0, le=1)  # evidently policy: share of drifted features that means drift
    resamples: int = Field(200, ge=20)
    text: TextDriftSettings = TextDriftSettings()


class PredictionDriftSignal(_Strict):
    enabled: bool = True
    policy: Literal["calibrated", "threshold"] = "calibrated"  # threshold: the method's raw threshold decides
    fwer: float = Field(0.01, gt=0, lt=1)
    effect_floor: float | None = Field(None, ge=0)  # None: the drift engine's default for the effect's method
    method: str | None = None
    threshold: float | None = None


class DataQualitySignal(_Strict):
    enabled: bool = True
    # calibrated: each rate against the reference's own windows (family-wise `fwer`) and above a floor
    # (effect_floor, or per rate: missing/out-of-range/unseen 0.05, type errors 0.01); threshold: max_* decide
    policy: Literal["calibrated", "threshold"] = "calibrated"
    fwer: float = Field(0.01, gt=0, lt=1)
    effect_floor: float | None = Field(None, ge=0, le=1)
    max_missing_rate: float = Field(0.1, ge=0, le=1)
    max_type_error_rate: float = Field(0.01, ge=0, le=1)
    max_out_of_range_rate: float = Field(0.05, ge=0, le=1)
    max_unseen_rate: float = Field(0.05, ge=0, le=1)
    max_rejected_rate: float = Field(0.01, ge=0, le=1)
    allow_extra_columns: bool = True


class PerformanceSignal(_Strict):
    enabled: bool = True
    metric: Literal["auc", "accuracy", "f1", "macro_f1", "log_loss", "mae", "rmse"] | None = None
    min: float | None = None  # floor for higher-is-better metrics (auc, accuracy, f1, macro_f1)
    max: float | None = None  # ceiling for lower-is-better metrics (log_loss, mae, rmse)
    # effect floor of a drop from the reference's own performance (signals/performance.py allowed_drop): in the
    # metric's units for auc/accuracy/f1/macro_f1, relative for log_loss/mae/rmse; default 0.03 or 5%
    max_drop: float | None = Field(None, ge=0)
    min_labels: int = Field(30, ge=1)
    # judged on the labelled traffic of this long a period ending with the lagged window (default: the window):
    # a week pools days whose labels are too few or too noisy to judge one by one
    horizon: Duration | None = None


class EstimatedPerformanceSignal(_Strict):
    """Label-free: expected performance from the calibrated scores of a binary classifier (CBPE)."""

    enabled: bool = True
    metric: Literal["auc", "accuracy"] | None = None  # default: auc
    max_drop: float | None = Field(None, ge=0)  # effect floor, as for performance (default 0.03 AUC/accuracy)
    min_rows: int = Field(100, ge=1)


class HealthSignal(_Strict):
    enabled: bool = True
    # calibrated: a limit is breached only when the window shows it beyond its sampling noise (one-sided
    # binomial test at `alpha`); threshold: the window's raw rate or p95 against the limit
    policy: Literal["calibrated", "threshold"] = "calibrated"
    alpha: float = Field(0.001, gt=0, lt=1)
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_p95_latency_ms: float = Field(1000.0, gt=0)


class GenerationHealthSignal(_Strict):
    """A generative endpoint's tokens, latency, errors, refusals, truncations and cost (monitors.signals.generative):
    each against its own runs in the reference, plus the optional limits. Silent for windows without generation."""

    enabled: bool = True
    alpha: float = Field(0.001, gt=0, lt=1)
    min_increase: float = Field(0.25, ge=0)  # tokens, latency, cost: relative increase over the reference
    min_rate_increase: float = Field(0.02, ge=0, le=1)  # refusal, truncation, error rates: absolute increase
    price_per_1k_tokens_in: float | None = Field(None, ge=0)  # the deployment's prices: cost per 1,000 requests
    price_per_1k_tokens_out: float | None = Field(None, ge=0)
    max_cost_per_1k_requests: float | None = Field(None, gt=0)  # a budget: breaches on its own
    max_tokens_per_request: float | None = Field(None, gt=0)  # output tokens
    max_refusal_rate: float | None = Field(None, ge=0, le=1)
    max_p95_latency_ms: float | None = Field(None, gt=0)


class JudgeSpec(_Strict):
    """An Azure OpenAI deployment that judges answers (Microsoft Entra ID: the app's identity, no key in config)."""

    endpoint: str = Field(pattern=r"^https?://")
    deployment: str = Field(min_length=1)
    api_version: str = "2024-10-21"
    sample: float = Field(0.1, gt=0, le=1)  # share of answers judged
    calls_per_minute: float = Field(60.0, gt=0)
    max_calls: int = Field(200, ge=1)  # per check and metric
    max_tokens: int = Field(400_000, ge=1)  # per check: the cost cap
    timeout_s: float = Field(60.0, gt=0)


class AnswerQualitySignal(_Strict):
    """Scores of generated answers (azure-ai-evaluation), each window's mean against the reference's runs."""

    enabled: bool = False  # on for a generative endpoint whose reference holds responses (and ground truth)
    metrics: list[str] = ["f1", "similarity"]  # f1 rouge bleu gleu meteor similarity; judges: groundedness
    # relevance coherence fluency (need `judge`)
    min_drop: float = Field(0.05, ge=0, le=1)  # share of the metric's scale (0-1 scores, 1-5 judges)
    alpha: float = Field(0.001, gt=0, lt=1)
    judge: JudgeSpec | None = None

    @field_validator("metrics")
    @classmethod
    def _known(cls, metrics: list[str]) -> list[str]:
        known = {"f1", "rouge", "bleu", "gleu", "meteor", "similarity", "groundedness", "relevance", "coherence",
                 "fluency"}
        unknown = [m for m in metrics if m not in known]
        if unknown:
            raise ValueError(f"unknown answer metrics {unknown}; known: {sorted(known)}")
        return metrics

    @model_validator(mode="after")
    def _judge_needed(self) -> "AnswerQualitySignal":
        judged = [m for m in self.metrics if m in ("groundedness", "relevance", "coherence", "fluency")]
        if judged and self.judge is None:
            raise ValueError(f"metrics {judged} need a judge deployment (signals.answer_quality.judge)")
        return self


class Signals(_Strict):
    data_drift: DataDriftSignal = DataDriftSignal()
    prediction_drift: PredictionDriftSignal = PredictionDriftSignal()
    data_quality: DataQualitySignal = DataQualitySignal()
    performance: PerformanceSignal = PerformanceSignal()
    estimated_performance: EstimatedPerformanceSignal = EstimatedPerformanceSignal()
    health: HealthSignal = HealthSignal()
    generation_health: GenerationHealthSignal = GenerationHealthSignal()
    answer_quality: AnswerQualitySignal = AnswerQualitySignal()


class AlertSpec(_Strict):
    """Hysteresis: an incident opens after `consecutive` breaching windows in a row (N) and resolves after
    `resolve_after` clean windows in a row (M >= N); one incident per monitor episode, signals as facets."""

    consecutive: int = Field(2, ge=1)  # breaching windows in a row before an incident opens
    resolve_after: int = Field(3, ge=1)  # clean windows in a row before it resolves
    cooldown: Duration = timedelta(0)  # after a resolution, no new incident for this long
    digest: bool = False  # a daily digest of incident updates (signals joining, severity rising)
    severity: dict[Literal["data_drift", "prediction_drift", "data_quality", "performance", "estimated_performance",
                           "health", "generation_health", "answer_quality", "check_failed"], Severity] = Field(
        default_factory=dict)

    @model_validator(mode="after")
    def _hysteresis(self) -> "AlertSpec":
        if self.resolve_after < self.consecutive:
            raise ValueError(f"resolve_after ({self.resolve_after}) must be at least consecutive "
                             f"({self.consecutive}): an incident must not resolve faster than it opens")
        return self

    def severity_of(self, signal: str) -> Severity:
        default = Severity.CRITICAL if signal in ("health", "performance", "check_failed") else Severity.WARNING
        return self.severity.get(signal, default)  # type: ignore[call-overload]


class RetrainSpec(_Strict):
    on_drift: bool = False


class DefaultSource(_Strict):
    """The app's telemetry: the local store, or Log Analytics when LOG_ANALYTICS_WORKSPACE_ID is set."""

    kind: Literal["default"] = "default"


class LabelTableSpec(_Strict):
    path: str = Field(min_length=1)  # a .parquet/.csv file or a folder of them, in the same container or folder
    id_column: str = "correlationid"
    label_column: str = "label"


class DataCollectorSource(_Strict):
    """Azure ML's data collector files (the `Collector`'s model_inputs/model_outputs JSON lines) in Blob Storage,
    read with the app's identity; or the same layout in a local folder (relative to the spec file)."""

    kind: Literal["azureml_data_collector"]
    account_url: str | None = None  # https://<account>.blob.core.windows.net
    container: str | None = None  # the workspace blob store's container (azureml-blobstore-<guid>) or your own
    folder: str | None = None
    path: str = "modelDataCollector"  # the datastore path the collections write under
    inputs: str = "model_inputs"
    outputs: str = "model_outputs"
    rolling: Literal["hour", "day"] = "hour"  # the deployment's data_collector.rolling_rate
    id_column: str | None = None  # a logged input column holding your request id (joins labels); default the
    labels: LabelTableSpec | None = None  # collector's correlationid

    @model_validator(mode="after")
    def _one_place(self) -> "DataCollectorSource":
        blob = self.account_url is not None or self.container is not None
        if blob == (self.folder is not None):
            raise ValueError("give either account_url and container (Blob Storage) or folder (a local copy)")
        if blob and not (self.account_url and self.container):
            raise ValueError("Blob Storage needs both account_url and container")
        return self


TelemetrySourceSpec = Annotated[DefaultSource | DataCollectorSource, Field(discriminator="kind")]


class MonitorSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    enabled: bool = True  # false: listed, never scheduled, checks refused (pausing a monitor keeps its history)
    endpoint: EndpointSpec
    model: ModelSpec
    features: list[FeatureSpec] = Field(min_length=1)
    prediction: PredictionSpec | None = None
    label: LabelSpec | None = None
    reference: ReferenceSpec
    window: WindowSpec = WindowSpec()
    schedule: str | None = None  # NCRONTAB (six fields); None: the app-wide CHECK_SCHEDULE
    signals: Signals = Signals()
    alert: AlertSpec = AlertSpec()
    retrain: RetrainSpec = RetrainSpec()
    telemetry: TelemetrySourceSpec = DefaultSource()  # where the endpoint's telemetry is read from
    _source: Path | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _task_alias(cls, doc: Any) -> Any:
        label = doc.get("label") if isinstance(doc, dict) else None
        if isinstance(label, dict) and label.get("task") == "classification":
            prediction = doc.get("prediction")
            kind = prediction.get("kind") if isinstance(prediction, dict) else None
            doc = {**doc, "label": {**label, "task": "binary" if kind in (None, "score") else "multiclass"}}
        return doc

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature names must be unique; repeated: {', '.join(dupes)}")
        return features

    @field_validator("schedule")
    @classmethod
    def _ncrontab(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 6:
            raise ValueError(f"schedule must be NCRONTAB with six fields (sec min hour day month dow): {value!r}")
        return value

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def base_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    @property
    def kinds(self) -> dict[str, str]:
        return {f.name: f.kind for f in self.features}

    def schedule_entry(self):
        """This monitor's window grid, as the timer's scheduler takes it."""
        from monitors.schedule import MonitorSchedule

        return MonitorSchedule.of(self)


def parse_spec(text: str, source: str | Path = "<spec>") -> MonitorSpec:
    """YAML text -> MonitorSpec; any problem raises ValidationFailed naming source, field and line."""
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ValidationFailed(f"{source}:{line} not valid YAML: {exc}", field=None) from exc
    if not isinstance(raw, dict):
        raise ValidationFailed(f"{source}: line 1: a monitor spec must be a YAML mapping", field=None)
    try:
        spec = MonitorSpec.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, node, source) from exc
    if isinstance(source, Path):
        spec._source = source.resolve()
    return spec


def load_spec(path: str | Path) -> MonitorSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"{path}: cannot read spec: {exc.strerror}", field=None) from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path}: a spec is UTF-8 YAML text; byte {exc.start} is not UTF-8", field=None) from exc
    return parse_spec(text, path)


def _explain(exc: ValidationError, node: yaml.Node | None, source: str | Path) -> ValidationFailed:
    lines = []
    first_field = None
    for error in exc.errors():
        loc = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p)]  # drop union tags
        field = ".".join(str(p) for p in loc) or "<root>"
        first_field = first_field or field
        lines.append(f"{source}: line {line_of(node, loc)}: {field}: {error['msg']}")
    return ValidationFailed("\n".join(lines), field=first_field)


def line_of(node: yaml.Node | None, loc: list[Any]) -> int:
    """1-based line of the deepest node along `loc` (a missing key points at its parent mapping)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


class SpecRepository:
    """The monitor specs in one folder (*.yaml, *.yml), by monitor name; re-read when files change.

    A broken file does not stop the other monitors: it is left out, logged, and kept in `errors`, and
    asking for a monitor that is not found names the broken files.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._seen: dict[Path, tuple[float, MonitorSpec | ValidationFailed]] = {}
        self.errors: dict[Path, str] = {}

    def names(self) -> list[str]:
        return sorted(self._load_all())

    def all(self) -> list[MonitorSpec]:
        specs = self._load_all()
        return [specs[name] for name in sorted(specs)]

    def get(self, name: str) -> MonitorSpec:
        spec = self._load_all().get(name)
        if spec is None:
            # An answer to a caller: monitor and file names only, never the server's folders.
            known = ", ".join(sorted(self._load_all())[:20]) or "none"
            broken = "; ".join(e.splitlines()[0].replace(str(p), p.name) for p, e in sorted(self.errors.items()))
            raise NotFound(f"no monitor {name!r} (known: {known})" + (f" (broken specs: {broken})" if broken
                                                                        else ""))
        return spec

    def _load_all(self) -> dict[str, MonitorSpec]:
        by_name: dict[str, MonitorSpec] = {}
        self.errors = {}
        for path in sorted([*self.directory.glob("*.yaml"), *self.directory.glob("*.yml")]):
            spec = self._load(path)
            if isinstance(spec, ValidationFailed):
                self.errors[path] = str(spec)
            elif spec.name in by_name:
                self.errors[path] = f"{path}: monitor name {spec.name!r} is already used by another spec"
            else:
                by_name[spec.name] = spec
        for path, error in self.errors.items():
            log.error("monitor spec %s left out: %s", path.name, error)
        return by_name

    def _load(self, path: Path) -> MonitorSpec | ValidationFailed:
        mtime = path.stat().st_mtime
        cached = self._seen.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            spec: MonitorSpec | ValidationFailed = load_spec(path)
        except ValidationFailed as exc:
            spec = exc
        self._seen[path] = (mtime, spec)
        return spec

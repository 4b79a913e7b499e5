"""App settings from the environment (Functions app settings, local.settings.json, or the shell).

Read only by bootstrap. Each Azure adapter is chosen when its setting is present; otherwise the
embedded default runs. Identity-based connections only: no keys or connection strings here.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.types import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    data_dir: Path = Field(Path(".local"), alias="MLOPS_DATA_DIR",
                           description="Folder of the embedded defaults: queue, state, telemetry, registry.")
    monitors_dir: Path = Field(Path("monitors/examples"), alias="MLOPS_MONITORS_DIR",
                               description="Folder of monitor spec YAML files, one per monitored endpoint.")
    check_schedule: str = Field("0 */5 * * * *", alias="CHECK_SCHEDULE")
    track_schedule: str = Field("30 * * * * *", alias="TRACK_SCHEDULE")
    clock: str = Field("real", alias="MLOPS_CLOCK", description="real, or sim:START[@SPEED] for simulated time.")
    instance: str = Field("local", alias="WEBSITE_INSTANCE_ID")
    # Channel URLs hold tokens: secret values (never in a repr or a log line); in Azure, Key Vault references.
    notify_urls: SecretStr | None = Field(None, alias="MLOPS_NOTIFY_URLS",
                                          description="apprise URLs (Teams, Slack, email, PagerDuty ...), "
                                                      "separated by spaces or commas.")
    webhook_url: SecretStr | None = Field(None, alias="MLOPS_WEBHOOK_URL")
    webhook_format: str = Field("json", alias="MLOPS_WEBHOOK_FORMAT")
    retrain_config: Path | None = Field(None, alias="MLOPS_RETRAIN_CONFIG",
                                        description="Optional YAML of retrain policy, gate and canary settings.")
    environment: str = Field("local", alias="MLOPS_ENVIRONMENT")
    local_deployment: Path | None = Field(None, alias="MLOPS_LOCAL_DEPLOYMENT",
                                          description="Optional YAML of the local endpoint's first deployment "
                                                      "(scoring script, environment variables, data collector).")

    # Azure adapters: each is used when its setting is present.
    servicebus_namespace: str | None = Field(None, alias="ServiceBusConnection__fullyQualifiedNamespace")
    tables_endpoint: str | None = Field(None, alias="MLOPS_TABLES_ENDPOINT")
    blob_endpoint: str | None = Field(None, alias="MLOPS_BLOB_ENDPOINT")
    log_analytics_workspace_id: str | None = Field(None, alias="LOG_ANALYTICS_WORKSPACE_ID")
    azureml_subscription_id: str | None = Field(None, alias="AZUREML_SUBSCRIPTION_ID")
    azureml_resource_group: str | None = Field(None, alias="AZUREML_RESOURCE_GROUP")
    azureml_workspace: str | None = Field(None, alias="AZUREML_WORKSPACE")

    # The service's own telemetry (core.observability): Application Insights when the connection string is set.
    appinsights_connection_string: str | None = Field(None, alias="APPLICATIONINSIGHTS_CONNECTION_STRING")
    appinsights_authentication: str | None = Field(None, alias="APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    otel_export: str = Field("auto", alias="MLOPS_OTEL_EXPORT", description="auto, azure, log, console or off")

    metrics_region: str | None = Field(None, alias="MLOPS_METRICS_REGION", description=(
        "Region of the Azure ML workspace: each check's results become Azure Monitor custom metrics on its "
        "online endpoint (needs the AZUREML_* settings)."))

    evidently_workspace: Path | None = Field(None, alias="MLOPS_EVIDENTLY_WORKSPACE", description=(
        "A folder: each check's window also becomes an evidently snapshot there (`evidently ui --workspace`)."))

    max_body_bytes: int = Field(64 * 1024, alias="MLOPS_MAX_BODY_BYTES")
    max_window_span: Duration = Field(timedelta(days=92), alias="MLOPS_MAX_WINDOW_SPAN",
                                      description="Longest window POST /api/checks and /api/retrain accept.")
    check_max_attempts: int = Field(3, ge=1, alias="MLOPS_CHECK_MAX_ATTEMPTS",
                                    description="Failed attempts (not outages) before a window is recorded failed.")
    check_lease: Duration = Field(timedelta(minutes=10), alias="MLOPS_CHECK_LEASE",
                                  description="How long a running check holds its window (functionTimeout).")
    check_request_ttl: Duration = Field(timedelta(minutes=15), alias="MLOPS_CHECK_REQUEST_TTL",
                                        description="After this, an unanswered check request is sent again.")
    summary_above_rows: int = Field(5_000_000, ge=0, alias="MLOPS_SUMMARY_ABOVE_ROWS", description=(
        "Windows with more requests are checked from mergeable summaries (drift, with error bounds) and a "
        "uniform sample (other signals) instead of all their rows; 0: always all rows. A spec's "
        "window.summary_above wins."))
    max_windows_per_tick: int = Field(24, ge=1, alias="MLOPS_MAX_WINDOWS_PER_TICK",
                                      description="Catch-up bound: windows one monitor requests per timer tick.")
    duplicate_window_s: int = Field(600, alias="MLOPS_DUPLICATE_WINDOW_S")

    @field_validator("retrain_config", "evidently_workspace", "local_deployment", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """App settings cannot be absent in Bicep or local.settings.json, only empty: empty means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir", "monitors_dir", "retrain_config", "evidently_workspace", "local_deployment",
                     mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """Relative folders are resolved once, against the directory the app starts in: code that later runs
        elsewhere (the local pipeline runner's steps, forked drivers) then sees the same folders."""
        return value.expanduser().absolute() if value is not None else None

    @model_validator(mode="after")
    def _complete_groups(self) -> "Settings":
        """A half-configured Azure adapter is a start-up error naming the missing setting."""
        group = {"AZUREML_SUBSCRIPTION_ID": self.azureml_subscription_id,
                 "AZUREML_RESOURCE_GROUP": self.azureml_resource_group, "AZUREML_WORKSPACE": self.azureml_workspace}
        given = [k for k, v in group.items() if v]
        if given and len(given) != len(group):
            missing = ", ".join(k for k, v in group.items() if not v)
            raise ValueError(f"Azure ML is half configured: {', '.join(given)} set but {missing} missing")
        if self.webhook_format not in ("json", "teams", "slack"):
            raise ValueError(f"MLOPS_WEBHOOK_FORMAT must be json, teams or slack, not {self.webhook_format!r}")
        return self

    def notify_url_list(self) -> list[str]:
        text = self.notify_urls.get_secret_value() if self.notify_urls else ""
        return [u for u in text.replace(",", " ").split() if u]

    def webhook(self) -> str | None:
        return (self.webhook_url.get_secret_value() or None) if self.webhook_url else None

    @property
    def azureml_configured(self) -> bool:
        return bool(self.azureml_subscription_id and self.azureml_resource_group and self.azureml_workspace)

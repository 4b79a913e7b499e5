"""Telemetry sources: the local SQLite store and Azure Monitor Logs, both ending in one columnar converter."""

"""Monitors: specs, telemetry windows, reference profiles, evaluators, alert policy and the check handler."""

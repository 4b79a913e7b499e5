"""Retraining and redeployment: pipeline, runners, gate, registry, deployers, local endpoint, handlers."""

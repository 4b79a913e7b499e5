"""Scoring scripts run by Azure ML's inference server (`azmlinfsrv`) in a deployment's environment.

They are entry scripts, loaded by file path: nothing here is imported by the app.
"""

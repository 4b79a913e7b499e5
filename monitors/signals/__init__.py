"""Evaluators: each is fitted once on the reference and then evaluates telemetry windows into Findings.

`fit` returns a separate fitted object, so evaluating before fitting cannot happen.
"""

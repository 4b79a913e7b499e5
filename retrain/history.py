"""A team's labelled history for the backtest: one Parquet file, checked before anything runs.

Bad input is refused with a message naming the file and the column: a missing column, a time column
that does not parse or goes backwards, a target that is missing or has a single class (nothing to learn),
a binary target that is not 0/1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ValidationFailed

TASKS = ("binary", "multiclass", "regression")


class HistoryError(ValidationFailed):
    """The history cannot be backtested; the message names the file and the column."""


@dataclass(frozen=True)
class History:
    path: Path
    frame: Any  # pandas.DataFrame sorted by time, the time column as UTC timestamps
    time_column: str
    target: str
    task: str

    @property
    def start(self) -> Any:
        return self.frame[self.time_column].iloc[0]

    @property
    def end(self) -> Any:
        return self.frame[self.time_column].iloc[-1]


def load_history(path: str | Path, time_column: str, target: str, task: str) -> History:
    import pandas as pd

    path = Path(path)
    if task not in TASKS:
        raise HistoryError(f"--task {task!r}: expected one of {', '.join(TASKS)}", field="task")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{path}: cannot read it as Parquet: {exc}", field="history") from exc
    for column, option in ((time_column, "--time-column"), (target, "--target")):
        if column not in frame.columns:
            raise HistoryError(f"{path}: no column {column!r} ({option}); it has {', '.join(map(str, frame.columns))}",
                               field=column)
    frame = frame.reset_index(drop=True)
    frame[time_column] = _times(frame[time_column], path, time_column)
    _check_target(frame[target], path, target, task)
    return History(path, frame, time_column, target, task)


def _times(column: Any, path: Path, name: str) -> Any:
    import pandas as pd

    try:
        times = pd.to_datetime(column, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise HistoryError(f"{path}: column {name!r} is not a time: {exc}", field=name) from exc
    if times.isna().any():
        row = int(times.isna().to_numpy().argmax())
        raise HistoryError(f"{path}: column {name!r} has no time in row {row} ({column.iloc[row]!r})", field=name)
    backwards = times.diff() < pd.Timedelta(0)
    if backwards.any():
        row = int(backwards.to_numpy().argmax())
        raise HistoryError(f"{path}: column {name!r} is not in time order: row {row} ({times.iloc[row]}) comes "
                           f"before row {row - 1} ({times.iloc[row - 1]}); sort the history by time", field=name)
    if times.iloc[0] == times.iloc[-1]:
        raise HistoryError(f"{path}: column {name!r} spans no time (every row at {times.iloc[0]})", field=name)
    return times


def _check_target(column: Any, path: Path, name: str, task: str) -> None:
    import pandas as pd

    if column.isna().any():
        raise HistoryError(f"{path}: target column {name!r} has {int(column.isna().sum())} missing values",
                           field=name)
    if task == "regression":
        if pd.to_numeric(column, errors="coerce").isna().any():
            raise HistoryError(f"{path}: target column {name!r} is not numeric (task regression)", field=name)
        return
    values = set(column.unique().tolist())
    if len(values) < 2:
        raise HistoryError(f"{path}: target column {name!r} has a single class ({next(iter(values))!r}): "
                           "nothing to learn", field=name)
    if task == "binary" and not values <= {0, 1}:  # True and False equal 1 and 0
        raise HistoryError(f"{path}: target column {name!r} must be 0/1 for task binary, it has "
                           f"{sorted(map(str, values))[:5]} (use --task multiclass)", field=name)

"""A history that cannot be backtested is refused before anything runs, naming the file and the column."""
import pandas as pd
import pytest

from retrain.history import HistoryError, load_history


def write(tmp_path, **columns):
    path = tmp_path / "history.parquet"
    pd.DataFrame(columns).to_parquet(path)
    return path


def test_a_good_history_loads_in_time_order_with_utc_times(tmp_path):
    path = write(tmp_path, t=["2024-01-01", "2024-01-02", "2024-01-02"], y=[0, 1, 0], x=[1.0, 2.0, 3.0])
    history = load_history(path, "t", "y", "binary")
    assert str(history.start) == "2024-01-01 00:00:00+00:00" and history.end.day == 2


@pytest.mark.parametrize(("columns", "args", "field", "words"), [
    ({"t": ["2024-01-01", "2024-01-02"], "y": [0, 1]}, ("when", "y", "binary"), "when", "no column 'when'"),
    ({"t": ["2024-01-01", "2024-01-02"], "y": [0, 1]}, ("t", "label", "binary"), "label", "no column 'label'"),
    ({"t": ["2024-01-02", "2024-01-01"], "y": [0, 1]}, ("t", "y", "binary"), "t", "not in time order"),
    ({"t": ["2024-01-01", "someday"], "y": [0, 1]}, ("t", "y", "binary"), "t", "not a time"),
    ({"t": ["2024-01-01", "2024-01-02"], "y": [1, 1]}, ("t", "y", "binary"), "y", "single class"),
    ({"t": ["2024-01-01", "2024-01-02"], "y": ["a", "a"]}, ("t", "y", "multiclass"), "y", "single class"),
    ({"t": ["2024-01-01", "2024-01-02"], "y": ["a", "b"]}, ("t", "y", "binary"), "y", "must be 0/1"),
    ({"t": ["2024-01-01", "2024-01-02"], "y": ["1.5", "x"]}, ("t", "y", "regression"), "y", "not numeric"),
    ({"t": ["2024-01-01", "2024-01-02"], "y": [0.5, None]}, ("t", "y", "regression"), "y", "missing values"),
])
def test_bad_history_is_refused_naming_the_file_and_the_column(tmp_path, columns, args, field, words):
    path = write(tmp_path, **columns)
    with pytest.raises(HistoryError, match=words) as caught:
        load_history(path, *args)
    assert caught.value.field == field and str(path) in str(caught.value)

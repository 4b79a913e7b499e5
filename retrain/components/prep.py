"""prep: select training rows and the holdout (the most recent labelled window) by a rule.

Rules (see retrain/steps.py RULES_DOC): reference+recent | recent_only | sliding:<days>.
--out_train gets what the team's training command reads (docs/training.md): train.parquet (the declared
features in their declared types, the target, the time column) and schema.json naming them;
--out_holdout gets holdout.parquet, which the training command never sees.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _lib import (
    HOLDOUT_FILE,
    SCHEMA_FILE,
    SUMMARY_FILE,
    TRAIN_FILE,
    InputError,
    check_columns,
    fail,
    feature_frame,
    parse_features,
    parse_task,
    read_table,
    targets,
    time_range,
    write_json,
)


def split(reference: pd.DataFrame, recent: pd.DataFrame | None, rule: str, time_column: str,
          holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    pool = recent if recent is not None and not recent.empty else reference
    times = pd.to_datetime(pool[time_column], utc=True)
    cut = times.max() - pd.Timedelta(days=holdout_days)
    holdout = pool[times > cut]
    if rule == "recent_only":
        if recent is None:
            raise InputError("--rule recent_only needs --recent data")
        train = recent[pd.to_datetime(recent[time_column], utc=True) <= cut]
    elif rule == "reference+recent" or rule.startswith("sliding:"):
        parts = [reference] + ([recent] if recent is not None else [])
        both = pd.concat(parts, ignore_index=True)
        both_times = pd.to_datetime(both[time_column], utc=True)
        keep = both_times <= cut
        if rule.startswith("sliding:"):
            keep &= both_times > cut - pd.Timedelta(days=_days(rule))
        train = both[keep]
    else:
        raise InputError(f"--rule {rule!r}: expected reference+recent, recent_only or sliding:<days>")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def _days(rule: str) -> int:
    try:
        days = int(rule.split(":", 1)[1])
    except ValueError as exc:
        raise InputError(f"--rule {rule!r}: <days> must be an integer") from exc
    if days <= 0:
        raise InputError(f"--rule {rule!r}: <days> must be positive")
    return days


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("reference", "rule", "features", "label", "time_column", "out_train", "out_holdout"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--recent")
    parser.add_argument("--holdout_days", type=int, required=True)
    parser.add_argument("--task", default="binary")
    args = parser.parse_args(argv)
    try:
        features = parse_features(args.features)
        task = parse_task(args.task)
        columns = [*features, args.label, args.time_column]
        reference = read_table(args.reference, "reference")
        if reference is None:
            raise InputError(f"--reference: no Parquet data in {args.reference}")
        check_columns(reference, columns, "reference")
        recent = read_table(args.recent, "recent")
        if recent is not None:
            check_columns(recent, columns, "recent")
            recent = recent[recent[args.label].notna()]
        train, holdout = split(reference[columns], None if recent is None else recent[columns],
                               args.rule, args.time_column, args.holdout_days)
        for frame, what in ((train, "train"), (holdout, "holdout")):
            if frame.empty:
                raise InputError(f"--rule {args.rule!r} leaves no {what} rows")
            targets(frame, args.label, task, what)
        if task != "regression" and train[args.label].nunique() < 2:
            raise InputError(f"--rule {args.rule!r}: target {args.label!r} has a single class in the training rows")
    except InputError as exc:
        fail(exc)
    for frame, out, name in ((train, args.out_train, TRAIN_FILE), (holdout, args.out_holdout, HOLDOUT_FILE)):
        Path(out).mkdir(parents=True, exist_ok=True)
        table = feature_frame(frame, features)
        table[args.label] = frame[args.label]
        table[args.time_column] = pd.to_datetime(frame[args.time_column], utc=True)
        table.to_parquet(Path(out) / name, index=False)
        write_json(Path(out) / SUMMARY_FILE, {"rows": len(frame), "rule": args.rule,
                                              "window": time_range(frame, args.time_column)})
    classes = sorted(train[args.label].unique().tolist()) if task != "regression" else None
    write_json(Path(args.out_train) / SCHEMA_FILE, {
        "features": features, "target": args.label, "time_column": args.time_column, "task": task,
        "classes": classes, "rows": len(train)})
    print(f"prep: {len(train)} training rows, {len(holdout)} holdout rows, rule {args.rule}, task {task}")


if __name__ == "__main__":
    main()

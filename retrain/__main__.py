"""`python -m retrain backtest ...`: see retrain/backtest.py."""
from __future__ import annotations

import sys

COMMANDS = ("backtest",)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m retrain {{{','.join(COMMANDS)}}} ... (--help for each)", file=sys.stderr)
        return 2
    from retrain.backtest import main as backtest

    return backtest(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

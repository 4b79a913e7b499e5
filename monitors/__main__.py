"""`python -m monitors check|init|backfill` (see monitors/cli.py)."""
import sys

from monitors.cli import main

sys.exit(main())

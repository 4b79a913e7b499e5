"""`python -m monitors.text export|nltk-data [--out DIR]`: export the sentence transformer to ONNX once; build
the NLTK data for BLEU, GLEU and METEOR from installed packages (monitors/text/nltk_data.py).

Run it where torch is installed (a build step, `make test`, `make demo-text`); ship the folder with the
Function app and point MLOPS_TEXT_MODEL_DIR at it: checks then need only onnxruntime and tokenizers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitors.text", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="export all-MiniLM-L6-v2 to an ONNX folder (kept if already there)")
    export.add_argument("--out", type=Path, help="folder (default: MLOPS_TEXT_MODEL_DIR or the user cache)")
    data = sub.add_parser("nltk-data", help="assemble the NLTK data BLEU/GLEU/METEOR need from installed packages")
    data.add_argument("--out", type=Path, help="folder (default: {sys.prefix}/share/nltk_data, searched by NLTK)")
    data.add_argument("--wheels", type=Path, help="folder holding the llama-index-core wheel (default: "
                                                  "{sys.prefix}/wheels)")
    args = parser.parse_args(argv)
    if args.command == "nltk-data":
        from monitors.text.nltk_data import build

        for name, outcome in build(args.out, wheels=args.wheels).items():
            print(f"{name}: {outcome}")
        return 0
    from monitors.text.embed import export_onnx

    print(export_onnx(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

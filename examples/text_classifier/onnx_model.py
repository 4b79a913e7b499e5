"""The served side of the text classifier: an MLflow pyfunc model (models-from-code) that runs one ONNX graph.

The graph is the whole classifier (the fine-tuned or frozen all-MiniLM-L6-v2 encoder, mean pooling, the head,
softmax): token ids in, class probabilities out. Serving it needs numpy, pandas, onnxruntime and tokenizers,
not torch. `predict` takes a DataFrame with the text column and answers a 2-D array of class probabilities, one
column per class in `classes` (saved in the model's metadata too, where the product reads it).
Empty, missing or non-string texts are scored as the empty text (counted in `last_bad_inputs`); texts longer
than the model's window are truncated to it, as the encoder was trained.
"""
from __future__ import annotations

import json
import os
from typing import Any

import mlflow.pyfunc
import numpy as np

BATCH = 64


class OnnxTextClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = context.artifacts["classifier"]
        with open(os.path.join(folder, "classifier.json"), encoding="utf-8") as f:
            self.meta = json.load(f)
        self.classes = list(self.meta["classes"])
        self.text_column = self.meta["text_column"]
        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        self.tokenizer.enable_truncation(int(self.meta["max_tokens"]))
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("MLOPS_TEXT_THREADS", "0")) or min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.last_bad_inputs = 0

    # model_input unannotated: MLflow reads a type hint as an input schema and warns on anything but list[...]
    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> np.ndarray:
        column = model_input[self.text_column] if hasattr(model_input, "columns") else model_input
        texts, bad = [], 0
        for value in list(column):
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if not isinstance(value, str) or not value.strip():
                bad += 1
                value = ""
            texts.append(value)
        self.last_bad_inputs = bad
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float64)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")  # similar lengths: little padding
        for start in range(0, len(order), BATCH):
            rows = order[start:start + BATCH]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list[Any]) -> np.ndarray:
        width = max(1, max(len(e.ids) for e in encodings))
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            ids[i, :len(e.ids)] = e.ids
            mask[i, :len(e.ids)] = 1
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


mlflow.models.set_model(OnnxTextClassifier())

"""Text features: sentence embeddings (ONNX), descriptors, embedding drift and the topics that moved.

Nothing here is imported on the tabular path: the text stack (requirements-text.txt) is an extra, and
`import function_app` never loads onnxruntime, tokenizers or torch.
"""
TEXT = "text"

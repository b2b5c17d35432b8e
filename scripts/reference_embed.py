#!/usr/bin/env python3
"""Reference sentence embeddings for all-MiniLM-L6-v2, independent of candle.

The BERT forward pass is written out here in numpy (float64) from the safetensors weights;
tokenization is Hugging Face's `tokenizers` package; pooling is sentence-transformers' (mean
over the attention mask, then L2 normalisation), with its max_seq_length of 256 tokens.
The request may ask for the `[CLS]` state instead of the mean ("pooling": "cls") and for no
normalisation ("normalise": false), as other sentence-transformers folders configure.
(torch is not used: PyPI only serves its ~540 MB CUDA build.)

stdin:  {"model_dir": "...", "texts": ["...", ...], "max_tokens": 256,
         "pooling": "mean" | "cls" (default "mean"), "normalise": true | false (default true)}
stdout: {"tokens": [[id, ...], ...], "embeddings": [[f, ...], ...]}

Used by crates/retrieval/tests/encoder_reference.rs (run with $RALMSPEC_PYTHON).
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    # The exact (erf) GELU of BERT, not the tanh approximation.
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class Bert:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in raw.items()}

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def ln(self, x, name):
        eps = self.cfg["layer_norm_eps"]
        return layer_norm(x, self.w[name + ".weight"], self.w[name + ".bias"], eps)

    def forward(self, ids):
        """Last hidden states (seq × hidden) of one unpadded sequence."""
        w, cfg = self.w, self.cfg
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self.ln(x, "embeddings.LayerNorm")
        heads = cfg["num_attention_heads"]
        hd = cfg["hidden_size"] // heads
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self.linear(x, p + "attention.self." + m).reshape(n, heads, hd).transpose(1, 0, 2)
                for m in ("query", "key", "value")
            )
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * hd)
            x = self.ln(x + self.linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = gelu(self.linear(x, p + "intermediate.dense"))
            x = self.ln(x + self.linear(h, p + "output.dense"), p + "output.LayerNorm")
        return x


def main():
    req = json.load(sys.stdin)
    model_dir = req["model_dir"]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=int(req.get("max_tokens", 256)))
    bert = Bert(model_dir)
    pooling = req.get("pooling", "mean")
    if pooling not in ("mean", "cls"):
        sys.exit(f"unknown pooling {pooling!r}: mean or cls")
    normalise = bool(req.get("normalise", True))
    tokens, embeddings = [], []
    for text in req["texts"]:
        ids = tok.encode(text).ids
        h = bert.forward(np.array(ids))
        e = h.mean(0) if pooling == "mean" else h[0].copy()
        if normalise:
            e /= max(np.linalg.norm(e), 1e-12)
        tokens.append(ids)
        embeddings.append(e.tolist())
    json.dump({"tokens": tokens, "embeddings": embeddings}, sys.stdout)


if __name__ == "__main__":
    main()

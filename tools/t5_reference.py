#!/usr/bin/env python3
"""Independent numpy reference of T5 (v1.1 / flan) reading our converted checkpoint.

Writes tests/golden/flan_t5_small_logits.json: for a few inputs, the encoder input ids, the
decoder input ids, and decoder logits at every position for a fixed set of vocabulary ids plus
each position's top-5. `tests/t5_real.rs` compares the Rust model with it (1e-3 relative).

Run at golden-generation time only (needs numpy and tokenizers), never in CI:
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers
    /tmp/ref/bin/python tools/t5_reference.py models/flan-t5-small
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np


def load(path):
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    assert meta.get("format") == "metaprompt-t5-int8-v1", meta
    data = raw[8 + n :]
    dt = {"F32": np.float32, "I8": np.int8, "U8": np.uint8}
    t = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        t[name] = np.frombuffer(data[a:b], dtype=dt[h["dtype"]]).reshape(h["shape"])
    out = {}
    for name, v in t.items():
        if name.endswith(".scale") or name.endswith(".zero_point"):
            continue
        if v.dtype == np.float32:
            out[name] = v.astype(np.float64)
        else:
            zp = t[name + ".zero_point"].astype(np.float64)
            out[name] = (v.astype(np.float64) - zp) * float(t[name + ".scale"])
    return out


def bucket(rel, bidirectional, nb, md):
    ret = 0
    if bidirectional:
        nb //= 2
        ret += nb if rel > 0 else 0
        n = abs(rel)
    else:
        n = -min(rel, 0)
    me = nb // 2
    if n < me:
        return ret + n
    large = me + int(math.log(n / me) / math.log(md / me) * (nb - me))
    return ret + min(large, nb - 1)


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


class T5:
    def __init__(self, w, cfg):
        self.w, self.c = w, cfg

    def pos_bias(self, prefix, q, k, bidi):
        table = self.w[f"{prefix}.relative_attention_bias.weight"]  # [buckets, heads]
        c = self.c
        idx = np.array([[bucket(j - i, bidi, c["relative_attention_num_buckets"], c["relative_attention_max_distance"]) for j in range(k)] for i in range(q)])
        return table[idx].transpose(2, 0, 1)  # [heads, q, k]

    def attn(self, p, x, kv, bias):
        h, dk = self.c["num_heads"], self.c["d_kv"]
        q = (x @ self.w[f"{p}.q.weight"].T).reshape(x.shape[0], h, dk).transpose(1, 0, 2)
        k = (kv @ self.w[f"{p}.k.weight"].T).reshape(kv.shape[0], h, dk).transpose(1, 0, 2)
        v = (kv @ self.w[f"{p}.v.weight"].T).reshape(kv.shape[0], h, dk).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) + bias  # no 1/sqrt(d_kv) in T5
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(x.shape[0], h * dk)
        return o @ self.w[f"{p}.o.weight"].T

    def ff(self, p, x):
        g = gelu_new(x @ self.w[f"{p}.DenseReluDense.wi_0.weight"].T)
        l = x @ self.w[f"{p}.DenseReluDense.wi_1.weight"].T
        return (g * l) @ self.w[f"{p}.DenseReluDense.wo.weight"].T

    def encode(self, ids):
        c, eps = self.c, self.c["layer_norm_epsilon"]
        h = self.w["shared.weight"][ids]
        bias = self.pos_bias("encoder.block.0.layer.0.SelfAttention", len(ids), len(ids), True)
        for i in range(c["num_layers"]):
            b = f"encoder.block.{i}"
            x = rms(h, self.w[f"{b}.layer.0.layer_norm.weight"], eps)
            h = h + self.attn(f"{b}.layer.0.SelfAttention", x, x, bias)
            h = h + self.ff(f"{b}.layer.1", rms(h, self.w[f"{b}.layer.1.layer_norm.weight"], eps))
        return rms(h, self.w["encoder.final_layer_norm.weight"], eps)

    def decode(self, dec_ids, enc):
        c, eps = self.c, self.c["layer_norm_epsilon"]
        t = len(dec_ids)
        h = self.w["shared.weight"][dec_ids]
        causal = np.where(np.arange(t)[None, :] <= np.arange(t)[:, None], 0.0, -1e9)
        bias = self.pos_bias("decoder.block.0.layer.0.SelfAttention", t, t, False) + causal
        for i in range(c["num_decoder_layers"]):
            b = f"decoder.block.{i}"
            x = rms(h, self.w[f"{b}.layer.0.layer_norm.weight"], eps)
            h = h + self.attn(f"{b}.layer.0.SelfAttention", x, x, bias)
            x = rms(h, self.w[f"{b}.layer.1.layer_norm.weight"], eps)
            h = h + self.attn(f"{b}.layer.1.EncDecAttention", x, enc, 0.0)
            h = h + self.ff(f"{b}.layer.2", rms(h, self.w[f"{b}.layer.2.layer_norm.weight"], eps))
        h = rms(h, self.w["decoder.final_layer_norm.weight"], eps)
        return h @ self.w["lm_head.weight"].T  # untied head: no d_model**-0.5


TEXTS = [
    "translate English to German: The house is wonderful.",
    "Is the following review positive or negative? Review: I loved this movie, it was fantastic.",
    "summarize: The committee met on Tuesday and agreed to double the budget for the city's parks.",
]
PROBE_IDS = list(range(0, 32)) + [5, 19, 229, 644, 1566, 4598, 19250, 32000, 32127]


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "models/flan-t5-small")
    cfg = json.loads((d / "config.json").read_text())
    model = T5(load(d / "model.safetensors"), cfg)
    from tokenizers import Tokenizer  # the checkpoint's own tokenizer.json, truncation off

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    cases = []
    for text in TEXTS:
        enc_ids = tok.encode(text).ids
        enc = model.encode(np.array(enc_ids))
        # The reference's own greedy decode (12 steps at most) gives the decoder inputs.
        dec_ids = [cfg["decoder_start_token_id"]]
        for _ in range(12):
            nxt = int(model.decode(np.array(dec_ids), enc)[-1].argmax())
            if nxt == cfg["eos_token_id"]:
                break
            dec_ids.append(nxt)
        print(text, "->", repr(tok.decode(dec_ids[1:])))
        logits = model.decode(np.array(dec_ids), enc)
        top = np.argsort(-logits, axis=-1)[:, :5]
        cases.append({
            "text": text,
            "encoder_ids": enc_ids,
            "decoder_ids": dec_ids,
            "probe_ids": PROBE_IDS,
            "probe_logits": logits[:, PROBE_IDS].round(6).tolist(),
            "top5_ids": top.tolist(),
            "top5_logits": np.take_along_axis(logits, top, -1).round(6).tolist(),
        })
    out = Path("tests/golden/flan_t5_small_logits.json")
    out.write_text(json.dumps({"generator": "tools/t5_reference.py (numpy, float64)", "cases": cases}, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()

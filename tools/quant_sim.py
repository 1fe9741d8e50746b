#!/usr/bin/python3
"""quant_sim.py - simulates int8 quantization schemes on a checkpoint and
reports the logit error each one causes against unquantized weights.

Measurement tool behind the int8 design in model/weights.h: every weight
matrix product of the Llama forward pass (tests/reference/llama_ref.py's
math) is replaced by fake quantization (quantize, dequantize, multiply in
float), so a scheme's fidelity can be judged before any kernel exists.

    quant_sim.py --model DIR [--f32] [--seqs N --len T | IDS...] SCHEME...

SCHEME: comma-separated key=value, e.g. w=pc,a=tok,head=q,emb=q
  w    weights: pc (symmetric per output channel, max|row|/127), gN (per
       group of N input columns), none
       pcB (B bits per output channel, e.g. pc9),
  a    activations (per token): tok (symmetric), tokB (B bits), asym (u8 with a zero point),
       bf16 (rounded to bf16),
       gN (per group of N columns), res (two int8 terms: x ~ s q1 + s/254 q2),
       none
  head lm_head: q (as w/a), bf16 (weights rounded to bf16, f32 activations), none
  emb  embedding rows: q (as w), bf16, none
  only matrix kinds quantized (others exact): any of e,qkv,o,gu,d,h joined by +
  wide KINDS:MODE, weights of those kinds in another mode (wide=qkv+o:pc10)
Prints per scheme the worst relative logit error, max|sim - ref| / (max - min
of ref), over the sequences. --f32 computes in float32 and reads the
checkpoint lazily, layer by layer (for the full-shape 1B fixture).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
from llama_ref import inv_freqs  # noqa: E402


class Lazy:
    """name -> array, read from the safetensors files on access."""

    def __init__(self, model_dir, dtype):
        self.dtype, self.where = dtype, {}
        single = os.path.join(model_dir, "model.safetensors")
        files = [single] if os.path.exists(single) else sorted(set(json.load(open(os.path.join(
            model_dir, "model.safetensors.index.json")))["weight_map"].values()))
        for f in files:
            path = os.path.join(model_dir, f)
            with open(path, "rb") as fh:
                (hlen,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(hlen))
            mm = np.memmap(path, dtype=np.uint8, mode="r")
            for name, info in header.items():
                if name != "__metadata__":
                    self.where[name] = (mm, 8 + hlen, info)

    def __contains__(self, name):
        return name in self.where

    def __getitem__(self, name):
        mm, base, info = self.where[name]
        s, e = info["data_offsets"]
        raw = mm[base + s:base + e]
        dt = info["dtype"]
        if dt == "BF16":
            a = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            a = raw.view("<f2")
        else:
            a = raw.view("<f4")
        return a.astype(self.dtype).reshape(info["shape"])


def bf16(a):
    """Round to bf16 (nearest even), back in a's dtype."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(a.dtype)


def q_sym(x, axis_groups, qmax=127):
    """Symmetric fake quantization (levels -qmax..qmax) of the last axis in
    groups of g (0: the whole axis)."""
    sh = x.shape
    g = axis_groups or sh[-1]
    xr = x.reshape(sh[:-1] + (sh[-1] // g, g))
    amax = np.abs(xr).max(axis=-1, keepdims=True)
    s = np.where(amax > 0, amax / qmax, 1.0)
    return (np.clip(np.rint(xr / s), -qmax, qmax) * s).reshape(sh)


def q_act(x, mode):
    if mode == "none":
        return x
    if mode == "tok":
        return q_sym(x, 0)
    if mode == "bf16":                      # rounded to bf16 (the bf16 precision's hi)
        return bf16(x)
    if mode.startswith("tok"):              # tokB: B-bit symmetric per token
        return q_sym(x, 0, 2 ** (int(mode[3:]) - 1) - 1)
    if mode.startswith("g"):
        return q_sym(x, int(mode[1:]))
    if mode == "asym":
        lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
        s = np.where(hi > lo, (hi - lo) / 255.0, 1.0)
        z = np.rint(-lo / s)
        return (np.clip(np.rint(x / s) + z, 0, 255) - z) * s
    if mode == "res":
        amax = np.abs(x).max(axis=-1, keepdims=True)
        s = np.where(amax > 0, amax / 127.0, 1.0)
        q1 = np.clip(np.rint(x / s), -127, 127)
        s2 = s / 254.0
        q2 = np.clip(np.rint((x - q1 * s) / s2), -127, 127)
        return q1 * s + q2 * s2
    raise ValueError(mode)


def q_w(w, mode):
    if mode == "none":
        return w
    if mode == "pc":
        return q_sym(w, 0)
    if mode.startswith("pc"):               # pcB: B-bit per output channel
        return q_sym(w, 0, 2 ** (int(mode[2:]) - 1) - 1)
    if mode.startswith("g"):
        return q_sym(w, int(mode[1:]))
    if mode == "bf16":
        return bf16(w)
    raise ValueError(mode)


class Scheme:
    def __init__(self, text):
        self.text = text
        kv = dict(p.split("=") for p in text.split(",") if p) if text != "ref" else {}
        self.w, self.a = kv.get("w", "pc"), kv.get("a", "tok")
        self.head, self.emb = kv.get("head", "q"), kv.get("emb", "q")
        self.only = set(kv["only"].split("+")) if "only" in kv else None
        self.wkind = {}                     # wide=KINDS:MODE, e.g. wide=qkv+o:pc10
        if "wide" in kv:
            kinds, mode = kv["wide"].split(":")
            self.wkind = {k: mode for k in kinds.split("+")}
        self.ref = text == "ref"
        self.cache = {}

    def on(self, kind):
        return not self.ref and (self.only is None or kind in self.only)

    def weight(self, W, name, kind, mode, cache):
        if not self.on(kind):
            return W[name]
        if cache and name in self.cache:
            return self.cache[name]
        w = q_w(W[name], mode)
        if cache:
            self.cache[name] = w
        return w

    def mm(self, h, W, name, kind, cache):
        if not self.on(kind):
            return h @ W[name].T
        if kind == "h" and self.head != "q":
            w = self.weight(W, name, kind, self.head, cache)
            return h @ w.T
        w = self.weight(W, name, kind, self.wkind.get(kind, self.w), cache)
        return q_act(h, self.a) @ w.T

    def embed(self, W, ids, cache):
        name = "model.embed_tokens.weight"
        if not self.on("e") or self.emb == "none":
            return W[name][ids]
        mode = "bf16" if self.emb == "bf16" else self.wkind.get("e", self.w)
        if cache:
            if name not in self.cache:
                self.cache[name] = q_w(W[name], mode)
            return self.cache[name][ids]
        return q_w(W[name][ids], mode)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def forward(cfg, W, seqs, sc, cache):
    """Last-position logits of equal-length sequences seqs [B, T]."""
    dim, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hd = cfg.get("head_dim") or dim // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    B, T = seqs.shape
    dt = W.dtype if hasattr(W, "dtype") else np.float64
    ang = np.outer(np.arange(T, dtype=np.float64), inv_freqs(cfg, hd))
    cos = np.cos(np.concatenate([ang, ang], -1)).astype(dt)
    sin = np.sin(np.concatenate([ang, ang], -1)).astype(dt)
    mask = np.triu(np.full((T, T), -np.inf, dtype=dt), k=1)
    x = sc.embed(W, seqs.reshape(-1), cache).reshape(B * T, dim)
    tied = "lm_head.weight" not in W or cfg.get("tie_word_embeddings", False)

    def rope(t):
        half = t.shape[-1] // 2
        return t * cos + np.concatenate([-t[..., half:], t[..., :half]], -1) * sin

    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = sc.mm(h, W, p + "self_attn.q_proj.weight", "qkv", cache)
        k = sc.mm(h, W, p + "self_attn.k_proj.weight", "qkv", cache)
        v = sc.mm(h, W, p + "self_attn.v_proj.weight", "qkv", cache)
        q = rope(q.reshape(B, T, nh, hd).transpose(0, 2, 1, 3))
        k = rope(k.reshape(B, T, nkv, hd).transpose(0, 2, 1, 3))
        v = v.reshape(B, T, nkv, hd).transpose(0, 2, 1, 3)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        a = (s @ v).transpose(0, 2, 1, 3).reshape(B * T, nh * hd)
        x = x + sc.mm(a, W, p + "self_attn.o_proj.weight", "o", cache)
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = sc.mm(h, W, p + "mlp.gate_proj.weight", "gu", cache)
        u = sc.mm(h, W, p + "mlp.up_proj.weight", "gu", cache)
        x = x + sc.mm(g / (1 + np.exp(-g)) * u, W, p + "mlp.down_proj.weight", "d", cache)
    last = x.reshape(B, T, dim)[:, -1]
    h = rms_norm(last, W["model.norm.weight"], eps)
    return sc.mm(h, W, "model.embed_tokens.weight" if tied else "lm_head.weight", "h", cache)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--f32", action="store_true")
    ap.add_argument("--seqs", type=int, default=0)
    ap.add_argument("--len", type=int, default=64)
    ap.add_argument("items", nargs="+", help="IDS... then SCHEME...")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    dt = np.float32 if a.f32 else np.float64
    W = Lazy(a.model, dt)
    W.dtype = dt
    ids = [i for i in a.items if i[0].isdigit()]
    schemes = [i for i in a.items if not i[0].isdigit()]
    if a.seqs:
        rng = np.random.default_rng(1)
        batches = [rng.integers(0, min(cfg["vocab_size"], 128000), size=(a.seqs, a.len))]
    else:
        batches = [np.array([[int(t) for t in s.split(",")]]) for s in ids]
    cache = not a.f32
    ref = [forward(cfg, W, b, Scheme("ref"), cache) for b in batches]
    for text in schemes:
        sc = Scheme(text)
        worst = 0.0
        for b, r in zip(batches, ref):
            got = forward(cfg, W, b, sc, cache)
            err = np.abs(got - r).max(axis=-1) / (r.max(axis=-1) - r.min(axis=-1))
            worst = max(worst, float(err.max()))
        print(f"{text:40s} {worst:.3g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

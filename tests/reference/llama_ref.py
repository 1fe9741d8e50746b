#!/usr/bin/python3
"""llama_ref.py - independent float64 numpy reference for Llama 3 logits.

Reads a Hugging Face checkpoint directory (config.json + model.safetensors or
model.safetensors.index.json with shards) without any ML library: the
safetensors header is parsed with struct/json and bf16/f16/f32 tensors are
widened to float64. Runs LlamaForCausalLM's math from scratch for each
sequence (no KV cache, no batching) and produces the last position's logits.

    llama_ref.py --model DIR [--out FILE] [--compare FILE [--tol 1e-3]] IDS...

IDS: one sequence per argument, comma-separated token ids.
--out writes the logits as little-endian float64, vocab per sequence.
--compare reads `guardctl logits` output (little-endian float32, vocab per
sequence, same order) and fails (exit 1) unless for every sequence
max|c - ref| < tol * (max(ref) - min(ref)).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    """name -> float64 ndarray for every tensor in one safetensors file."""
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = f.read(end - start)
            dt = info["dtype"]
            if dt == "BF16":
                u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                arr = u16.view(np.float32).astype(np.float64)
            elif dt == "F16":
                arr = np.frombuffer(raw, dtype="<f2").astype(np.float64)
            elif dt == "F32":
                arr = np.frombuffer(raw, dtype="<f4").astype(np.float64)
            else:
                raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
            out[name] = arr.reshape(info["shape"])
    return out


def load_weights(model_dir):
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        index = json.load(f)
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(read_safetensors(os.path.join(model_dir, shard)))
    return tensors


def inv_freqs(cfg, head_dim):
    """RoPE inverse frequencies with the llama3 rule applied if configured."""
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) != "llama3":
        return inv
    factor = rs["factor"]
    low, high = rs["low_freq_factor"], rs["high_freq_factor"]
    orig = rs["original_max_position_embeddings"]
    out = []
    for f in inv:
        wavelen = 2 * np.pi / f
        if wavelen < orig / high:
            out.append(f)
        elif wavelen > orig / low:
            out.append(f / factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, cos, sin):
    """x: [heads, T, hd]; HF rotate_half pairs (i, i + hd/2)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = np.concatenate([-x2, x1], axis=-1)
    return x * cos + rotated * sin


def last_logits(cfg, W, ids):
    dim = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    hd = cfg.get("head_dim") or dim // n_heads
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    ang = np.outer(pos, inv_freqs(cfg, hd))          # [T, hd/2]
    cos = np.cos(np.concatenate([ang, ang], axis=-1))  # [T, hd]
    sin = np.sin(np.concatenate([ang, ang], axis=-1))
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    x = W["model.embed_tokens.weight"][ids]           # [T, dim]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, n_heads, hd).transpose(1, 0, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, n_kv, hd).transpose(1, 0, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, n_kv, hd).transpose(1, 0, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = n_heads // n_kv
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, n_heads * hd)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    h = rms_norm(x[-1], W["model.norm.weight"], eps)
    head = W.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = W["model.embed_tokens.weight"]
    return head @ h


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out")
    ap.add_argument("--compare")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("ids", nargs="+")
    a = ap.parse_args()
    with open(os.path.join(a.model, "config.json")) as f:
        cfg = json.load(f)
    W = load_weights(a.model)
    seqs = [[int(t) for t in s.split(",")] for s in a.ids]
    refs = [last_logits(cfg, W, s) for s in seqs]
    if a.out:
        np.concatenate(refs).astype("<f8").tofile(a.out)
    if not a.compare:
        return 0
    vocab = cfg["vocab_size"]
    c = np.fromfile(a.compare, dtype="<f4").astype(np.float64)
    if c.size != vocab * len(seqs):
        print(f"compare: {a.compare} holds {c.size} floats, want {vocab * len(seqs)}")
        return 1
    worst = 0.0
    for i, ref in enumerate(refs):
        got = c[i * vocab:(i + 1) * vocab]
        rng = ref.max() - ref.min()
        err = np.abs(got - ref).max() / rng
        worst = max(worst, err)
        print(f"seq {i} len {len(seqs[i])}: max abs err {np.abs(got - ref).max():.3g}, "
              f"logit range {rng:.3g}, relative {err:.3g}, argmax c {got.argmax()} ref {ref.argmax()}")
    ok = worst < a.tol
    print(f"{'OK' if ok else 'FAIL'}: worst relative error {worst:.3g} (tolerance {a.tol})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

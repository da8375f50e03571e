#!/usr/bin/env python3
"""PyTorch peer for `ckptkit lq-decompose`: LQ-LoRA's alternating loop
(HanGuo97/lq-lora models/lq_utils.py lowrank_quantized_sparse_decomposition, without the sparse
part), re-implemented on torch (Debian python3-torch 1.13) for the same matrices and settings:

  Q = 0; repeat up to T times:  L1, L2 = rank-r SVD of (W - Q)  (torch.svd_lowrank, q = r + P,
  niter = N; L1 = U sqrt(S), L2 = sqrt(S) V^T);  Q = NF-quantize(W - L1 L2) with LQ-LoRA's
  two-level scales (absmax per B0 block, offset = min, b0-bit unsigned codes against a per-B1-group
  fp32 max);  err = ||W - Q - L1 L2||_F;  stop when err rises (we keep the best, as ckptkit does).

Prints one JSON object: per matrix {name, shape, seconds, iterations, rel_error} and the settings.
usage: lq_peer.py MODEL.safetensors --rank R --bits B [--block 64] [--max-iter 10] [--threads 1]
"""
import argparse
import json
import math
import struct
import time

import numpy as np
import torch

OFFSET = 0.9677083
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
       0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
       0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]


def ppf(p):
    return math.sqrt(2.0) * torch.erfinv(torch.tensor(2.0 * p - 1.0, dtype=torch.float64)).item()


def nf_levels(bits):
    if bits == 4:
        return torch.tensor(NF4, dtype=torch.float32)
    h = 2 ** (bits - 1)
    pos = [ppf(p) for p in np.linspace(OFFSET, 0.5, h + 1)[:-1]]
    neg = [-ppf(p) for p in np.linspace(OFFSET, 0.5, h)[:-1]]
    v = torch.tensor(sorted(pos + neg + [0.0]), dtype=torch.float64)
    return (v / v.max()).float()


def quantize_lq(x, levels, block=64, b0=8, group=256):
    """LQ-LoRA blockwise absmax NF quantization with uint b0 scale codes; returns dequantized x."""
    flat = x.reshape(-1, block)  # the bench matrices are multiples of block * group
    s0 = flat.abs().amax(dim=1)
    off = s0.min()
    d = (s0 - off).reshape(-1, group)
    s1 = d.amax(dim=1, keepdim=True)
    qmax = 2 ** b0 - 1
    codes = torch.where(s1 > 0, torch.round(d * qmax / torch.where(s1 > 0, s1, torch.ones_like(s1))),
                        torch.zeros_like(d)).clamp(0, qmax)
    s = (codes * s1 / qmax + off).reshape(-1, 1)
    mids = (levels[1:] + levels[:-1]) / 2
    y = flat / torch.where(s > 0, s, torch.ones_like(s))
    idx = torch.bucketize(y, mids, right=False)
    return (levels[idx] * s).reshape(x.shape)


def lq(W, rank, levels, block, max_iter, niter, oversample):
    Q = torch.zeros_like(W)
    best, errs = math.inf, []
    last = math.inf
    for _ in range(max_iter):
        U, S, V = torch.svd_lowrank(W - Q, q=rank + oversample, niter=niter)
        rs = S[:rank].sqrt()
        L1, L2 = U[:, :rank] * rs, (V[:, :rank] * rs).T
        X = W - L1 @ L2
        Q = quantize_lq(X, levels, block)
        e = torch.linalg.norm(X - Q).item()
        errs.append(e)
        best = min(best, e)
        if not e < last:
            break
        last = e
    return best, errs


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        data = f.read()
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if info["dtype"] != "F32":
            continue
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data, np.float32, (e - b) // 4, b).copy()).reshape(info["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--niter", type=int, default=4)
    ap.add_argument("--oversample", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    levels = nf_levels(a.bits)
    rows = []
    for name, W in load(a.model).items():
        if W.dim() != 2 or "embed" in name or "lm_head" in name or not name.endswith(".weight"):
            continue
        t0 = time.perf_counter()
        best, errs = lq(W, a.rank, levels, a.block, a.max_iter, a.niter, a.oversample)
        secs = time.perf_counter() - t0
        nrm = torch.linalg.norm(W).item()
        rows.append({"name": name, "shape": list(W.shape), "seconds": secs,
                     "iterations": len(errs), "rel_error": best / nrm})
    print(json.dumps({"peer": f"torch {torch.__version__}", "threads": a.threads, "rank": a.rank,
                      "bits": a.bits, "block": a.block, "rows": rows}))


if __name__ == "__main__":
    main()

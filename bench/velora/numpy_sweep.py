#!/usr/bin/python3
"""Peer for `ckptkit velora-init --sweep`: the same sweep (M = 1, 2, 4, ..., D and D; batch-average and
top-singular v; energy kept and weight-gradient proxy error) computed directly in numpy f64 with an
explicit padded sub-token matrix, an explicit SVD and an explicit X̂. Compares with a ckptkit
report.json when given, and prints its own wall time.

usage: /usr/bin/python3 bench/velora/numpy_sweep.py ACTS.safetensors [--report OUT/report.json] [--groups 32]
"""
import argparse
import json
import struct
import time

import numpy as np


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    dt = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
    out = {}
    for name, e in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dt[e["dtype"]]).reshape(e["shape"]).astype(np.float64)
    return out


def sweep_groups(d, extra):
    ms = {d}
    m = 1
    while m <= d:
        ms.add(m)
        m *= 2
    if 1 <= extra <= d:
        ms.add(extra)
    return sorted(ms)


def fidelity(x, m, init):
    d = x.shape[1]
    g = -(-d // m)
    xp = np.zeros((x.shape[0], m * g))
    xp[:, :d] = x
    s = xp.reshape(-1, g)
    mean = s.mean(axis=0)
    if init == "batch-average":
        v = mean / np.linalg.norm(mean) if np.linalg.norm(mean) > 0 else np.ones(g) / np.sqrt(g)
    else:
        v = np.linalg.svd(s, full_matrices=False)[2][0]
    z = s @ v
    xhat = (z[:, None] * v[None, :]).reshape(x.shape[0], -1)[:, :d]
    full = x.T @ x
    return (z ** 2).sum() / (s ** 2).sum(), np.linalg.norm(xhat.T @ xhat - full) / np.linalg.norm(full)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("acts")
    ap.add_argument("--report")
    ap.add_argument("--groups", type=int, default=32)
    args = ap.parse_args()
    t0 = time.perf_counter()
    acts = read_safetensors(args.acts)
    res = {}
    for name, x in acts.items():
        for m in sweep_groups(x.shape[1], args.groups):
            for init in ("batch-average", "top-singular"):
                res[(name, m, init)] = fidelity(x, m, init)
    secs = time.perf_counter() - t0
    print("numpy sweep: %d modules, %d points, %.2f s" % (len(acts), len(res), secs))
    if args.report:
        rep = json.load(open(args.report))
        de = dg = 0.0
        n = 0
        for row in rep["tensors"]:
            for p in row["sweep"]:
                e, g = res[(row["module"], p["groups"], p["init"])]
                de = max(de, abs(e - p["fidelity"]["energy_kept"]))
                dg = max(dg, abs(g - p["fidelity"]["grad_rel_err"]))
                n += 1
        print("compared %d points with %s: max |energy diff| %.2e, max |grad err diff| %.2e"
              % (n, args.report, de, dg))


if __name__ == "__main__":
    main()

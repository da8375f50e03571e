#!/usr/bin/env python3
"""Benchmark driver: ckptkit merge vs the PyTorch peer (torch_peer.py), same machine, same run.

Inputs: an r=16 LoRA adapter over every linear weight, made with `ckptkit svd-init` (PiSSA init,
the factors of a real adapter shape), for bytegpt-base (../shared, f32) or the bundled bf16 sample
when ../shared is absent, and optionally a Llama-7B-shaped synthetic checkpoint (--gen). For each
it runs both tools REPS times, alternating, and reports the median wall time and median peak RSS
(ru_maxrss of the child, via os.wait4) and their ratios, plus the largest difference between the
two merged checkpoints. Prints a markdown table.

usage: run.py --ckptkit BUILD/ckptkit [--gen BUILD/ckptkit-gen-synthetic] [--shared ../shared/data]
              [--reps 3] [--threads 2] [--rank 16] [--work /tmp/ckptkit-mergebench]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from benchlib import measure  # noqa: E402
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "cli"))
import cktest  # noqa: E402  (safetensors reading, independent of ckptkit)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", required=True)
    ap.add_argument("--gen", default="")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "shared", "data"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--work", default="/tmp/ckptkit-mergebench")
    ap.add_argument("--synthetic-layers", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    T = str(a.threads)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=T, OMP_NUM_THREADS=T, MKL_NUM_THREADS=T)

    cases = []
    base = os.path.join(a.shared, "bytegpt-base")
    if os.path.isdir(base):
        cases.append(("bytegpt-base (f32, 36 linear 384/1536, 42 MB)", base))
    else:
        cases.append(("bytegpt-base-bf16 sample (data/)", os.path.join(HERE, "..", "..", "data", "bytegpt-base-bf16")))
    if a.gen:
        syn = os.path.join(a.work, "llama7b-synthetic")
        if not os.path.isdir(syn):
            subprocess.run([a.gen, "--layers", str(a.synthetic_layers), "--out", syn, "--dtype", "bf16"], check=True)
        cases.append((f"Llama-7B-shaped synthetic, {a.synthetic_layers} layers (bf16, 4096/11008)", syn))

    rows = []
    for label, ckpt in cases:
        init = os.path.join(a.work, "init-" + os.path.basename(ckpt))
        if not os.path.isdir(init):
            subprocess.run([a.ckptkit, "svd-init", ckpt, "-o", init, "--rank", str(a.rank), "-q"], check=True)
        adapter = os.path.join(init, "adapter")
        res = {"ckptkit": [], "torch": []}
        oc, op = os.path.join(a.work, "out-c"), os.path.join(a.work, "out-p")
        for _ in range(a.reps):
            shutil.rmtree(oc, ignore_errors=True)
            shutil.rmtree(op, ignore_errors=True)
            res["ckptkit"].append(measure([a.ckptkit, "merge", ckpt, adapter, "-o", oc, "--threads", T, "-q"], env))
            res["torch"].append(measure([PY, os.path.join(HERE, "torch_peer.py"), ckpt, adapter, op,
                                         "--threads", T], env))
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items()}
        mc, mp = cktest.read_checkpoint(oc), cktest.read_checkpoint(op)
        worst = max(float(np.abs(mc[n].astype(np.float64) - mp[n]).max()) for n in mc)
        rows.append((label, med, worst, res))
        print(f"{label}: {med} max|ckptkit - torch| {worst:.3g}", file=sys.stderr, flush=True)

    print(f"\nthreads {a.threads}, rank {a.rank}, {a.reps} runs each (alternating), medians (wall s / peak RSS MiB)\n")
    print("| checkpoint | ckptkit wall | torch wall | speed-up | ckptkit RSS | torch RSS | RSS ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for label, med, worst, _ in rows:
        (cw, cr), (pw, pr) = med["ckptkit"], med["torch"]
        print(f"| {label} | {cw:.2f} | {pw:.2f} | {pw / cw:.2f}x | {cr:.0f} | {pr:.0f} | {cr / pr:.2f} | {worst:.2g} |")
    print("\nall runs (wall s, RSS MiB):")
    for label, _, _, res in rows:
        for k, v in res.items():
            print(f"- {label} {k}: " + ", ".join(f"{w:.2f}/{r:.0f}" for w, r in v))


if __name__ == "__main__":
    main()

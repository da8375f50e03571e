#!/usr/bin/env python3
"""QPiSSA error table: `ckptkit svd-init --quantize-residual` against plain quantization (QLoRA)
and LoftQ's order (Q(W), then the rank-r SVD of W - Q(W), one step) at the same bits.

For each checkpoint (bytegpt-base from ../shared, and a Llama-7B-shaped synthetic layer made with
ckptkit-gen-synthetic: hidden 4096, MLP 11008) and each rank, runs svd-init with the residual
quantized, reads the totals of report.json (sqrt of summed squared errors over summed ||W||^2) and
prints one markdown row: the three relative errors and QPiSSA's reduction against QLoRA,
1 - err(QPiSSA) / err(QLoRA). The PiSSA paper (arXiv 2404.02948, Table 4 / Figure 5) reports the
reduction with the nuclear norm; ckptkit reports Frobenius norms, which a report can sum over
layers exactly.

usage: run.py --ckptkit BUILD/ckptkit --gen BUILD/bench/ckptkit-gen-synthetic
              [--shared ../shared/data] [--ranks 16,64] [--schemes nf4] [--layers 1]
              [--work DIR] [--json OUT.json]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def run(cmd):
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", required=True)
    ap.add_argument("--gen", required=True)
    ap.add_argument("--shared", default=os.path.join("..", "shared", "data"))
    ap.add_argument("--ranks", default="16,64")
    ap.add_argument("--schemes", default="nf4")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="ckptkit-qpissa-")
    os.makedirs(work, exist_ok=True)
    llama = os.path.join(work, "llama-syn")
    if not os.path.exists(llama):
        run([a.gen, "--layers", str(a.layers), "--vocab", "1024", "--out", llama, "--seed", "1"])
    models = [("bytegpt-base", os.path.join(a.shared, "bytegpt-base")),
              (f"Llama-7B-shaped synthetic ({a.layers} layer)", llama)]
    results = []
    print("| checkpoint | scheme | rank | QPiSSA | LoftQ order | QLoRA | QPiSSA vs QLoRA | "
          "layers | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, path in models:
        if not os.path.exists(path):
            print(f"| {label} | (absent: {path}) |")
            continue
        for scheme in a.schemes.split(","):
            for rank in [int(r) for r in a.ranks.split(",")]:
                out = os.path.join(work, f"out-{len(results)}")
                shutil.rmtree(out, ignore_errors=True)
                p, secs = run([a.ckptkit, "svd-init", path, "-o", out, "--rank", str(rank),
                               "--quantize-residual", scheme, "--json"])
                t = json.loads(p.stdout)["totals"]
                reduction = 1 - t["qpissa_rel_error"] / t["qlora_rel_error"]
                print(f"| {label} | {scheme} | {rank} | {t['qpissa_rel_error']:.4f} | "
                      f"{t['loftq_rel_error']:.4f} | {t['qlora_rel_error']:.4f} | "
                      f"{reduction:.1%} lower | {t['targets']} | {secs:.1f} |", flush=True)
                results.append({"checkpoint": label, "scheme": scheme, "rank": rank,
                                "qpissa_rel_error": t["qpissa_rel_error"],
                                "loftq_rel_error": t["loftq_rel_error"],
                                "qlora_rel_error": t["qlora_rel_error"],
                                "targets": t["targets"], "seconds": round(secs, 2)})
                shutil.rmtree(out, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

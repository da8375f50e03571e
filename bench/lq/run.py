#!/usr/bin/env python3
"""Benchmark driver for `ckptkit lq-decompose` on ../shared/data/bytegpt-base (f32, 36 linear
weights): LQ error at NF3/NF4 vs plain quantization (QLoRA-style, same config) and vs the LoftQ
order, for r = 16 and 64; the --budget-bits allocations; and time per matrix vs the PyTorch peer
(bench/lq/lq_peer.py, the same loop), both single-threaded, medians and ratios from the same run.
Prints markdown tables (pasted into docs/bench-lq.md).

usage: /usr/bin/python3 bench/lq/run.py [--bin build/ckptkit] [--model DIR] [--ranks 16,64]
       [--budgets 2.75,3.25] [--max-iter 10]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def ck(binary, model, out, *args):
    t0 = time.perf_counter()
    p = subprocess.run([binary, "lq-decompose", model, "-o", out, "-q", "--force", *args],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"ckptkit failed: {p.stderr}")
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f), wall


def peer(model_file, rank, bits, max_iter):
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "lq_peer.py"), model_file,
                        "--rank", str(rank), "--bits", str(bits), "--max-iter", str(max_iter),
                        "--threads", "1"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"peer failed: {p.stderr}")
    return json.loads(p.stdout)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/ckptkit")
    ap.add_argument("--model", default="../shared/data/bytegpt-base")
    ap.add_argument("--ranks", default="16,64")
    ap.add_argument("--budgets", default="2.75,3.25")
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--no-peer", action="store_true")
    a = ap.parse_args()
    ranks = [int(r) for r in a.ranks.split(",")]
    tmp = tempfile.mkdtemp(prefix="bench-lq-")
    model_file = os.path.join(a.model, "model.safetensors")

    print("## LQ vs plain quantization vs LoftQ order (all 36 linear weights, relative Frobenius "
          "error over all of them)\n")
    print("| rank | config | bits/param (stored) | plain (QLoRA-style) | LoftQ order | LQ (svd-first) "
          "| LQ / plain | LQ / LoftQ | median iterations | ckptkit wall s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    timing = []
    for r in ranks:
        for bits in (3, 4):
            out = os.path.join(tmp, f"r{r}nf{bits}")
            rep, wall = ck(a.bin, a.model, out, "--rank", str(r), "--scheme", f"nf{bits}",
                           "--max-iter", str(a.max_iter), "--threads", "1")
            t = rep["totals"]
            rows = rep["tensors"]
            print(f"| {r} | nf{bits}-b64-lq8x256-f32 | {t['bits_per_param']:.4f} | "
                  f"{t['plain_rel_error']:.5f} | {t['loftq_order_rel_error']:.5f} | "
                  f"{t['rel_error']:.5f} | {t['rel_error'] / t['plain_rel_error']:.3f} | "
                  f"{t['rel_error'] / t['loftq_order_rel_error']:.3f} | "
                  f"{med([x['iterations'] for x in rows]):.0f} | {wall:.1f} |")
            timing.append((r, bits, rows))
            shutil.rmtree(out, ignore_errors=True)

    print("\n## --budget-bits (candidate set `default`, 48 configs; cost table from LQ's first "
          "iteration)\n")
    print("| rank | budget | achieved bits/param | rel error | gap to Lagrangian bound | proven "
          "optimal | best uniform within budget | its rel error (proxy) | candidate s | wall s |")
    print("|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in ranks:
        for b in a.budgets.split(","):
            out = os.path.join(tmp, f"b{r}-{b}")
            rep, wall = ck(a.bin, a.model, out, "--rank", str(r), "--budget-bits", b,
                           "--max-iter", str(a.max_iter), "--no-compare")
            t = rep["totals"]
            bud = t["budget"]
            norm_sq = (t["error"] / t["rel_error"]) ** 2 if t["rel_error"] > 0 else 1
            u = bud["best_uniform"]
            urel = (u["cost"] / norm_sq) ** 0.5 if u else float("nan")
            print(f"| {r} | {b} | {bud['achieved_bits_per_param']:.4f} | {t['rel_error']:.5f} | "
                  f"{bud['gap_rel'] * 100:.3g} % | {bud['proven_optimal']} | "
                  f"{u['config'] if u else '-'} ({u['bits_per_param'] if u else 0:.4f}) | "
                  f"{urel:.5f} | {bud['candidate_seconds']:.1f} | {wall:.1f} |")
            configs = {}
            for row in rep["tensors"]:
                configs[row["config"]] = configs.get(row["config"], 0) + 1
            print(f"|  |  | configs: {', '.join(f'{k} x{v}' for k, v in sorted(configs.items()))} "
                  "| | | | | | | |")
            shutil.rmtree(out, ignore_errors=True)

    if a.no_peer:
        return
    print("\n## Time per matrix, single thread: ckptkit vs the PyTorch peer (same loop, same "
          "matrices)\n")
    print("| rank | config | shape | ckptkit median s | peer median s | peer / ckptkit | ckptkit s/iter "
          "| peer s/iter | per-iter ratio | ckptkit rel err | peer rel err |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r, bits, rows in timing:
        pr = peer(model_file, r, bits, a.max_iter)["rows"]
        for shape in sorted({tuple(x["shape"]) for x in rows}):
            cr = [x for x in rows if tuple(x["shape"]) == shape]
            pp = [x for x in pr if tuple(x["shape"]) == shape]
            cm, pm = med([x["seconds"] for x in cr]), med([x["seconds"] for x in pp])
            ci = med([x["seconds"] / x["iterations"] for x in cr])
            pi = med([x["seconds"] / x["iterations"] for x in pp])
            print(f"| {r} | nf{bits} | {list(shape)} | {cm:.4f} | {pm:.4f} | {pm / cm:.2f} | "
                  f"{ci:.4f} | {pi:.4f} | {pi / ci:.2f} | {med([x['rel_error'] for x in cr]):.5f} | "
                  f"{med([x['rel_error'] for x in pp]):.5f} |")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

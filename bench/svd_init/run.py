#!/usr/bin/env python3
"""Benchmark driver: ckptkit svd-init vs the PyTorch peer (peft_peer.py), same machine, same run.

For each checkpoint and SVD path it runs both tools REPS times, alternating, and reports the
median wall time and median peak RSS (ru_maxrss of the child, via os.wait4), their ratios, and
the randomized path's GFLOP/s (ckptkit report, --threads 1) against the single-thread square GEMM
peak of Eigen and OpenBLAS measured in the same run by gemm_peak.cpp. Prints a markdown table.
--simd avx2|avx512 pins ckptkit's kernels (CKPTKIT_SIMD) and measures the peak for that ISA.

usage: run.py --ckptkit BUILD/ckptkit [--gen BUILD/ckptkit-gen-synthetic] [--shared ../shared/data]
              [--reps 3] [--threads 2] [--rank 16] [--work /tmp/svdbench] [--build BUILD]
              [--simd native|avx2|avx512]
Also prints CPU seconds (user + sys) of both tools and the load average: on a shared machine the
CPU-time ratio is the steadier number.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from benchlib import measure  # noqa: E402
PY = "/usr/bin/python3"


# For a forced path: the -march of the Eigen peak and the OpenBLAS kernel of the same ISA.
PEAK_ISA = {"native": ("native", None), "avx2": ("x86-64-v3", "Haswell"), "avx512": ("x86-64-v4", "SkylakeX")}


def gemm_peak(work, simd):
    march, coretype = PEAK_ISA.get(simd, PEAK_ISA["native"])
    exe = os.path.join(work, f"gemm_peak-{march}")
    if not os.path.exists(exe):
        subprocess.run(["g++", "-O3", f"-march={march}", "-DNDEBUG", "-DEIGEN_DONT_PARALLELIZE", "-I/usr/include/eigen3",
                        os.path.join(HERE, "gemm_peak.cpp"), "-o", exe, "-lopenblas"], check=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    out = {}
    for shape in [(4096, 4096, 26), (11008, 4096, 26), (4096, 11008, 26), (4096, 4096, 4096)]:
        r = subprocess.run([exe, *map(str, shape)], capture_output=True, text=True, check=True, env=env).stdout.split()
        out[shape] = (float(r[-2]), float(r[-1]))
    return out


def phases(build, work, ckpt):
    """Per-phase thread CPU seconds (phases.cpp, --threads 1 equivalent) on one 11008x4096 and one
    4096x4096 tensor, linked against BUILD's static libraries."""
    exe = os.path.join(work, "phases")
    libs = [os.path.join(build, f"libckpt_{n}.a") for n in ["decompose", "quant", "linalg", "io", "core"]]
    root = os.path.join(HERE, "..", "..")
    subprocess.run(["g++", "-std=c++20", "-O3", "-march=native", "-DNDEBUG", "-I" + os.path.join(root, "lib"),
                    os.path.join(HERE, "phases.cpp"), *libs, "-llapacke", "-llapack", "-lopenblas", "-lzstd",
                    "-o", exe], check=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = []
    for name in ["model.layers.0.mlp.gate_proj.weight", "model.layers.0.self_attn.q_proj.weight"]:
        r = subprocess.run([exe, ckpt, name, "16", "3"], capture_output=True, text=True, check=True, env=env)
        out += r.stdout.strip().splitlines()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", required=True)
    ap.add_argument("--gen", default="")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "shared", "data"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--work", default="/tmp/ckptkit-svdbench")
    ap.add_argument("--synthetic-layers", type=int, default=2)
    ap.add_argument("--skip-exact-synthetic", action="store_true")
    ap.add_argument("--build", default="", help="build dir: also report per-phase CPU time (phases.cpp)")
    ap.add_argument("--simd", default="native", choices=sorted(PEAK_ISA),
                    help="CKPTKIT_SIMD for ckptkit, and the same ISA for the GEMM peak")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    T = str(a.threads)
    env_c = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    if a.simd != "native":
        env_c["CKPTKIT_SIMD"] = a.simd
    env_p = dict(os.environ, OPENBLAS_NUM_THREADS=T, OMP_NUM_THREADS=T, MKL_NUM_THREADS=T)

    cases = []
    base = os.path.join(a.shared, "bytegpt-base")
    if os.path.isdir(base):
        cases.append(("bytegpt-base (f32, 36 linear, 384-1536)", base, ["randomized", "exact"]))
    if a.gen:
        syn = os.path.join(a.work, "llama7b-synthetic")
        if not os.path.isdir(syn):
            subprocess.run([a.gen, "--layers", str(a.synthetic_layers), "--out", syn, "--dtype", "bf16"], check=True)
        cases.append((f"Llama-7B-shaped synthetic, {a.synthetic_layers} layers (bf16, 4096/11008)", syn,
                       ["randomized"] if a.skip_exact_synthetic else ["randomized", "exact"]))

    rows, gflops = [], []
    for label, ckpt, paths in cases:
        for svd in paths:
            reps = a.reps if svd == "randomized" or "bytegpt" in label else 1
            res = {"ckptkit": [], "torch": []}
            cmd_c = None
            for i in range(reps):
                oc, op = os.path.join(a.work, "out-c"), os.path.join(a.work, "out-p")
                shutil.rmtree(oc, ignore_errors=True)
                shutil.rmtree(op, ignore_errors=True)
                cmd_c = [a.ckptkit, "svd-init", ckpt, "-o", oc, "--rank", str(a.rank), "--svd", svd,
                         "--threads", T, "-q"]
                cmd_p = [PY, os.path.join(HERE, "peft_peer.py"), ckpt, op, "--rank", str(a.rank), "--svd", svd,
                         "--threads", T]
                res["ckptkit"].append(measure(cmd_c, env_c))
                res["torch"].append(measure(cmd_p, env_p))
            med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in res.items()}
            rows.append((label, svd, reps, med, os.getloadavg()[0]))
            print(f"{label} {svd}: {med}", file=sys.stderr, flush=True)
            if svd == "randomized":
                oc = os.path.join(a.work, "out-g")
                shutil.rmtree(oc, ignore_errors=True)
                subprocess.run([a.ckptkit, "svd-init", ckpt, "-o", oc, "--rank", str(a.rank), "--svd", svd,
                                "--threads", "1", "-q"], env=env_c, check=True)
                rep = json.load(open(os.path.join(oc, "report.json")))
                big = [t for t in rep["tensors"] if t["shape"][0] * t["shape"][1] >= 4096 * 4096]
                per = {tuple(t["shape"]): t.get("gemm_gflops") for t in big} if big else {}
                gflops.append((label, rep["totals"]["randomized_gflops"], per))
    peak = gemm_peak(a.work, a.simd)
    phase_lines = phases(a.build, a.work, syn) if a.build and a.gen else []

    print(f"\nthreads {a.threads}, rank {a.rank}, medians of the listed repetitions (wall s / peak RSS MiB /"
          " CPU s = user + sys); load = 1-min load average when the case finished\n")
    print("| checkpoint | SVD | reps | ckptkit wall | torch wall | speed-up | ckptkit RSS | torch RSS | RSS ratio"
          " | ckptkit CPU | torch CPU | CPU ratio | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, svd, reps, med, load in rows:
        (cw, cr, cc), (pw, pr, pc) = med["ckptkit"], med["torch"]
        print(f"| {label} | {svd} | {reps} | {cw:.2f} | {pw:.2f} | {pw / cw:.2f}x | {cr:.0f} | {pr:.0f} | {cr / pr:.2f}"
              f" | {cc:.2f} | {pc:.2f} | {pc / cc:.2f}x | {load:.1f} |")
    print(f"\nSingle-thread GEMM (gemm_peak.cpp, same run, thread CPU time, ISA {a.simd}), GFLOP/s Eigen / OpenBLAS:")
    for shape, (e, o) in peak.items():
        print(f"- {shape[0]}x{shape[1]} by {shape[1]}x{shape[2]}: {e:.1f} / {o:.1f}")
    square = max(peak[(4096, 4096, 4096)])
    print(f"\nckptkit randomized path (--threads 1, CKPTKIT_SIMD={a.simd}), GFLOP/s of the products with W"
          f" and their share of the square peak ({square:.1f}, the better of the two):")
    for label, tot, per in gflops:
        shares = ", ".join(f"{s[0]}x{s[1]} {v:.1f} ({v / square:.0%})" for s, v in per.items() if v)
        print(f"- {label}: all layers {tot}; per big layer {shares}")
    if phase_lines:
        print("\nPer-phase thread CPU seconds of one tensor (phases.cpp, rank 16, 3 reps):")
        for line in phase_lines:
            print(f"- {line}")


if __name__ == "__main__":
    main()

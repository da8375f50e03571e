#!/usr/bin/python3
"""Wall time of a --shard K/N Slurm array against one process, on this machine (issue #25).

Starts a one-node cluster (scripts/slurm-local), writes a Llama-2-7B-shaped synthetic bf16
checkpoint (build/bench/ckptkit-gen-synthetic, LAYERS decoder layers), then for each command:
  - one process with --threads = all cores (median of REPS),
  - the same as an N-task array with 1 CPU per task plus the dependent stitch, submitted by
    scripts/ckptkit-slurm (median of REPS, submit to stitched output),
  - the stitch alone, run directly on the parts (median of REPS),
and prints a JSON line per command with the medians and the CPU cost of the single run per weight
it computes (the linear layers; embeddings are passed through), the input to the N-node model in
docs/distributed.md.

    /usr/bin/python3 bench/slurm/run.py [--layers 2] [--n 3] [--reps 3] [--work DIR]
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

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "build", "ckptkit")
GEN = os.path.join(ROOT, "build", "bench", "ckptkit-gen-synthetic")
SCRIPTS = os.path.join(ROOT, "scripts")


def timed(cmd, env=None):
    t0 = time.time()
    r0 = os.times()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    r1 = os.times()
    return time.time() - t0, (r1.children_user - r0.children_user) + (
        r1.children_system - r0.children_system)


def wait_done(env, job):
    while True:
        p = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                           env=env)
        states = [kv.split("=", 1)[1] for line in p.stdout.splitlines() for kv in line.split()
                  if kv.startswith("JobState=")]
        if states and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states):
            return states
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="ckpt-slurm-bench-")
    os.makedirs(work, exist_ok=True)
    state = os.path.join(work, "slurm")
    env = dict(os.environ, SLURM_CONF=os.path.join(state, "slurm.conf"), CKPTKIT=BIN)
    src = os.path.join(work, "llama-syn")
    if not os.path.isdir(src):
        subprocess.run([GEN, "--layers", str(a.layers), "--out", src, "--dtype", "bf16"],
                       check=True)
    shapes = {}
    for f in os.listdir(src):
        if f.endswith(".safetensors"):
            with open(os.path.join(src, f), "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                shapes.update({k: v["shape"] for k, v in json.loads(fh.read(n)).items()
                               if k != "__metadata__"})

    def weights_of(suffixes=None):
        """Weights of the tensors a command computes (all when suffixes is None)."""
        return sum(int(np.prod(s)) for k, s in shapes.items()
                   if suffixes is None or any(k.endswith(x + ".weight") for x in suffixes))
    weights = weights_of()
    cpus = os.cpu_count()
    t0 = time.time()
    subprocess.run([os.path.join(SCRIPTS, "slurm-local"), "start", state], check=True,
                   stdout=subprocess.DEVNULL)
    print(json.dumps({"cluster_up_seconds": round(time.time() - t0, 2), "cpus": cpus,
                      "weights": weights}))
    try:
        linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        commands = (
            ("svd-init", ["svd-init", src, "--rank", "16"], linear),
            ("quantize", ["quantize", src, "--scheme", "nf4"], linear),
            # Exact SVD: the compute-bound case (two 4096² matrices per layer).
            ("svd-init-exact", ["svd-init", src, "--rank", "16", "--svd", "exact", "--target",
                                "q_proj,o_proj"], ("q_proj", "o_proj")),
        )
        for name, args, computed in commands:
            single, single_cpu, array, stitch = [], [], [], []
            for rep in range(a.reps):
                out = os.path.join(work, f"{name}-single")
                shutil.rmtree(out, ignore_errors=True)
                w, c = timed([BIN, *args, "-o", out, "--threads", str(cpus), "-q"])
                single.append(w)
                single_cpu.append(c)
                shutil.rmtree(out, ignore_errors=True)
                out = os.path.join(work, f"{name}-array")
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(out + ".parts", ignore_errors=True)
                t0 = time.time()
                ids = subprocess.run([os.path.join(SCRIPTS, "ckptkit-slurm"), str(a.n), out,
                                      *args], check=True, capture_output=True, text=True,
                                     env=env).stdout.split()
                states = wait_done(env, ids[1])
                array.append(time.time() - t0)
                if states != ["COMPLETED"]:
                    sys.exit(f"{name}: stitch job {states}")
                parts = [os.path.join(out + ".parts", f"part-{k}") for k in range(a.n)]
                again = os.path.join(work, f"{name}-stitch")
                shutil.rmtree(again, ignore_errors=True)
                w, _ = timed([BIN, "stitch", *parts, "-o", again, "-q"])
                stitch.append(w)
                shutil.rmtree(again, ignore_errors=True)
            med = statistics.median
            print(json.dumps({
                "command": name, "n": a.n, "reps": a.reps,
                "single_wall_s": round(med(single), 2), "single_cpu_s": round(med(single_cpu), 2),
                "array_plus_stitch_wall_s": round(med(array), 2),
                "stitch_alone_wall_s": round(med(stitch), 2),
                "computed_weights": weights_of(computed),
                "cpu_ns_per_weight": round(med(single_cpu) / weights_of(computed) * 1e9, 2)}))
    finally:
        subprocess.run([os.path.join(SCRIPTS, "slurm-local"), "stop", state])


if __name__ == "__main__":
    main()

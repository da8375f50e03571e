#!/usr/bin/env python3
"""--shard K/N under a real Slurm (docs/distributed.md, "Slurm"). Starts a one-node cluster on this
machine with scripts/slurm-local (munged, slurmctld and slurmd from Debian's slurm-wlm and munge,
all state in a temporary folder), then:
  - submits svd-init, quantize and lq-decompose each as a 3-task array with a dependent stitch
    (scripts/ckptkit-slurm: sbatch --array=0-2 + sbatch --dependency=afterok), and checks every
    stitched file byte-identical to a single run's (report.json: identical once timing and argv
    are removed);
  - kills one array task mid-run and requeues it (`scontrol requeue JOB_1`: the task is killed and
    put back in the queue, as Slurm does after a node failure with --requeue); the task runs again
    (Restarts=1), the stitch waits for it and the result is still byte-identical;
  - a stitch given two of the three parts fails with exit 2 naming the missing part.
Prints the cluster's start time and the array's wall time next to the single run's.
Needs slurm-wlm and munge (scripts/setup installs them). Where Slurm cannot start, the test fails
and prints the daemons' logs: it never passes without a cluster."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import cktest

C = cktest.Checks()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts")
BIN = os.path.abspath(cktest.BIN)
N = 3


def load(path):
    with open(path) as f:
        return json.load(f)


def make_input(d, layers, size):
    """A Llama-shaped f32 checkpoint: q/k/v/o and up/down per layer, norms, config.json."""
    rng = np.random.default_rng(11)
    w = {}
    for i in range(layers):
        p = f"model.layers.{i}."
        for m in ("q_proj", "k_proj", "v_proj", "o_proj"):
            w[p + f"self_attn.{m}.weight"] = rng.standard_normal([size, size]).astype(np.float32)
        w[p + "mlp.up_proj.weight"] = rng.standard_normal([2 * size, size]).astype(np.float32)
        w[p + "mlp.down_proj.weight"] = rng.standard_normal([size, 2 * size]).astype(np.float32)
        w[p + "input_layernorm.weight"] = np.ones([size], np.float32)
    os.makedirs(d)
    cktest.write_safetensors(os.path.join(d, "model.safetensors"), w, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "hidden_size": size}, f)


class Cluster:
    def __init__(self, state):
        self.state = state
        self.env = dict(os.environ, SLURM_CONF=os.path.join(state, "slurm.conf"), CKPTKIT=BIN)

    def start(self):
        t0 = time.time()
        p = subprocess.run([os.path.join(SCRIPTS, "slurm-local"), "start", self.state],
                           capture_output=True, text=True)
        self.up_seconds = time.time() - t0
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            for log in ("munged.log", "slurmctld.log", "slurmd.log"):
                path = os.path.join(self.state, log)
                if os.path.exists(path):
                    with open(path) as f:
                        print(f"--- {log}\n" + "".join(f.readlines()[-15:]))
        return p.returncode == 0

    def stop(self):
        subprocess.run([os.path.join(SCRIPTS, "slurm-local"), "stop", self.state],
                       capture_output=True)

    def cmd(self, *args):
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env)

    def job_fields(self, job):
        """scontrol's fields per job (one dict per array element)."""
        p = self.cmd("scontrol", "show", "job", "-o", str(job))
        out = []
        for line in p.stdout.splitlines():
            out.append(dict(kv.split("=", 1) for kv in line.split() if "=" in kv))
        return out

    def wait(self, job, timeout=300):
        """Waits until no element of `job` is pending or running; returns the final states."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            fields = self.job_fields(job)
            states = [f.get("JobState") for f in fields]
            if fields and all(s not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING",
                                        "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED")
                              for s in states):
                return fields
            time.sleep(0.1)
        return self.job_fields(job)

    def submit(self, out, args):
        p = self.cmd(os.path.join(SCRIPTS, "ckptkit-slurm"), str(N), out, *args)
        if p.returncode != 0:
            print(p.stdout, p.stderr)
            return None, None
        array, stitch = p.stdout.split()
        return array, stitch


def compare(name, single, out):
    diff = cktest.same_files(single, out, skip=("report.json",))
    nfiles = sum(len(f) for _, _, f in os.walk(out))
    C(nfiles > 0 and diff == [],
      f"{name}: {nfiles} stitched files byte-identical to the single run (differ: {diff[:5]})")
    a = cktest.strip_timing(load(os.path.join(single, "report.json")))
    b = cktest.strip_timing(load(os.path.join(out, "report.json")))
    C(a == b, f"{name}: report.json identical without timing/argv ({len(a['tensors'])} rows)")


def run_array(cluster, work, name, args):
    """Single run, then the Slurm array + stitch; checks and returns (single s, array s)."""
    single = os.path.join(work, name + "-single")
    t0 = time.time()
    p = cktest.run(*args, "-o", single, "--threads", "1", expect=0)
    t_single = time.time() - t0
    if not C(p.returncode == 0, f"{name}: single run exit {p.returncode}"):
        return
    out = os.path.join(work, name)
    t0 = time.time()
    array, stitch = cluster.submit(out, args)
    if not C(array is not None, f"{name}: submitted (array {array}, stitch {stitch})"):
        return
    tasks = cluster.wait(array)
    final = cluster.wait(stitch)
    t_array = time.time() - t0
    states = sorted(t.get("JobState") for t in tasks)
    C(len(tasks) == N and states == ["COMPLETED"] * N,
      f"{name}: array of {len(tasks)} tasks, states {states}")
    C(final and final[0].get("JobState") == "COMPLETED",
      f"{name}: dependent stitch job {final[0].get('JobState') if final else None}")
    compare(name, single, out)
    print(f"  {name}: single process {t_single:.2f} s, array of {N} + stitch {t_array:.2f} s "
          f"(submit to stitched)")
    return out + ".parts"


def requeue_case(cluster, work, src):
    """Task 1 killed mid-run and requeued: runs again, result still identical."""
    args = ["svd-init", src, "--rank", "8", "--svd", "exact"]
    single = os.path.join(work, "requeue-single")
    cktest.run(*args, "-o", single, "--threads", "1", expect=0)
    out = os.path.join(work, "requeue")
    array, stitch = cluster.submit(out, args)
    if not C(array is not None, "requeue: submitted"):
        return
    parts = out + ".parts"
    deadline = time.time() + 120
    killed = False
    while time.time() < deadline:
        if any(f.startswith(".part-1.tmp-") for f in os.listdir(parts)):
            time.sleep(0.3)  # inside its SVDs
            p = cluster.cmd("scontrol", "requeue", f"{array}_1")
            killed = p.returncode == 0
            if not killed:
                print(p.stdout, p.stderr)
            break
        time.sleep(0.02)
    C(killed, f"requeue: task {array}_1 killed mid-run (its temporary output existed) and "
              f"requeued by scontrol")
    tasks = cluster.wait(array)
    final = cluster.wait(stitch)
    restarts = {t.get("ArrayTaskId"): int(t.get("Restarts", "0")) for t in tasks}
    C(restarts.get("1") == 1 and all(t.get("JobState") == "COMPLETED" for t in tasks),
      f"requeue: every task completed, restarts per task {restarts}")
    C(final and final[0].get("JobState") == "COMPLETED",
      f"requeue: stitch ran after the requeued task ({final[0].get('JobState') if final else None})")
    left = [f for f in os.listdir(parts) if ".tmp-" in f]
    C(not left, f"requeue: no temporary left among the parts ({left})")
    compare("requeue", single, out)


def main():
    for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin"):
            C(False, f"{tool} not installed (Debian slurm-wlm and munge; scripts/setup installs "
                     f"them)")
            C.exit()
    work = tempfile.mkdtemp(prefix="ckpt-slurm-")
    os.chmod(work, 0o755)
    cluster = Cluster(os.path.join(work, "slurm"))
    try:
        if not C(cluster.start(), "a one-node Slurm cluster started (scripts/slurm-local)"):
            C.exit()
        info = cluster.cmd("sinfo", "-h", "-N", "-o", "%N %c %T").stdout.strip()
        print(f"  cluster up in {cluster.up_seconds:.2f} s: node {info}")
        src = os.path.join(work, "in")
        make_input(src, layers=4, size=256)
        parts = run_array(cluster, work, "svd-init", ["svd-init", src, "--rank", "8"])
        run_array(cluster, work, "quantize", ["quantize", src, "--scheme", "nf4"])
        run_array(cluster, work, "lq-decompose", ["lq-decompose", src, "--rank", "4"])
        if parts:
            p = cktest.run("stitch", os.path.join(parts, "part-0"), os.path.join(parts, "part-2"),
                           "-o", os.path.join(work, "two-of-three"), expect=2)
            line = p.stderr.strip()
            C(p.returncode == 2 and "missing part" in line and len(line.splitlines()) == 1,
              f"stitch of 2 of 3 parts: exit {p.returncode}, {line!r}")
        big = os.path.join(work, "big")
        make_input(big, layers=3, size=768)
        requeue_case(cluster, work, big)
    finally:
        cluster.stop()
        alive = subprocess.run(["pgrep", "-f", cluster.state], capture_output=True, text=True)
        C(alive.stdout.strip() == "", f"cluster stopped: no daemon of {cluster.state} left")
        shutil.rmtree(work, ignore_errors=True)
    C.exit()


main()

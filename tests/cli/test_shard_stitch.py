#!/usr/bin/env python3
"""End-to-end test of `--shard K/N` + `ckptkit stitch` (docs/distributed.md) on the bundled bf16
sample.

For svd-init (adapter + residual sharded Hugging Face-style with an index; and --energy, whose
rank_pattern is merged; and LoRA extraction with --base), quantize (nf4, bnb layout, config.json
quantization_config; and --dequantize), mpo-init, analyze-spectrum (CSV merged, HTML re-rendered)
and lq-decompose (uniform and --budget-bits): a single run, then N = 3 shard runs as
separate concurrent processes (different --threads), then stitch. Checks, printing the numbers:
every target computed by exactly one part, the parts balanced by bytes within the largest target,
every tensor and config file of the stitched output byte-identical to the single run, and
report.json identical once timing fields and argv are removed. Bad input: a missing part, a
duplicate part, a part made with other settings, a part made from another input, a bad --shard:
exit 2, one line naming the problem, no output (or temporary) left; so does --shard where it is
not supported (quantize --scheme lossless, velora-init).
"""
import json
import os
import shutil
import subprocess
import tempfile

import cktest

C = cktest.Checks()
N = 3


def load(path):
    with open(path) as f:
        return json.load(f)


def shard_runs(args, work, name, extra=None):
    """Starts the N shard runs as separate processes; returns the part directories."""
    procs, parts = [], []
    for k in range(N):
        part = os.path.join(work, f"{name}-part{k}")
        cmd = [cktest.BIN, *args, "-o", part, "--shard", f"{k}/{N}", "--threads", str(1 + k % 2),
               "-q"] + (extra or [])
        procs.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)))
        parts.append(part)
    for cmd, p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            print("command:", " ".join(cmd), "\n", out, err)
        C(p.returncode == 0, f"{name}: {' '.join(cmd[1:2] + cmd[-6:-1])} exit {p.returncode}")
    return parts


def check_command(name, args, work, rerendered=()):
    out = os.path.join(work, name)
    single = os.path.join(work, name + "-single")
    p = cktest.run(*args, "-o", out, expect=0)
    if not C(p.returncode == 0, f"{name}: single run exit {p.returncode}"):
        return
    os.rename(out, single)
    parts = shard_runs(args, work, name)
    # Each part: its own rows only, and the manifest's assignment.
    manifest = load(os.path.join(parts[0], "ckptkit-part.json"))
    targets = manifest["targets"]
    loads = [sum(t["bytes"] for t in targets if t["shard"] == k) for k in range(N)]
    largest = max(t["bytes"] for t in targets)
    C(max(loads) - min(loads) <= largest,
      f"{name}: {len(targets)} targets over {N} shards, bytes per shard {loads}, spread "
      f"{max(loads) - min(loads)} <= largest target {largest}")
    rows = [[r["name"] for r in load(os.path.join(p, "report.json"))["tensors"]] for p in parts]
    single_rows = [r["name"] for r in load(os.path.join(single, "report.json"))["tensors"]]
    flat = [n for r in rows for n in r]
    C(sorted(flat) == sorted(single_rows) and len(set(flat)) == len(flat),
      f"{name}: every one of {len(single_rows)} report rows in exactly one part "
      f"(rows per part {[len(r) for r in rows]})")
    for k, r in enumerate(rows):
        # (--dequantize: companion tensors such as W.absmax are targets with no row of their own)
        mine = sorted(t["name"] for t in targets if t["shard"] == k and t["name"] in single_rows)
        C(sorted(r) == mine, f"{name}: part {k} computed exactly its {len(mine)} assigned targets")
    # Stitch (parts in any order) to the same -o the single run used, then compare.
    p = cktest.run("stitch", *reversed(parts), "-o", out, expect=0)
    if not C(p.returncode == 0, f"{name}: stitch exit {p.returncode}"):
        return
    diff = cktest.same_files(single, out, skip=("report.json",) + tuple(rerendered))
    nfiles = sum(len(f) for _, _, f in os.walk(out))
    C(diff == [], f"{name}: {nfiles} files, all but report.json {' '.join(rerendered)} "
                  f"byte-identical to the single run (differ: {diff[:5]})")
    for f in rerendered:  # drawn again by stitch from the merged rows: every tensor is there
        with open(os.path.join(out, f)) as h:
            html = h.read()
        missing = [n for n in single_rows if n not in html]
        C(not missing, f"{name}: stitched {f} ({len(html)} bytes) shows all {len(single_rows)} "
                       f"tensors (missing {missing[:3]})")
    a = cktest.strip_timing(load(os.path.join(single, "report.json")))
    b = cktest.strip_timing(load(os.path.join(out, "report.json")))
    bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    C(a == b, f"{name}: report.json identical without timing/argv ({len(a['tensors'])} rows, "
              f"totals {sorted(a['totals'])}; differing keys {bad})")
    if a != b and "totals" in bad:
        print("  single totals:", a["totals"], "\n  stitch totals:", b["totals"])
    return parts


def expect_usage(args, what, needle, work):
    out = os.path.join(work, "bad-out")
    p = cktest.run(*args, "-o", out, expect=2)
    lines = p.stderr.strip().splitlines()
    left = [f for f in os.listdir(work) if f.startswith("bad-out") or f.startswith(".bad-out")]
    C(p.returncode == 2 and len(lines) == 1 and needle in p.stderr and not left,
      f"{what}: exit {p.returncode}, one line containing '{needle}', nothing left "
      f"({lines[-1] if lines else ''!r}; left {left})")


def main():
    work = tempfile.mkdtemp(prefix="ckpt-shard-")
    try:
        sample = cktest.SAMPLE
        svd = ["svd-init", sample, "--rank", "8", "--max-shard-size", "4MB"]
        parts = check_command("svd-init", svd, work)
        check_command("svd-init-energy", ["svd-init", sample, "--energy", "0.5", "--svd", "exact",
                                          "--target", "q_proj,fc1"], work)
        check_command("quantize", ["quantize", sample, "--scheme", "nf4"], work)
        check_command("mpo-init", ["mpo-init", sample, "--bond", "8", "--target", "fc1,fc2"], work)
        check_command("analyze-spectrum", ["analyze-spectrum", sample], work,
                      rerendered=("report.html",))
        # lq-decompose: totals from the parts' squared-error and bit sums; with --budget-bits
        # every part solves the same allocation over all targets.
        check_command("lq-decompose", ["lq-decompose", sample, "--rank", "4"], work)
        check_command("lq-decompose-budget", ["lq-decompose", sample, "--rank", "4", "--target",
                                              "q_proj,fc1", "--budget-bits", "3.5"], work)
        # --dequantize of a quantized checkpoint (companion tensors go with their weight).
        nf4 = os.path.join(work, "quantize-single")
        if os.path.isdir(nf4):
            check_command("dequantize", ["quantize", "--dequantize", nf4], work)
        base, ft = cktest.shared_path("bytegpt-base"), cktest.shared_path("bytegpt-ft")
        if base and ft:  # LoRA extraction: no residual checkpoint, only the adapter is split
            check_command("extract", ["svd-init", ft, "--base", base, "--energy", "0.8"], work)

        if parts:
            expect_usage(["stitch", parts[0], parts[2]], "missing part", "missing part", work)
            expect_usage(["stitch", parts[0], parts[0], parts[1], parts[2]], "duplicate part",
                         "are both shard 0/3", work)
            other = os.path.join(work, "svd-init-other1")
            cktest.run(*svd[:3], "8", "--seed", "7", "--max-shard-size", "4MB", "-o", other,
                       "--shard", "1/3", expect=0)
            expect_usage(["stitch", parts[0], other, parts[2]], "part with other settings",
                         "different settings", work)
            f32 = os.path.join(work, "sample-f32")
            cktest.run("convert", sample, "--dtype", "f32", "-o", f32, expect=0)
            other_in = os.path.join(work, "svd-init-otherin")
            cktest.run("svd-init", f32, "--rank", "8", "--max-shard-size", "4MB", "-o", other_in,
                       "--shard", "2/3", expect=0)
            expect_usage(["stitch", parts[0], parts[1], other_in], "part from another input",
                         "different input", work)
            expect_usage(["stitch", parts[0], sample, parts[2]], "not a part",
                         "not the output of a --shard", work)
        expect_usage(["svd-init", cktest.SAMPLE, "--shard", "3/3"], "--shard 3/3", "0 <= K < N",
                     work)
        expect_usage(["quantize", cktest.SAMPLE, "--shard", "x"], "--shard x", "--shard", work)
        expect_usage(["quantize", cktest.SAMPLE, "--scheme", "lossless", "--shard", "0/2"],
                     "--shard with --scheme lossless", "not supported with --scheme lossless", work)
        acts = cktest.shared_path("bytegpt-activations")
        if acts:
            expect_usage(["velora-init", acts, "--groups", "8", "--shard", "0/2"],
                         "velora-init --shard (no such flag)", "--shard", work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    C.exit()


main()

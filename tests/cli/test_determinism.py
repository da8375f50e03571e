#!/usr/bin/python3
"""Determinism: every subcommand gives byte-identical outputs for --threads 1, 2 and 8, and the
quantizing commands the same bytes on every SIMD path this CPU runs (CKPTKIT_SIMD=scalar, avx2,
avx512 or neon) as on the scalar reference.

Each case runs three times into separate directories. Every output file must be byte-identical,
except report.json, which is compared after dropping the fields that legitimately vary: timings
(keys named like *seconds*, *time*, *_ms, wall*, throughput*, *gflops*), the thread count, the
command line (it names the output directory) and paths of outputs. Files that record where the
output lives (paths inside report-like files) are
compared with the output directory's path replaced by a placeholder. Inputs are the bundled sample (a subset of
its layers, so a case takes about a second) and small synthetic activations for velora-init.
Subcommands this build does not ship yet ("not available in this build") are skipped with a
message.
"""
import json
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

import cktest

check = cktest.Checks()
SAMPLE = cktest.SAMPLE
THREADS = (1, 2, 8)
# Two layers of every module type: enough tensors that 8 threads really run several at once.
SUBSET = ["--target", r"model\.decoder\.layers\.[01]\..*_proj|model\.decoder\.layers\.[01]\.fc[12]"]

# Report keys whose values may differ between runs (compared by name, at any depth).
VOLATILE = re.compile(r"(second|time|_ms$|^ms$|wall|elapsed|throughput|per_s$|mb_s|gb_s|flops|threads|"
                      r"^argv$|^command|^output|^path$|^report_path$|tasks_in_flight|peak_rss|rss)", re.I)


def scrub(x):
    """report.json without volatile fields (see VOLATILE)."""
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if not VOLATILE.search(k)}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x


def dropped_keys(x, prefix=""):
    out = set()
    if isinstance(x, dict):
        for k, v in x.items():
            if VOLATILE.search(k):
                out.add(k)
            else:
                out |= dropped_keys(v, prefix + k + ".")
    elif isinstance(x, list):
        for v in x:
            out |= dropped_keys(v, prefix)
    return out


def reports(root):
    found = {}
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f == "report.json":
                with open(os.path.join(dp, f)) as fh:
                    found[os.path.relpath(os.path.join(dp, f), root)] = json.load(fh)
    return found


def differing_files(a, b):
    """Relative paths whose bytes differ (report.json aside), each tree's own path replaced by a
    placeholder first."""
    def walk(root):
        out = {}
        for dp, _, fs in os.walk(root):
            for f in fs:
                if f != "report.json":
                    out[os.path.relpath(os.path.join(dp, f), root)] = os.path.join(dp, f)
        return out

    def content(path, root):
        with open(path, "rb") as fh:
            data = fh.read()
        return data.replace(os.path.abspath(root).encode(), b"<OUT>").replace(root.encode(), b"<OUT>")

    fa, fb = walk(a), walk(b)
    diff = sorted(set(fa) ^ set(fb))
    diff += [rel for rel in sorted(set(fa) & set(fb)) if content(fa[rel], a) != content(fb[rel], b)]
    return diff


def planned(p):
    return "not available in this build" in p.stderr


def run_case(tmp, name, make_args):
    """make_args(out_dir) -> argv after the binary; runs it for every thread count."""
    outs = []
    t0 = time.time()
    for t in THREADS:
        out = os.path.join(tmp, f"{name}-t{t}".replace(" ", "_").replace("+", "_"))
        p = cktest.run(*make_args(out), "--threads", t, expect=0)
        if planned(p):
            cktest.skip(f"{name}: not in this build")
            return
        if not check(p.returncode == 0, f"{name} --threads {t}: exit {p.returncode}"):
            return
        outs.append(out)
    secs = time.time() - t0
    files = sum(len(fs) for _, _, fs in os.walk(outs[0]))
    for t, out in zip(THREADS[1:], outs[1:]):
        diff = differing_files(outs[0], out)
        check(not diff, f"{name}: --threads {t} vs 1: {files} files, differing: {diff[:5]}")
        ra, rb = reports(outs[0]), reports(out)
        check(ra.keys() == rb.keys(), f"{name}: same report.json files ({sorted(ra)})")
        for rel in ra:
            same = scrub(ra[rel]) == scrub(rb.get(rel))
            check(same, f"{name}: --threads {t} vs 1: {rel} equal without "
                        f"{sorted(dropped_keys(ra[rel]))}")
    print(f"     {name}: 3 runs in {secs:.1f} s")
    return outs[0]


def simd_paths():
    """The SIMD paths this binary and CPU have, from `ckptkit --version` ("available: ...")."""
    p = cktest.run("--version", quiet=False)
    m = re.search(r"available: ([a-z0-9, ]+)\)", p.stdout)
    return m.group(1).split(", ") if m else []


def simd_cases(tmp):
    """Each case with vector kernels on every SIMD path and --threads 1 and 2 against the scalar path."""
    paths = simd_paths()
    check(paths[:1] == ["scalar"] and len(paths) >= 1, f"ckptkit --version lists the SIMD paths: {paths}")
    if len(paths) < 2:
        cktest.skip("only the scalar path on this CPU: nothing to compare it with")
        return
    f32 = os.path.join(tmp, "sample-f32")
    cktest.run("convert", SAMPLE, "-o", f32, "--dtype", "f32", expect=0)
    nf4 = os.path.join(tmp, "sample-nf4")
    cktest.run("quantize", SAMPLE, "-o", nf4, "--scheme", "nf4", *SUBSET, expect=0)
    cases = {
        "quantize fp4 (f32 in: f32 absmax, FP4 encoder)": ["quantize", f32, "--scheme", "fp4", *SUBSET],
        "quantize --dequantize --dtype f16 (16-level decode, f16 narrowing)":
            ["quantize", os.path.join(nf4, "quantized"), "--dequantize", "--dtype", "f16"],
        "convert --dtype bf16 (f32 in: bf16 narrowing)": ["convert", f32, "--dtype", "bf16"],
        "quantize lossless (byte planes)": ["quantize", SAMPLE, "--scheme", "lossless"],
        "quantize nf4 (bf16 in)": ["quantize", SAMPLE, "--scheme", "nf4", *SUBSET],
        "quantize nf4 (f32 in), block 16": ["quantize", f32, "--scheme", "nf4", "--block", "16", *SUBSET],
        "quantize int4+lq": ["quantize", SAMPLE, "--scheme", "int4", "--double-quant", "lq", *SUBSET],
        "quantize nf3 (midpoint search)": ["quantize", SAMPLE, "--scheme", "nf3", *SUBSET],
        "quantize nf4, no double quant": ["quantize", SAMPLE, "--scheme", "nf4", "--double-quant", "none",
                                          "--block", "128", *SUBSET],
        "lq-decompose": ["lq-decompose", SAMPLE, "--rank", "4", *SUBSET],
        "svd-init --quantize-residual nf4": ["svd-init", SAMPLE, "--rank", "4", "--quantize-residual",
                                             "nf4", *SUBSET],
        # The randomized SVD's products with W (linalg/skinny_gemm), tall and wide weights.
        "svd-init randomized": ["svd-init", SAMPLE, "--rank", "8", "--svd", "randomized", "--seed", "5",
                                *SUBSET],
    }
    for name, args in cases.items():
        runs = {}
        for path in paths:
            for t in (1, 2) if path != "scalar" else (1,):
                out = os.path.join(tmp, re.sub(r"[^a-z0-9]+", "_", f"{name}-{path}-t{t}"))
                env = dict(os.environ, CKPTKIT_SIMD=path)
                p = cktest.run(*args, "-o", out, "--threads", t, expect=0, env=env)
                if check(p.returncode == 0, f"{name} on {path}, --threads {t}: exit {p.returncode}"):
                    runs[(path, t)] = out
        ref = runs.get(("scalar", 1))
        if not ref:
            continue
        files = sum(len(fs) for _, _, fs in os.walk(ref))
        for (path, t), out in runs.items():
            if out == ref:
                continue
            diff = differing_files(ref, out)
            same = {k: scrub(v) for k, v in reports(ref).items()} == {k: scrub(v) for k, v in reports(out).items()}
            check(not diff and same, f"{name}: {path} --threads {t} vs scalar: {files} files and report.json "
                                     f"identical (differing: {diff[:5]})")


def activations(path):
    """Synthetic calibration inputs of three linear layers, f32 [tokens, D]."""
    rng = np.random.default_rng(3)
    mods = {"model.decoder.layers.0.self_attn.q_proj": 384, "model.decoder.layers.0.fc1": 384,
            "model.decoder.layers.1.fc1": 256}
    arrays = {}
    for name, d in mods.items():
        base = rng.standard_normal(d).astype(np.float32)
        arrays[name] = (rng.standard_normal((128, d)).astype(np.float32) * 0.5 + base)
    cktest.write_safetensors(path, arrays)


def main():
    tmp = tempfile.mkdtemp(prefix="ckptkit-determinism-")
    start = time.time()
    try:
        cases = {
            "svd-init pissa": lambda o: ["svd-init", SAMPLE, "-o", o, "--rank", "8", *SUBSET],
            "svd-init sorsa exact": lambda o: ["svd-init", SAMPLE, "-o", o, "--rank", "8", "--method", "sorsa",
                                               "--svd", "exact", *SUBSET],
            "svd-init randomized": lambda o: ["svd-init", SAMPLE, "-o", o, "--rank", "8", "--svd", "randomized",
                                              "--seed", "5", *SUBSET],
            "mpo-init": lambda o: ["mpo-init", SAMPLE, "-o", o, *SUBSET],
            "quantize nf4": lambda o: ["quantize", SAMPLE, "-o", o, "--scheme", "nf4", *SUBSET],
            "quantize nf3+lq": lambda o: ["quantize", SAMPLE, "-o", o, "--scheme", "nf3", "--double-quant", "lq",
                                          *SUBSET],
            "quantize lossless": lambda o: ["quantize", SAMPLE, "-o", o, "--scheme", "lossless"],
            "analyze-spectrum": lambda o: ["analyze-spectrum", SAMPLE, "-o", o, *SUBSET],
            "convert": lambda o: ["convert", SAMPLE, "-o", o, "--dtype", "f16"],
        }
        first = {}
        for name, make in cases.items():
            first[name] = run_case(tmp, name, make)
        act = os.path.join(tmp, "activations.safetensors")
        activations(act)
        run_case(tmp, "velora-init", lambda o: ["velora-init", act, "-o", o, "--groups", "16", "--sweep"])
        run_case(tmp, "lq-decompose", lambda o: ["lq-decompose", SAMPLE, "-o", o, "--rank", "8", *SUBSET])
        simd_cases(tmp)
        pissa = first.get("svd-init pissa")
        if pissa:
            run_case(tmp, "merge", lambda o: ["merge", pissa, "-o", o])
        qpissa = run_case(tmp, "svd-init --quantize-residual nf4",
                          lambda o: ["svd-init", SAMPLE, "-o", o, "--rank", "8", "--quantize-residual", "nf4",
                                     *SUBSET])
        if qpissa:
            run_case(tmp, "merge --requantize", lambda o: ["merge", qpissa, "-o", o, "--requantize", "nf4"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.time() - start:.1f} s")
    check.exit()


if __name__ == "__main__":
    main()

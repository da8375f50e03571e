#!/usr/bin/env python3
"""End-to-end test of `ckptkit lq-decompose` (LQ-LoRA) on the bundled bf16 sample.

Checks, printing the numbers:
- outputs: quantized/ checkpoint (targets replaced by quantized tensors, everything else
  byte-identical), adapter/ (PEFT keys and shapes, r, lora_alpha), report.json rows;
- W ≈ deq(Q) + s·B·A: Q dequantized by `ckptkit quantize --dequantize`, the adapter applied with
  PEFT's scaling s = alpha/r; the measured relative error equals the reported one (scaling folded);
- the kept iterate is the best of the per-iteration errors; LQ beats plain quantization;
- rank 0 equals plain quantization (`ckptkit quantize` with the same config: same bytes);
- byte-identical outputs for --threads 1 and 2;
- Fisher of all ones gives the unweighted result (same bytes);
- --budget-bits: achieved bits <= budget, lower bound <= cost, not worse than the best uniform
  config that fits;
- bad input exits 2 naming the tensor: budget out of range, Fisher missing/wrong shape,
  imatrix wrong length, negative Fisher, rank too large.
"""
import json
import os
import tempfile

import numpy as np

import cktest
from cktest import Checks, run

SAMPLE = cktest.SAMPLE
TARGETS = ["--target", r".*layers\.[01]\.self_attn\.(q|v)_proj"]
FAST = ["--rank", "8", "--max-iter", "4", "--scheme", "nf3"] + TARGETS


def load_report(out):
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def main():
    c = Checks()
    tmp = tempfile.mkdtemp(prefix="cktest-lq-")
    src = cktest.read_checkpoint(SAMPLE)
    src_raw = cktest.read_checkpoint(SAMPLE, raw=True)

    # --- the main run
    out = os.path.join(tmp, "lq")
    p = run("lq-decompose", SAMPLE, "-o", out, *FAST, "--alpha", "4", expect=0)
    c(p.returncode == 0, f"lq-decompose exits 0 (got {p.returncode})")
    rep = load_report(out)
    rows = rep["tensors"]
    c(len(rows) == 4, f"4 target matrices decomposed (got {len(rows)})")
    q_raw = cktest.read_checkpoint(os.path.join(out, "quantized"), raw=True)
    untouched = [n for n in src_raw if n not in {r["name"] for r in rows}]
    same = all(q_raw.get(n) == src_raw[n] for n in untouched)
    c(same, f"{len(untouched)} non-target tensors byte-identical")
    for r in rows:
        errs = r["rel_errors"]
        c(r["rel_error"] == min(errs) and r["rel_error"] == errs[r["best_iter"] - 1],
          f"{r['name']}: kept iterate is the best ({r['rel_error']:.5f}, history {errs})")
        c(r["rel_error"] < r["plain_rel_error"],
          f"{r['name']}: LQ {r['rel_error']:.5f} < plain nf3 {r['plain_rel_error']:.5f}")
    ad, _ = cktest.read_safetensors(os.path.join(out, "adapter", "adapter_model.safetensors"))
    with open(os.path.join(out, "adapter", "adapter_config.json")) as f:
        acfg = json.load(f)
    c(acfg["r"] == 8 and acfg["lora_alpha"] == 4, f"adapter r={acfg['r']} alpha={acfg['lora_alpha']}")

    # W ≈ deq(Q) + s·B·A with Q dequantized independently of lq-decompose.
    deq = os.path.join(tmp, "deq")
    p = run("quantize", os.path.join(out, "quantized"), "-o", deq, "--dequantize", "--dtype", "f32",
            expect=0)
    c(p.returncode == 0, f"quantize --dequantize of the Q checkpoint exits 0 (got {p.returncode})")
    if p.returncode == 0:
        qd = cktest.read_checkpoint(deq)
        s = acfg["lora_alpha"] / acfg["r"]
        for r in rows:
            name = r["name"]
            mod = name[: -len(".weight")]
            A = ad[cktest.PEFT_PREFIX + mod + ".lora_A.weight"].astype(np.float64)
            B = ad[cktest.PEFT_PREFIX + mod + ".lora_B.weight"].astype(np.float64)
            W = src[name].astype(np.float64)
            rec = qd[name].astype(np.float64) + s * B @ A
            rel = cktest.rel_fro(rec, W)
            tol = 1e-4  # f32 products vs the f64 reference
            c(abs(rel - r["rel_error"]) <= tol * r["rel_error"] + 1e-7,
              f"{name}: ||W - Q - s*B*A||/||W|| = {rel:.6f} equals reported {r['rel_error']:.6f}")

    # --- determinism over thread counts
    o1, o2 = os.path.join(tmp, "t1"), os.path.join(tmp, "t2")
    run("lq-decompose", SAMPLE, "-o", o1, *FAST, "--threads", "1", expect=0)
    run("lq-decompose", SAMPLE, "-o", o2, *FAST, "--threads", "2", expect=0)
    diff = cktest.same_files(o1, o2, skip=("report.json", "adapter_config.json"))
    cfgs = []
    for o in (o1, o2):  # the configs differ only in base_model_name_or_path (the output path)
        with open(os.path.join(o, "adapter", "adapter_config.json")) as f:
            cfg = json.load(f)
        cfg.pop("base_model_name_or_path", None)
        cfgs.append(cfg)
    c(not diff and cfgs[0] == cfgs[1],
      f"--threads 1 and 2 give identical bytes (differing: {diff}, configs equal: {cfgs[0] == cfgs[1]})")

    # --- rank 0 = plain quantization (same bytes as `ckptkit quantize` at the same config)
    r0, qz = os.path.join(tmp, "r0"), os.path.join(tmp, "qz")
    run("lq-decompose", SAMPLE, "-o", r0, "--rank", "0", "--scheme", "nf3", *TARGETS, expect=0)
    run("quantize", SAMPLE, "-o", qz, "--scheme", "nf3", "--double-quant", "lq", *TARGETS, expect=0)
    a = cktest.read_checkpoint(os.path.join(r0, "quantized"), raw=True)
    b = cktest.read_checkpoint(qz, raw=True)
    diff = [n for n in set(a) | set(b) if a.get(n) != b.get(n)]
    c(not diff, f"rank 0 equals `ckptkit quantize` byte for byte (differing: {diff[:4]})")
    rep0 = load_report(r0)
    c(all(r["rel_error"] == r["plain_rel_error"] for r in rep0["tensors"]),
      "rank 0: reported error equals the plain quantization error")

    # --- Fisher of ones = unweighted
    names = [r["name"] for r in rows]
    fisher = os.path.join(tmp, "fisher.safetensors")
    cktest.write_safetensors(fisher, {n: np.ones_like(src[n], np.float32) for n in names})
    of = os.path.join(tmp, "fisher1")
    p = run("lq-decompose", SAMPLE, "-o", of, *FAST, "--fisher", fisher, expect=0)
    diff = cktest.same_files(os.path.join(of, "quantized"), os.path.join(o1, "quantized"))
    c(p.returncode == 0 and not diff, f"Fisher of ones gives the unweighted Q (differing: {diff})")
    # a real (non-uniform) importance runs and reports its weighting
    rng = np.random.default_rng(0)
    imat = os.path.join(tmp, "imatrix.safetensors")
    cktest.write_safetensors(imat, {n: rng.uniform(0.1, 3, src[n].shape[1]).astype(np.float32)
                                    for n in names})
    oi = os.path.join(tmp, "imat")
    p = run("lq-decompose", SAMPLE, "-o", oi, *FAST, "--imatrix", imat, expect=0)
    c(p.returncode == 0 and load_report(oi)["settings"]["weighting"] == "imatrix",
      "--imatrix run exits 0 and reports its weighting")

    # --- budget allocation
    ob = os.path.join(tmp, "budget")
    p = run("lq-decompose", SAMPLE, "-o", ob, "--rank", "8", "--max-iter", "2", *TARGETS,
            "--budget-bits", "3.25", expect=0)
    c(p.returncode == 0, f"--budget-bits 3.25 exits 0 (got {p.returncode})")
    if p.returncode == 0:
        bud = load_report(ob)["totals"]["budget"]
        c(bud["achieved_bits"] <= bud["budget_bits"],
          f"achieved {bud['achieved_bits']} bits <= budget {bud['budget_bits']} "
          f"({bud['achieved_bits_per_param']:.5f} bits/param)")
        c(bud["lower_bound"] <= bud["cost"] * (1 + 1e-9),
          f"Lagrangian bound {bud['lower_bound']:.6g} <= cost {bud['cost']:.6g} (gap {bud['gap_rel']})")
        u = bud["best_uniform"]
        c(u is not None and bud["cost"] <= u["cost"] * (1 + 1e-9),
          f"allocation cost {bud['cost']:.6g} <= best uniform {u and u['config']} {u and u['cost']:.6g}")

    # --- bad input: exit 2, one line naming the tensor
    q0 = "model.decoder.layers.0.self_attn.q_proj.weight"
    bad_fisher = os.path.join(tmp, "bad_fisher.safetensors")
    cktest.write_safetensors(bad_fisher, {n: np.ones((3, 3), np.float32) for n in names})
    part_fisher = os.path.join(tmp, "part_fisher.safetensors")
    cktest.write_safetensors(part_fisher, {n: np.ones_like(src[n]) for n in names if n != q0})
    neg_fisher = os.path.join(tmp, "neg_fisher.safetensors")
    cktest.write_safetensors(neg_fisher, {n: -np.ones_like(src[n]) for n in names})
    bad_imat = os.path.join(tmp, "bad_imat.safetensors")
    cktest.write_safetensors(bad_imat, {n: np.ones(7, np.float32) for n in names})
    cases = [
        ("budget below the cheapest", ["--budget-bits", "1.5"], "budget"),
        ("budget above the most expensive", ["--budget-bits", "12"], "budget"),
        ("Fisher missing a tensor", ["--fisher", part_fisher], q0),
        ("Fisher of the wrong shape", ["--fisher", bad_fisher], "layers.0.self_attn.q_proj"),
        ("negative Fisher", ["--fisher", neg_fisher], "negative importance weight"),
        ("imatrix of the wrong length", ["--imatrix", bad_imat], "layers.0.self_attn.q_proj"),
        ("rank too large", ["--rank", "384"], "q_proj"),
    ]
    for what, extra, needle in cases:
        bad_out = os.path.join(tmp, "bad")
        args = ["lq-decompose", SAMPLE, "-o", bad_out, "--rank", "8", "--max-iter", "2"] + TARGETS
        if extra[0] == "--rank":
            args = ["lq-decompose", SAMPLE, "-o", bad_out] + TARGETS
        p = run(*args, *extra)
        err = p.stderr.strip()
        c(p.returncode == 2 and needle in err and not os.path.exists(bad_out),
          f"{what}: exit {p.returncode}, message names '{needle}': {err[:160]}")
    c.exit()


if __name__ == "__main__":
    main()

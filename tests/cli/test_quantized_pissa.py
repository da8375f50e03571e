#!/usr/bin/env python3
"""End-to-end test of QPiSSA and of PiSSA / merging on quantized checkpoints, numpy only.

- `svd-init --quantize-residual nf4|fp4|nf3|int8`: the residual is read back with independent
  readers of the bitsandbytes and ckptkit layouts; Q(W_res) + s·B·A reconstructs W with exactly
  the relative error reported per layer (1e-4 relative); the reported QLoRA error equals what
  `quantize` reports for plain Q(W) at the same scheme; QPiSSA's error is below QLoRA's on every
  layer and below LoftQ's order in total (the PiSSA paper's claim, on this sample).
- `svd-init` of an NF4 checkpoint: the residual keeps the input's format, untargeted quantized
  weights pass through byte for byte, and residual + adapter reconstruct the dequantized input
  within the reported error.
- `merge --requantize`: the surviving fraction of each update and the errors against merging into
  the original weights, recomputed here from the dequantized files, equal the report.
- Bad combinations exit 2 with one line and leave nothing behind.
"""
import json
import os
import shutil
import tempfile

import numpy as np

import cktest
from cktest import PEFT_PREFIX, SAMPLE, Checks, read_checkpoint, run

check = Checks()


def weights_of(d):
    """name -> float32 array: quantized weights dequantized with the independent readers."""
    t = read_checkpoint(d)
    states = [k for k in t if ".quant_state." in k]
    out = {}
    for k in states:
        base = k[: k.index(".quant_state.")]
        out[base] = cktest.dequant_any(t, base)[0]
    for k in t:
        if k.endswith("SCB"):
            base = k[: -len("SCB")] + "weight"
            out[base] = cktest.int8_dequant(t, base)[0]
    companions = (".absmax", ".quant_map", ".nested_", ".quant_state", ".qscales", ".codebook",
                  "SCB", "weight_format")
    for k, a in t.items():
        if k not in out and not any(c in k for c in companions):
            out[k] = a.astype(np.float32)
    return out


def adapter_delta(root, module):
    cfg, mods = cktest.read_lora(root)
    A, B = mods[module]
    return cktest.lora_scaling(cfg, module) * (B @ A)


def rows_of(root):
    return {r["name"]: r for r in json.load(open(os.path.join(root, "report.json")))["tensors"]}


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b))


def test_qpissa(tmp, w):
    quant_rows = {}
    for scheme, extra, layout in (("nf4", [], "bnb-4bit"), ("fp4", [], "bnb-4bit"),
                                  ("nf3", [], "ckptkit"), ("int8", [], "bnb-int8")):
        out = os.path.join(tmp, "qpissa-" + scheme)
        p = run("svd-init", SAMPLE, "-o", out, "--rank", 16, "--quantize-residual", scheme, *extra,
                "--json", expect=0)
        if not check(p.returncode == 0, f"svd-init --quantize-residual {scheme} exit 0"):
            continue
        report = json.loads(p.stdout)
        rows = {r["name"]: r for r in report["tensors"]}
        res = weights_of(os.path.join(out, "residual"))
        worst = 0.0
        errs = {}
        for name, row in rows.items():
            W = w[name].astype(np.float64)
            rebuilt = res[name].astype(np.float64) + adapter_delta(out, row["module"])
            rel = np.linalg.norm(rebuilt - W) / np.linalg.norm(W)
            errs[name] = rel
            worst = max(worst, abs(rel - row["qpissa_rel_error"]) / row["qpissa_rel_error"])
        check(len(rows) == 36 and worst < 1e-4,
              f"{scheme}: Q(W_res) + s*B*A rebuilds W with the reported error on {len(rows)} "
              f"layers (worst relative difference {worst:.2e})")
        check(all(r["residual_scheme"] == scheme for r in rows.values())
              and report["settings"]["residual_quantization"]["layout"] == layout,
              f"{scheme}: residual stored as {layout}")
        below = sum(r["qpissa_rel_error"] < r["qlora_rel_error"] for r in rows.values())
        t = report["totals"]
        check(below == len(rows),
              f"{scheme}: QPiSSA error below plain Q(W) (QLoRA) on {below}/{len(rows)} layers; "
              f"totals QPiSSA {t['qpissa_rel_error']}, QLoRA {t['qlora_rel_error']}, "
              f"LoftQ order {t['loftq_rel_error']}")
        check(t["qpissa_rel_error"] < t["loftq_rel_error"] < t["qlora_rel_error"],
              f"{scheme}: QPiSSA < LoftQ order < QLoRA in total")
        quant_rows[scheme] = rows
        cfg = json.load(open(os.path.join(out, "residual", "config.json")))
        if layout == "ckptkit":
            check(cfg.get("ckptkit_quantization", {}).get("scheme") == scheme
                  and "quantization_config" not in cfg,
                  f"{scheme}: config.json says ckptkit_quantization")
        else:
            q = cfg.get("quantization_config", {})
            check(q.get("quant_method") == "bitsandbytes"
                  and (q.get("bnb_4bit_quant_type") == scheme or scheme == "int8"),
                  f"{scheme}: config.json carries transformers' quantization_config")
    # The QLoRA column is plain quantization: the same number `quantize` reports.
    out = os.path.join(tmp, "plain-nf4")
    p = run("quantize", SAMPLE, "-o", out, "--scheme", "nf4", expect=0)
    plain = rows_of(out)
    rows = quant_rows.get("nf4", {})
    worst = max((abs(r["qlora_rel_error"] - plain[n]["rel_error"]) / plain[n]["rel_error"]
                 for n, r in rows.items()), default=1.0)
    check(rows and worst < 1e-5,
          f"nf4: the QLoRA error per layer equals quantize's rel_error (worst {worst:.1e})")
    # Per-layer ranks (--energy) and Conv1D-free sample: the report's rank is the adapter's.
    out = os.path.join(tmp, "qpissa-energy")
    run("svd-init", SAMPLE, "-o", out, "--energy", "0.5", "--quantize-residual", "nf4", expect=0)
    cfg, mods = cktest.read_lora(out)
    ranks_ok = all(mods[r["module"]][0].shape[0] == r["rank"] for r in rows_of(out).values())
    check(ranks_ok, "--energy with --quantize-residual: adapter ranks match the report")


def test_quantized_input(tmp, w):
    nf4 = os.path.join(tmp, "nf4")
    run("quantize", SAMPLE, "-o", nf4, "--scheme", "nf4", expect=0)
    wq = weights_of(os.path.join(nf4, "quantized"))
    out = os.path.join(tmp, "pissa-on-nf4")
    p = run("svd-init", nf4, "-o", out, "--rank", 8, "--target", "fc1,fc2", "--json", expect=0)
    if not check(p.returncode == 0, "svd-init of an NF4 checkpoint exits 0"):
        return
    report = json.loads(p.stdout)
    rows = {r["name"]: r for r in report["tensors"]}
    check(report["settings"]["residual_quantization"] == "as the input"
          and all(r["input_layout"] == "bnb-4bit" for r in rows.values()) and len(rows) == 12,
          f"NF4 input: {len(rows)} fc1/fc2 weights dequantized, residual kept as bnb-4bit")
    inp = read_checkpoint(os.path.join(nf4, "quantized"), raw=True)
    res = read_checkpoint(os.path.join(out, "residual"), raw=True)
    untouched = [k for k in inp if ".fc1." not in k and ".fc2." not in k]
    same = all(inp[k] == res[k] for k in untouched)
    check(same and set(inp) == set(res),
          f"NF4 input: the same tensor names, {len(untouched)} untargeted tensors byte-identical")
    resw = weights_of(os.path.join(out, "residual"))
    worst = 0.0
    for name, row in rows.items():
        W = wq[name].astype(np.float64)
        rebuilt = resw[name] + adapter_delta(out, row["module"])
        rel = np.linalg.norm(rebuilt - W) / np.linalg.norm(W)
        worst = max(worst, abs(rel - row["qpissa_rel_error"]) / row["qpissa_rel_error"])
    check(worst < 1e-4, f"NF4 input: residual + adapter rebuild the dequantized W with the "
                        f"reported error (worst relative difference {worst:.2e})")
    # A different residual format would leave two formats in one checkpoint.
    bad = os.path.join(tmp, "bad-mix")
    p = run("svd-init", nf4, "-o", bad, "--rank", 8, "--target", "fc1", "--quantize-residual",
            "int8", expect=2)
    check(p.returncode == 2 and "fc2.weight" in p.stderr and len(p.stderr.strip().splitlines()) == 1
          and not os.path.exists(bad),
          "NF4 input, --quantize-residual int8 on some weights only: exit 2 naming an untargeted "
          "weight, nothing written")
    p = run("svd-init", SAMPLE, "--base", SAMPLE, "-o", bad,
            "--quantize-residual", "nf4", expect=2)
    check(p.returncode == 2 and not os.path.exists(bad),
          "--quantize-residual with --base (no residual) exits 2")
    p = run("svd-init", SAMPLE, "-o", bad, "--block", "128", expect=2)
    check(p.returncode == 2 and "--quantize-residual" in p.stderr,
          "--block without --quantize-residual exits 2")
    return nf4, wq


def test_requantize(tmp, w, nf4, wq):
    # An update to merge: PiSSA's principal part of fc1/fc2 at rank 8, a LoRA for the NF4 base.
    lora = os.path.join(tmp, "lora")
    run("svd-init", SAMPLE, "-o", lora, "--rank", 8, "--target", "fc1,fc2", expect=0)
    out = os.path.join(tmp, "merged-nf4")
    p = run("merge", nf4, os.path.join(lora, "adapter"), "-o", out, "--requantize", "nf4",
            "--original", SAMPLE, "--json", expect=0)
    if not check(p.returncode == 0, "merge --requantize nf4 --original exits 0"):
        return
    report = json.loads(p.stdout)
    floats = os.path.join(tmp, "merged-f32")
    run("merge", nf4, os.path.join(lora, "adapter"), "-o", floats, "--dtype", "f32", expect=0)
    M = read_checkpoint(floats)
    R = weights_of(os.path.join(out, "model"))
    worst = 0.0
    n = 0
    for row in report["tensors"]:
        name, q = row["name"], row["requantized"]
        Wq = wq[name].astype(np.float64)
        D = M[name].astype(np.float64) - Wq
        kept = float(np.sum((R[name] - Wq) * D) / np.sum(D * D))
        ideal = w[name].astype(np.float64) + D
        vs = np.linalg.norm(R[name] - ideal) / np.linalg.norm(ideal)
        err = np.linalg.norm(R[name] - M[name].astype(np.float64)) / np.linalg.norm(D)
        for mine, theirs in ((kept, q["delta_surviving_fraction"]),
                             (vs, q["vs_original_merge_rel_error"]),
                             (err, q["delta_requant_error_rel"])):
            worst = max(worst, abs(mine - theirs) / abs(theirs))
        n += 1
    t = report["totals"]["requantized"]
    check(n == 12 and worst < 1e-4,
          f"requantize: surviving fraction, error vs the update and vs merging into the original "
          f"recomputed on {n} weights (worst relative difference {worst:.2e}); totals: "
          f"{t['delta_surviving_fraction']} of the update survives, "
          f"vs original {t['vs_original_merge_rel_error']} "
          f"(quantizing that merge once: {t['original_merge_requant_rel_error']})")
    check(0 < t["delta_surviving_fraction"] <= 1.05,
          "requantize: the surviving fraction is a fraction")
    inp = read_checkpoint(os.path.join(nf4, "quantized"), raw=True)
    res = read_checkpoint(os.path.join(out, "model"), raw=True)
    untouched = [k for k in inp if ".fc1." not in k and ".fc2." not in k]
    check(set(inp) == set(res) and all(inp[k] == res[k] for k in untouched),
          f"requantize: same tensors as the NF4 base, {len(untouched)} untouched byte-identical")
    cfg_in = json.load(open(os.path.join(nf4, "quantized", "config.json")))
    cfg_out = json.load(open(os.path.join(out, "model", "config.json")))
    check(cfg_in.get("quantization_config") == cfg_out.get("quantization_config"),
          "requantize: config.json keeps the base's quantization_config")
    bad = os.path.join(tmp, "bad-requant")
    for args, what in (((SAMPLE, os.path.join(lora, "adapter"), "--requantize", "nf4"),
                        "a float base"),
                       ((nf4, os.path.join(lora, "adapter"), "--requantize", "int8"),
                        "untouched weights in another format"),
                       ((nf4, os.path.join(lora, "adapter"), "--original", SAMPLE),
                        "--original without --requantize"),
                       ((nf4, os.path.join(lora, "adapter"), "--requantize", "nf4", "--dtype",
                         "bf16"), "--dtype with --requantize")):
        p = run("merge", *args, "-o", bad, expect=2)
        check(p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
              and not os.path.exists(bad), f"merge --requantize with {what}: exit 2, one line")


def main():
    tmp = tempfile.mkdtemp(prefix="ckpt-qpissa-")
    w = read_checkpoint(SAMPLE)
    test_qpissa(tmp, w)
    got = test_quantized_input(tmp, w)
    if got:
        test_requantize(tmp, w, *got)
    # Every weight requantized into another format: config.json describes the new one.
    qp = os.path.join(tmp, "qpissa-nf4")
    out = os.path.join(tmp, "qpissa-fp4-merged")
    p = run("merge", qp, "-o", out, "--requantize", "fp4", "--compute-dtype", "float16", expect=0)
    q = json.load(open(os.path.join(out, "model", "config.json"))).get("quantization_config", {})
    check(p.returncode == 0 and q.get("bnb_4bit_quant_type") == "fp4"
          and q.get("bnb_4bit_compute_dtype") == "float16",
          "merge --requantize fp4 of an NF4 checkpoint: config.json says fp4, --compute-dtype kept")
    shutil.rmtree(tmp, ignore_errors=True)
    check.exit()


if __name__ == "__main__":
    main()
